package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

// healthCollector exports, read at scrape time, the health that lives in
// the database: how far each tenant's log is ahead of its last signed
// checkpoint, how far every subscriber of the log lags (the projections,
// but also the webhook fan-out and the bus dispatcher), and the backlogs
// of webhook deliveries and erasure requests. Each query reads a small
// table or a partial index, so a scrape costs a few milliseconds whatever
// the size of the log.
type healthCollector struct {
	pool *pgxpool.Pool
	log  ledger.Store
	lg   *slog.Logger
	now  func() time.Time
}

var (
	unsignedDesc = prometheus.NewDesc("vigil_checkpoint_unsigned_events",
		"Events in the tenant's log after its latest signed checkpoint.", []string{"tenant"}, nil)
	checkpointAgeDesc = prometheus.NewDesc("vigil_checkpoint_age_seconds",
		"Age of the tenant's latest signed checkpoint.", []string{"tenant"}, nil)
	subscriberLagDesc = prometheus.NewDesc("vigil_subscriber_lag_events",
		"Events committed to the log that a subscriber (projection, webhooks.fanout, bus.dispatch) has not handled yet.", []string{"subscriber"}, nil)
	subscriberQuarantinedDesc = prometheus.NewDesc("vigil_subscriber_quarantined_events",
		"Events a subscriber could not apply and set aside in projection_quarantine (see projectionStatus); alert when above 0.", []string{"subscriber"}, nil)
	webhookPendingDesc = prometheus.NewDesc("vigil_webhook_deliveries_pending",
		"Webhook deliveries waiting for a (next) attempt.", nil, nil)
	webhookOverdueDesc = prometheus.NewDesc("vigil_webhook_deliveries_overdue",
		"Pending webhook deliveries whose attempt is more than 10 minutes late.", nil, nil)
	erasurePendingDesc = prometheus.NewDesc("vigil_erasure_requests_pending",
		"Erasure requests not done yet (waiting for their delay or being worked on).", nil, nil)
	erasureOverdueDesc = prometheus.NewDesc("vigil_erasure_requests_overdue",
		"Pending erasure requests more than 10 minutes past their due time.", nil, nil)
	erasureFailingDesc = prometheus.NewDesc("vigil_erasure_requests_failing",
		"Pending erasure requests whose worker failed at least once (see last_error).", nil, nil)
)

func newHealthCollector(pool *pgxpool.Pool, log ledger.Store, lg *slog.Logger) *healthCollector {
	return &healthCollector{pool: pool, log: log, lg: lg, now: time.Now}
}

// Describe implements prometheus.Collector.
func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{unsignedDesc, checkpointAgeDesc, subscriberLagDesc, subscriberQuarantinedDesc,
		webhookPendingDesc, webhookOverdueDesc, erasurePendingDesc, erasureOverdueDesc, erasureFailingDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A part that cannot be read is
// left out (and logged), so that absent() alerts name it.
func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if err := c.checkpoints(ctx, gauge); err != nil {
		c.lg.Warn("health metrics: checkpoints", "err", err)
	}
	if err := c.subscribers(ctx, gauge); err != nil {
		c.lg.Warn("health metrics: subscribers", "err", err)
	}
	var pending, overdue int64
	err := c.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE next_attempt_at < now() - interval '10 minutes')
		FROM webhook_deliveries WHERE state = 'pending'`).Scan(&pending, &overdue)
	if err != nil {
		c.lg.Warn("health metrics: webhooks", "err", err)
	} else {
		gauge(webhookPendingDesc, float64(pending))
		gauge(webhookOverdueDesc, float64(overdue))
	}
	var failing int64
	err = c.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE due_at < now() - interval '10 minutes'),
		count(*) FILTER (WHERE attempts > 0) FROM erasure_requests WHERE state = 'pending'`).Scan(&pending, &overdue, &failing)
	if err != nil {
		c.lg.Warn("health metrics: erasures", "err", err)
	} else {
		gauge(erasurePendingDesc, float64(pending))
		gauge(erasureOverdueDesc, float64(overdue))
		gauge(erasureFailingDesc, float64(failing))
	}
}

func (c *healthCollector) checkpoints(ctx context.Context, gauge func(*prometheus.Desc, float64, ...string)) error {
	tenants, err := c.log.Tenants(ctx)
	if err != nil {
		return err
	}
	for _, t := range tenants {
		size, err := c.log.TreeSize(ctx, t)
		if err != nil {
			return err
		}
		cp, err := c.log.LatestCheckpoint(ctx, t)
		switch {
		case errors.Is(err, domain.ErrNotFound):
			gauge(unsignedDesc, float64(size), t)
		case err != nil:
			return err
		default:
			gauge(unsignedDesc, float64(max(size-cp.Size, 0)), t)
			gauge(checkpointAgeDesc, c.now().Sub(cp.CreatedAt).Seconds(), t)
		}
	}
	return nil
}

func (c *healthCollector) subscribers(ctx context.Context, gauge func(*prometheus.Desc, float64, ...string)) error {
	head, err := c.log.Head(ctx)
	if err != nil {
		return err
	}
	rows, err := c.pool.Query(ctx, `SELECT p.name, p.position,
			(SELECT count(*) FROM projection_quarantine q WHERE q.projection = p.name)
		FROM projection_positions p ORDER BY p.name`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var pos, quarantined int64
		if err := rows.Scan(&name, &pos, &quarantined); err != nil {
			return err
		}
		gauge(subscriberLagDesc, float64(max(head-pos, 0)), name)
		gauge(subscriberQuarantinedDesc, float64(quarantined), name)
	}
	return rows.Err()
}

// metricsAuth guards h with VIGIL_METRICS_TOKEN: when token is set, only
// requests bearing it get the metrics (tenant ids are labels, and the
// relay's counters describe traffic); otherwise h is returned as it is.
func metricsAuth(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil metrics"`)
			http.Error(w, "metrics need the bearer token of VIGIL_METRICS_TOKEN", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
