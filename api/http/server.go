// Package httpapi serves Vigil's HTTP API: health and readiness now; ingest,
// authentication, recordings, GDPR and exports as they are built. It depends
// on the core packages and on small interfaces, never on adapters.
package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/vigilhq/vigil/domain/service"
)

// Checker reports whether a dependency is usable; a nil error means ready.
type Checker func(ctx context.Context) error

// Options configure the handler.
type Options struct {
	// Ready lists the named checks /readyz runs, such as "database".
	Ready map[string]Checker
	// Logger receives request errors (default slog.Default()).
	Logger *slog.Logger
	// Service runs the /v1 API; without it only the health endpoints
	// are served.
	Service *service.Service
	// TrustedProxies are the proxies whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// MaxBody limits request bodies (default DefaultMaxBody).
	MaxBody int64
	// Metrics, when set, serves GET /metrics (Prometheus).
	Metrics http.Handler
	// HTTPMetrics, when set, counts and times every request by route and
	// status (httpmetrics.go); register it where Metrics reads.
	HTTPMetrics *HTTPMetrics
	// GraphQL, when set, serves /graphql and /graphql/schema.graphql.
	GraphQL http.Handler
	// Reports, when set, serves GET /v1/reports/{name}.csv.
	Reports http.Handler
	// Audit, when set, serves the auditor endpoints (audit.go).
	Audit AuditService
	// GDPR, when set, serves the GDPR endpoints (gdpr.go).
	GDPR GDPRService
	// Recordings, when set, serves the recording endpoints (recordings.go).
	Recordings RecordingsService
	// Webhooks, when set, serves the webhook endpoints (webhooks.go).
	Webhooks WebhooksService
	// Gateways, when set, serves the gateway registry (gateways.go).
	Gateways GatewaysService
	// Limits cap unauthenticated requests, slow clients and slow
	// recording uploads (limits.go).
	Limits Limits
	// PublicURL is Vigil's URL as browsers and identity providers reach
	// it (VIGIL_PUBLIC_URL): the SAML entity ids and ACS URLs are built on
	// it. Without it they are built on each request's own scheme and host.
	PublicURL *url.URL
	// SSOMetadataClient fetches IdP metadata URLs (default: a client with
	// a 10 s timeout); cmd/vigil gives it the SSRF-checking client of the
	// webhooks.
	SSOMetadataClient *http.Client
}

// New returns the API's root handler.
func New(opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	lim := newLimiter(opts.Limits)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		status := http.StatusOK
		checks := map[string]string{}
		for name, check := range opts.Ready {
			if err := check(ctx); err != nil {
				status = http.StatusServiceUnavailable
				checks[name] = "unavailable"
				opts.Logger.Warn("readiness check failed", "check", name, "err", err)
				continue
			}
			checks[name] = "ok"
		}
		state := "ready"
		if status != http.StatusOK {
			state = "not ready"
		}
		writeJSON(w, status, map[string]any{"status": state, "checks": checks})
	})
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	if opts.GraphQL != nil {
		mux.Handle("/graphql", opts.GraphQL)
		mux.Handle("/graphql/schema.graphql", opts.GraphQL) // the SDL
	}
	if opts.Reports != nil {
		mux.Handle("GET /v1/reports/{file}", opts.Reports)
	}
	if opts.Service != nil {
		a := &api{svc: opts.Service, log: opts.Logger, proxies: opts.TrustedProxies, maxBody: opts.MaxBody, audit: opts.Audit, gdpr: opts.GDPR,
			recordings: opts.Recordings, webhooks: opts.Webhooks, limits: lim.lim, gateways: opts.Gateways}
		a.routes(mux)
		a.auditRoutes(mux)
		a.gdprRoutes(mux)
		a.recordingsRoutes(mux)
		a.webhooksRoutes(mux)
		a.relayRoutes(mux)
		a.tenantRoutes(mux)
		a.gatewayRoutes(mux)
		a.lensRoutes(mux)
		a.ssoRoutes(mux, opts.PublicURL, opts.SSOMetadataClient)
	}
	return opts.HTTPMetrics.wrap(mux, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A recording streams gigabytes; its service enforces the tenant's
		// maximum size itself.
		if !(opts.Recordings != nil && RecordingUpload(r)) {
			r.Body = http.MaxBytesReader(w, r.Body, opts.MaxBody)
		}
		lim.serve(w, r, mux)
	}))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
