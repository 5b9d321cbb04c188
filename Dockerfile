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

# /data must exist and belong to the runtime user before a named volume is
# mounted there, so that Docker initialises the volume with that owner.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/vigil /usr/local/bin/
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
# The image has no shell or curl: vigil health asks /readyz on VIGIL_HTTP_ADDR.
# (For a `vigil relay` container, disable it or give --url of the relay's
# VIGIL_RELAY_METRICS_ADDR /metrics.)
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/vigil", "health"]
ENTRYPOINT ["/usr/local/bin/vigil"]
CMD ["serve"]
