# syntax=docker/dockerfile:1
#
# The vigil image: one static binary on distroless, running as uid 65532.
#
#   docker build -t vigil .
#   docker run --rm -p 8080:8080 -p 8443:8443 -v vigil-data:/data \
#     -e VIGIL_DATABASE_URL=postgres://… vigil
#
# Every setting is a VIGIL_* variable (README.md, docs/operations.md). The
# image sets only what a container needs to differ from the defaults: listen
# on every interface, keep data under /data. compose/compose.yaml runs the
# whole stack.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-mod=readonly
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w" -o /out/vigil ./cmd/vigil

# The health probe. The final image has no shell, curl or wget, and vigil has
# no subcommand that only asks its own /readyz; this tiny static program does
# (HEALTHCHECK below, and compose). It reads VIGIL_HTTP_ADDR like vigil does;
# an argument overrides the URL (for `vigil relay` containers, give
# http://127.0.0.1:PORT/metrics of VIGIL_RELAY_METRICS_ADDR, or disable the
# health check).
COPY <<'EOF' /probe/main.go
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	url := "http://127.0.0.1:8080/readyz"
	if addr := os.Getenv("VIGIL_HTTP_ADDR"); addr != "" {
		if host, port, err := net.SplitHostPort(addr); err == nil {
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "127.0.0.1"
			}
			url = "http://" + net.JoinHostPort(host, port) + "/readyz"
		}
	}
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	res, err := (&http.Client{Timeout: 3 * time.Second}).Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vigil-healthcheck:", err)
		os.Exit(1)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "vigil-healthcheck:", url, res.Status)
		os.Exit(1)
	}
}
EOF
RUN --mount=type=cache,target=/root/.cache/go-build \
    cd /probe && go build -trimpath -ldflags "-s -w" -o /out/vigil-healthcheck main.go
# /data must exist and belong to the runtime user before a named volume is
# mounted there, so that Docker initialises the volume with that owner.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/vigil /out/vigil-healthcheck /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
ENV VIGIL_DATA_DIR=/data \
    VIGIL_HTTP_ADDR=0.0.0.0:8080 \
    VIGIL_RELAY_ADDR=0.0.0.0:8443
VOLUME ["/data"]
# 8080: HTTP API, GraphQL, /healthz, /readyz, /metrics (plain HTTP: put a
# TLS-terminating proxy in front). 8443: the TLS relay.
EXPOSE 8080 8443
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/vigil-healthcheck"]
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["serve"]
