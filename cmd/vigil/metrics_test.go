package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
)

func TestHealthCollector(t *testing.T) {
	db := pgtest.New(t)
	dir := t.TempDir()
	appendSome(t, db.URL, dir, 20) // signed at 20
	ctx := context.Background()
	cfg := testConfig(db.URL, dir)
	sys, err := open(ctx, cfg, newLogger(io.Discard, "error"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	go sys.ledger.Run(ctx)
	for i := range 5 { // five more, not signed yet
		guid := fmt.Sprintf("%032x", 9)
		if _, err := sys.ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, ledgertest.Chat(t, "acme", guid, fmt.Sprint("late ", i))); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		`INSERT INTO projection_positions VALUES ('reporting', 25, now()), ('webhooks.fanout', 7, now())`,
		`INSERT INTO projection_quarantine (projection, position, event_id, tenant, type, error) VALUES
			('webhooks.fanout', 3, gen_random_uuid(), 'acme', 'session.chat_message', 'boom')`,
		`INSERT INTO erasure_requests (id, tenant, subject, scope, state, requested_at, due_at, attempts, last_error) VALUES
			(gen_random_uuid(), 'acme', 'session:1', 'all', 'pending', now(), now() + interval '1 day', 0, ''),
			(gen_random_uuid(), 'acme', 'session:2', 'all', 'pending', now(), now() - interval '1 hour', 3, 'boom'),
			(gen_random_uuid(), 'acme', 'session:3', 'all', 'done', now(), now() - interval '1 hour', 1, '')`,
	} {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	c := newHealthCollector(sys.pool, sys.logStore, sys.log)
	c.now = func() time.Time { return time.Now().Add(time.Minute) }
	want := `
# HELP vigil_checkpoint_unsigned_events Events in the tenant's log after its latest signed checkpoint.
# TYPE vigil_checkpoint_unsigned_events gauge
vigil_checkpoint_unsigned_events{tenant="acme"} 5
# HELP vigil_erasure_requests_failing Pending erasure requests whose worker failed at least once (see last_error).
# TYPE vigil_erasure_requests_failing gauge
vigil_erasure_requests_failing 1
# HELP vigil_erasure_requests_overdue Pending erasure requests more than 10 minutes past their due time.
# TYPE vigil_erasure_requests_overdue gauge
vigil_erasure_requests_overdue 1
# HELP vigil_erasure_requests_pending Erasure requests not done yet (waiting for their delay or being worked on).
# TYPE vigil_erasure_requests_pending gauge
vigil_erasure_requests_pending 2
# HELP vigil_subscriber_lag_events Events committed to the log that a subscriber (projection, webhooks.fanout, bus.dispatch) has not handled yet.
# TYPE vigil_subscriber_lag_events gauge
vigil_subscriber_lag_events{subscriber="reporting"} 0
vigil_subscriber_lag_events{subscriber="webhooks.fanout"} 18
# HELP vigil_subscriber_quarantined_events Events a subscriber could not apply and set aside in projection_quarantine (see projectionStatus); alert when above 0.
# TYPE vigil_subscriber_quarantined_events gauge
vigil_subscriber_quarantined_events{subscriber="reporting"} 0
vigil_subscriber_quarantined_events{subscriber="webhooks.fanout"} 1
# HELP vigil_webhook_deliveries_pending Webhook deliveries waiting for a (next) attempt.
# TYPE vigil_webhook_deliveries_pending gauge
vigil_webhook_deliveries_pending 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"vigil_checkpoint_unsigned_events", "vigil_erasure_requests_failing", "vigil_erasure_requests_overdue",
		"vigil_erasure_requests_pending", "vigil_subscriber_lag_events", "vigil_subscriber_quarantined_events",
		"vigil_webhook_deliveries_pending"); err != nil {
		t.Error(err)
	}
	// The checkpoint's age is the clock minus its creation.
	if v := testutil.ToFloat64(onlyAge{c}); v < 55 || v > 3600 {
		t.Errorf("checkpoint age %v s, want about a minute", v)
	}
}

// onlyAge is c reduced to its one checkpoint age series.
type onlyAge struct{ c *healthCollector }

func (o onlyAge) Describe(ch chan<- *prometheus.Desc) { ch <- checkpointAgeDesc }

func (o onlyAge) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric, 64)
	go func() { o.c.Collect(all); close(all) }()
	for m := range all {
		if m.Desc() == checkpointAgeDesc {
			ch <- m
		}
	}
}

func TestMetricsAuth(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "metrics") })
	if h := metricsAuth("", ok); h == nil {
		t.Fatal("nil handler")
	}
	open := httptest.NewRecorder()
	metricsAuth("", ok).ServeHTTP(open, httptest.NewRequest("GET", "/metrics", nil))
	if open.Code != 200 {
		t.Errorf("no token configured: %d", open.Code)
	}
	h := metricsAuth("s3cret", ok)
	for hdr, want := range map[string]int{"": 401, "Bearer wrong": 401, "s3cret": 401, "Bearer s3cret": 200, "Bearer s3cret2": 401} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		if hdr != "" {
			req.Header.Set("Authorization", hdr)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("Authorization %q: %d, want %d", hdr, rec.Code, want)
		}
		if want == 401 && (rec.Header().Get("WWW-Authenticate") == "" || strings.Contains(rec.Body.String(), "s3cret")) {
			t.Errorf("Authorization %q: challenge %q, body %q", hdr, rec.Header().Get("WWW-Authenticate"), rec.Body.String())
		}
	}
}

// testConfig is the configuration of a system opened in process by a test:
// development keys in dir, checkpoints only when the test asks.
func testConfig(dbURL, dir string) *Config {
	return &Config{DatabaseURL: dbURL, DataDir: dir, LogOrigin: "vigil.local", Region: "eu", CheckpointInterval: time.Hour,
		SchedulerInterval: time.Second, Env: "development", LogLevel: "error", LogStore: "postgres"}
}
