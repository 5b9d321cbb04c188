package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/vigilhq/vigil/adapters/postgres"
	gql "github.com/vigilhq/vigil/api/graphql"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/relay"
)

func runServe(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := bindConfig(fs, env)
	rc := bindRelayConfig(fs, env)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)

	sys, err := openServe(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer sys.Close()
	sys.store.Listen()

	ledgerDone := make(chan struct{})
	go func() {
		defer close(ledgerDone)
		_ = sys.ledger.Run(context.WithoutCancel(ctx))
	}()

	proxies, _ := cfg.proxies()           // validated above
	public, _ := publicURL(cfg.PublicURL) // validated above
	httpLimits, _ := cfg.httpLimits()     // validated above
	runner := sys.projector(cfg.ProjectionLinger)
	projCtx, stopProjections := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProjections()
	projDone := make(chan struct{})
	go func() {
		defer close(projDone)
		_ = runner.Run(projCtx)
	}()
	registry := prometheus.NewRegistry()
	httpMetrics := httpapi.NewHTTPMetrics()
	registry.MustRegister(runner, newHealthCollector(sys.pool, sys.logStore, log), httpMetrics,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	schedCtx, stopScheduler := context.WithCancel(context.WithoutCancel(ctx))
	defer stopScheduler()
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		sys.service.RunScheduler(schedCtx, cfg.SchedulerInterval)
	}()

	gdpr, err := sys.gdpr(ctx)
	if err != nil {
		return err
	}
	retention, err := sys.retention(ctx)
	if err != nil {
		return err
	}
	recordings, err := sys.recordingsService(ctx)
	if err != nil {
		return err
	}
	hooks, _ := cfg.webhooks() // validated above
	events, err := openEventsBus(ctx, cfg, sys.pool, log)
	if err != nil {
		return fmt.Errorf("event bus: %w", err)
	}
	defer events.Close()
	webhooksRT := StartWebhooks(context.WithoutCancel(ctx), sys.pool, sys.ledger, eventsBus{events}, hooks, log)
	defer webhooksRT.Stop()
	rel, err := startRelay(ctx, sys, cfg, rc, registry, log)
	if err != nil {
		return err
	}
	complianceCtx, stopCompliance := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCompliance()
	complianceDone := make(chan struct{}, 2)
	go func() {
		defer func() { complianceDone <- struct{}{} }()
		gdpr.RunErasures(complianceCtx, erasureWorkerInterval)
	}()
	go func() {
		defer func() { complianceDone <- struct{}{} }()
		retention.RunRetention(complianceCtx, retentionInterval)
	}()

	// GraphQL and the CSV reports read the projections, from a replica
	// when one is configured (its lag shows in projectionStatus, whose head
	// comes from the log itself).
	reportStore := sys.store
	if cfg.ReportsDatabaseURL != "" {
		rpool, err := postgres.OpenExisting(ctx, cfg.ReportsDatabaseURL)
		if err != nil {
			return fmt.Errorf("reports database %s: %w", postgres.Redact(cfg.ReportsDatabaseURL), err)
		}
		defer rpool.Close()
		reportStore = postgres.NewStore(rpool, postgres.Options{Logger: log, LogHead: sys.logStore.Head})
		defer reportStore.Close()
		log.Info("reports read from a replica", "database", postgres.Redact(cfg.ReportsDatabaseURL))
	}
	reports, err := gql.New(gql.Config{
		Reports: reportStore, Opener: sys.sealer, Index: sys.sealer, Auth: sys.service,
		Production: cfg.Production(), Logger: log,
	})
	if err != nil {
		return err
	}
	handler := httpapi.New(httpapi.Options{
		GraphQL:           reports.GraphQL(),
		Reports:           reports.CSV(),
		Logger:            log,
		Service:           sys.service,
		Metrics:           metricsAuth(cfg.MetricsToken, promhttp.HandlerFor(registry, promhttp.HandlerOpts{})),
		HTTPMetrics:       httpMetrics,
		TrustedProxies:    proxies,
		PublicURL:         public,
		SSOMetadataClient: ssoMetadataClient(hooks.AllowCIDRs),
		Audit:             compliance.NewAuditor(sys.ledger),
		Recordings:        recordings,
		GDPR:              gdpr,
		Webhooks:          webhooksRT.Service,
		Gateways:          rel.gateways,
		Limits:            httpLimits,
		Ready: map[string]httpapi.Checker{
			"database": func(ctx context.Context) error { return sys.pool.Ping(ctx) },
			"ledger": func(ctx context.Context) error {
				select {
				case <-ledgerDone:
					return errors.New("ledger writer stopped")
				default:
					return nil
				}
			},
		},
	})
	// The web console beside the API (api/console, docs/console.md).
	if handler, err = withConsole(sys, handler, consoleServices{reports: reportStore, gdpr: gdpr, recordings: recordings, webhooks: webhooksRT.Service, proxies: proxies}, log); err != nil {
		return err
	}
	if cfg.PprofAddr != "" {
		if err := servePprof(cfg.PprofAddr, log); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	// ReadTimeout bounds a whole request, body included: a body trickled a
	// byte at a time is cut. Recording uploads move their own deadline as
	// long as they keep VIGIL_RECORDING_MIN_RATE; the API's Limits move the
	// write deadline before each write, so WriteTimeout bounds a stalled
	// reader, never a long download.
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.HTTPReadHeaderTimeout,
		ReadTimeout:       cfg.HTTPReadTimeout,
		WriteTimeout:      cfg.HTTPWriteTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		ErrorLog:          nil,
	}
	scheme := "http"
	if cfg.HTTPTLSCertFile != "" {
		// Watched like the relay's: a renewed certificate takes effect
		// without a restart.
		rl, err := relay.NewCertReloader(cfg.HTTPTLSCertFile, cfg.HTTPTLSKeyFile, 10*time.Second, log)
		if err != nil {
			ln.Close()
			return fmt.Errorf("HTTPS: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: rl.GetCertificate}
		scheme = "https"
	}
	log.Info("vigil serving", scheme, ln.Addr().String(), "env", cfg.Env, "region", cfg.Region, "data_dir", cfg.DataDir, "log_origin", cfg.LogOrigin)

	served := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			served <- srv.ServeTLS(ln, "", "")
			return
		}
		// The few answers net/http writes before any handler (a NUL in a
		// header, say) take the API's JSON error form; under TLS they stay
		// Go's plain text (docs/api.md).
		served <- srv.Serve(httpapi.JSONErrorListener(ln))
	}()
	select {
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing in-flight requests")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	stopScheduler()
	<-schedDone
	stopCompliance()
	<-complianceDone
	<-complianceDone
	if err := rel.Stop(sctx); err != nil {
		log.Warn("relay shutdown", "err", err)
	}
	stopProjections()
	<-projDone
	// Requests are done; commit whatever they queued, then checkpoint.
	sys.ledger.Close()
	log.Info("stopped")
	return nil
}

// servePprof serves the runtime profiles on a loopback address only: they
// reveal memory contents and must never face a network.
func servePprof(addr string, log *slog.Logger) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("VIGIL_PPROF_ADDR: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("VIGIL_PPROF_ADDR=%s: profiles are served on loopback addresses only", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("pprof: %w", err)
	}
	log.Info("pprof profiles served", "addr", ln.Addr().String())
	go func() { _ = http.Serve(ln, mux) }()
	return nil
}
