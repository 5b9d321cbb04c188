package main

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/adapters/webhook"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/projections"
	"github.com/vigilhq/vigil/webhooks"
)

// WebhookSettings are the webhook settings serve reads (see the report of
// issue 8 for their flags and VIGIL_ variables).
type WebhookSettings struct {
	AllowCIDRs       []netip.Prefix // VIGIL_WEBHOOK_ALLOW_CIDRS
	PayloadRetention time.Duration  // VIGIL_WEBHOOK_PAYLOAD_RETENTION
	Timeout          time.Duration  // VIGIL_WEBHOOK_TIMEOUT
	Workers          int            // VIGIL_WEBHOOK_WORKERS
	Rate             float64        // VIGIL_WEBHOOK_RATE
	Topic            string         // VIGIL_BUS_TOPIC
	Linger           time.Duration  // VIGIL_PROJECTION_LINGER
}

// WebhooksRuntime is what serve keeps: the API service (httpapi.Options
// Webhooks), the erasure hook (compliance.GDPRConfig Webhooks = Purge) and
// Stop.
type WebhooksRuntime struct {
	Service *webhooks.Service
	Purge   compliance.WebhookPurger
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// StartWebhooks starts the fan-out, the deliverer and, when bus is not nil,
// the dispatcher to the event bus. Stop stops them, waiting for requests
// under way.
func StartWebhooks(ctx context.Context, pool *pgxpool.Pool, l *ledger.Ledger, bus webhooks.Publisher, s WebhookSettings, logger *slog.Logger) *WebhooksRuntime {
	client := webhook.New(webhook.Options{Allow: s.AllowCIDRs})
	cfg := webhooks.Config{Pool: pool, Ledger: l, PayloadRetention: s.PayloadRetention, Logger: logger, CheckAddress: client.CheckURL}
	d := webhooks.NewDeliverer(cfg, client,
		webhooks.DelivererOptions{Timeout: s.Timeout, Workers: s.Workers, Rate: s.Rate})
	fan := webhooks.NewFanout(cfg)
	fan.Wake = d.Wake
	ctx, cancel := context.WithCancel(ctx)
	svc := webhooks.NewService(cfg)
	rt := &WebhooksRuntime{Service: svc, Purge: svc.PurgeSubject, stop: cancel}
	run := func(f func(context.Context) error) {
		rt.wg.Add(1)
		go func() { defer rt.wg.Done(); _ = f(ctx) }()
	}
	run(projections.NewRunner(pool, l.Store(), projections.Options{Logger: logger, Linger: s.Linger}, fan).Run)
	run(d.Run)
	if bus != nil {
		run(projections.NewRunner(pool, l.Store(), projections.Options{Logger: logger, Linger: s.Linger}, webhooks.NewDispatcher(bus, s.Topic)).Run)
	}
	return rt
}

// Stop stops the webhook workers and waits for them.
func (rt *WebhooksRuntime) Stop() {
	rt.stop()
	rt.wg.Wait()
}
