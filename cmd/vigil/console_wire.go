package main

import (
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/api/console"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/webhooks"
)

// consoleServices are what serve already built and the console shares.
type consoleServices struct {
	reports    *postgres.Store // the projections, a replica's when configured
	gdpr       *compliance.GDPR
	recordings *service.Recordings
	webhooks   *webhooks.Service
	proxies    []netip.Prefix
}

// withConsole serves the web console under /console/ beside the API. Its
// sessions are written to the primary (sys.store), so that any node reads
// them; its reports read where GraphQL reads.
func withConsole(sys *system, api http.Handler, cs consoleServices, log *slog.Logger) (http.Handler, error) {
	c, err := console.New(console.Options{
		Service: sys.service, Sessions: sys.store, Directory: sys.store,
		Reports: cs.reports, Opener: sys.sealer, Index: sys.sealer, Log: sys.ledger,
		Audit: compliance.NewAuditor(sys.ledger), GDPR: cs.gdpr, Recordings: cs.recordings, Webhooks: cs.webhooks,
		VerifierKey: sys.keys.VerifierKey, TrustedProxies: cs.proxies, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle(console.Prefix, c)
	mux.Handle("/console", http.RedirectHandler(console.Prefix, http.StatusMovedPermanently))
	mux.Handle("/", api)
	return mux, nil
}
