package webhooks_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/adapters/webhook"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"github.com/vigilhq/vigil/projections"
	"github.com/vigilhq/vigil/webhooks"
)

const tenant = "t1"

type env struct {
	t      *testing.T
	db     *pgtest.DB
	ledger *ledger.Ledger
	cfg    webhooks.Config
	svc    *webhooks.Service
	fanout *webhooks.Fanout
	runner *projections.Runner
	admin  service.Principal
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db := pgtest.New(t)
	st := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(st.Close)
	mk, signer, _ := ledgertest.Keys(t)
	l := ledger.New(st, ledger.NewSealer(st, ledger.NewKeyring(mk), 0), signer, ledger.Options{Origin: "vigil.test"})
	go l.Run(context.Background())
	t.Cleanup(l.Close)
	cfg := webhooks.Config{Pool: db.Pool, Ledger: l}
	e := &env{t: t, db: db, ledger: l, cfg: cfg, svc: webhooks.NewService(cfg), fanout: webhooks.NewFanout(cfg),
		admin: service.Principal{Tenant: tenant, Role: service.RoleIntegration, CredentialID: "k1"}}
	e.runner = projections.NewRunner(db.Pool, st, projections.Options{}, e.fanout)
	return e
}

func (e *env) append(stream string, p domain.Payload) domain.Event {
	e.t.Helper()
	ev, err := domain.NewEvent(domain.Meta{Tenant: tenant, Stream: stream, Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}}, p)
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := e.ledger.Append(context.Background(), stream, ledger.AnyVersion, ev)
	if err != nil {
		e.t.Fatal(err)
	}
	return out[0]
}

// session appends a whole session with chat, a note and a file, closed.
func (e *env) session(guid, techID, group string) {
	s := domain.SessionStream(guid)
	e.append(s, domain.SessionCreated{GUID: guid, PIN: "123456", Queue: "general", GroupID: group, TrackingID: "TRK-" + guid,
		CustomerName: "Ada Customer", CustomerEmail: "ada@example.org", CustomFields: map[string]string{"crm_case": "C-42"}})
	e.append(s, domain.CustomerConnected{Platform: "windows"})
	e.append(s, domain.SessionPickedUp{TechnicianID: techID, GroupID: group})
	e.append(s, domain.ChatMessage{From: "customer", Text: "my secret chat line"})
	e.append(s, domain.NoteAdded{TechnicianID: techID, Text: "rebooted the router"})
	e.append(s, domain.FileSent{TechnicianID: techID, ConsentEventID: uuid.New(), Name: "fix.ps1", Size: 10, MD5: "x", SHA256: "y"})
	e.append(s, domain.SessionClosed{ClosedBy: domain.ClosedByTechnician})
}

func (e *env) technician(id, group string) {
	e.append(domain.TechnicianStream(id), domain.TechnicianCreated{GroupID: group, Name: "Tess Tech", Email: "tess@example.com"})
}

func (e *env) create(url string, n webhooks.NewSubscription) webhooks.Subscription {
	e.t.Helper()
	n.URL = url
	s, err := e.svc.Create(context.Background(), e.admin, n)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) fan() {
	e.t.Helper()
	if err := e.runner.CatchUp(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// deliverer starts a deliverer until the test ends or stop is called.
func (e *env) deliverer(opts webhooks.DelivererOptions) (stop func()) {
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	d := webhooks.NewDeliverer(e.cfg, webhook.New(webhook.Options{Allow: allow}), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return stop
}

var fast = webhooks.DelivererOptions{Schedule: []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond,
	40 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond},
	Poll: 20 * time.Millisecond, Timeout: 2 * time.Second, Rate: 5000, Lease: 3 * time.Second}

// received is what a receiver got.
type received struct {
	id, ts, sig string
	body        []byte
}

type receiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []received
	fail func(n int, r received) int // status to answer the nth request
}

func newReceiver(t *testing.T, fail func(n int, r received) int) *receiver {
	rc := &receiver{fail: fail}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		g := received{id: r.Header.Get("webhook-id"), ts: r.Header.Get("webhook-timestamp"), sig: r.Header.Get("webhook-signature"), body: body}
		rc.mu.Lock()
		n := len(rc.got)
		rc.got = append(rc.got, g)
		rc.mu.Unlock()
		status := 200
		if rc.fail != nil {
			status = rc.fail(n, g)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !ok() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// verify is an independent Standard Webhooks check: HMAC-SHA256 of
// "id.timestamp.body" under the base64-decoded secret, any v1 signature.
func verify(secret string, r received) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(r.id + "." + r.ts + "." + string(r.body)))
	want := mac.Sum(nil)
	for _, s := range strings.Fields(r.sig) {
		v, b64, ok := strings.Cut(s, ",")
		got, err := base64.StdEncoding.DecodeString(b64)
		if ok && v == "v1" && err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

type payload struct {
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

func decodeBody(t *testing.T, b []byte) payload {
	t.Helper()
	var p payload
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("payload %s: %v", b, err)
	}
	return p
}

func TestSummariesSignedAndChatExcluded(t *testing.T) {
	e := newEnv(t)
	withChat, noChat := newReceiver(t, nil), newReceiver(t, nil)
	s1 := e.create(withChat.srv.URL, webhooks.NewSubscription{})
	s2 := e.create(noChat.srv.URL, webhooks.NewSubscription{ExcludeChat: true})
	e.technician("tech1", "g1")
	e.session("guid1", "tech1", "g1")
	e.fan()
	e.deliverer(fast)
	for _, rc := range []*receiver{withChat, noChat} {
		waitFor(t, 10*time.Second, "two summaries", func() bool { return len(rc.all()) >= 2 })
	}
	for _, c := range []struct {
		rc     *receiver
		secret string
		chat   bool
	}{{withChat, s1.Secret, true}, {noChat, s2.Secret, false}} {
		types := map[string]payload{}
		for _, g := range c.rc.all() {
			if !verify(c.secret, g) {
				t.Errorf("signature %q does not verify", g.sig)
			}
			if strings.Contains(string(g.body), "my secret chat line") && !c.chat {
				t.Errorf("chat text in an exclude_chat payload: %s", g.body)
			}
			if strings.Contains(string(g.body), `"session.ended"`) && strings.Contains(string(g.body), "my secret chat line") != c.chat {
				t.Errorf("chat present = %v, want %v: %s", !c.chat, c.chat, g.body)
			}
			p := decodeBody(t, g.body)
			types[p.Type] = p
		}
		ended, ok := types[webhooks.TypeSessionEnded]
		if !ok {
			t.Fatalf("no session.ended among %v", types)
		}
		var d webhooks.SessionEnded
		if err := json.Unmarshal(ended.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.SessionID != "guid1" || d.TechnicianName != "Tess Tech" || d.TechnicianEmail != "tess@example.com" || d.TrackingID != "TRK-guid1" ||
			d.CustomFields["crm_case"] != "C-42" || d.ClosedBy != "technician" || len(d.FilesSent) != 1 || d.FilesSent[0].Name != "fix.ps1" ||
			len(d.Notes) != 1 || d.Notes[0].Text != "rebooted the router" || d.PickupSeconds == nil || d.WaitingSeconds == nil {
			t.Errorf("session.ended data: %+v", d)
		}
		if _, ok := types[webhooks.TypeSessionStarted]; !ok {
			t.Errorf("no session.started")
		}
	}
	// Stored payloads are sealed: no personal value in the table.
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE position(convert_to('Tess', 'UTF8') in payload) > 0`).Scan(&n); err != nil || n != 0 {
		t.Errorf("plaintext payloads stored: %d, %v", n, err)
	}
	// Erasure purges them.
	purged, err := e.svc.PurgeSubject(context.Background(), tenant, domain.TechnicianSubject("tech1"))
	if err != nil || purged != 2 {
		t.Errorf("purged %d, %v; want 2 (the session.ended payloads)", purged, err)
	}
}

func TestRetriesKeepTheID(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, func(n int, _ received) int {
		if n < 3 {
			return 500
		}
		return 200
	})
	e.create(rc.srv.URL, webhooks.NewSubscription{EventTypes: []string{"session.created"}})
	e.append(domain.SessionStream("g2"), domain.SessionCreated{GUID: "g2", PIN: "1", Queue: "q", GroupID: "g"})
	e.fan()
	e.deliverer(fast)
	waitFor(t, 10*time.Second, "four attempts", func() bool { return len(rc.all()) >= 4 })
	got := rc.all()
	for _, g := range got[1:] {
		if g.id != got[0].id {
			t.Errorf("webhook-id changed on retry: %s then %s", got[0].id, g.id)
		}
	}
	if strings.Contains(string(got[0].body), "customer_name") {
		t.Errorf("a public event carried a sealed field: %s", got[0].body)
	}
	time.Sleep(100 * time.Millisecond)
	if len(rc.all()) != 4 {
		t.Errorf("%d requests, want 4", len(rc.all()))
	}
}

func TestGoneDisables(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, func(int, received) int { return http.StatusGone })
	s := e.create(rc.srv.URL, webhooks.NewSubscription{EventTypes: []string{"session.created"}})
	e.append(domain.SessionStream("g3"), domain.SessionCreated{GUID: "g3", PIN: "1", Queue: "q", GroupID: "g"})
	e.fan()
	e.deliverer(fast)
	waitFor(t, 10*time.Second, "disabled", func() bool {
		got, err := e.svc.Get(context.Background(), e.admin, s.ID)
		return err == nil && !got.Enabled
	})
	time.Sleep(100 * time.Millisecond)
	if n := len(rc.all()); n != 1 {
		t.Errorf("%d requests after 410, want 1", n)
	}
}

func TestHangingReceiverDoesNotDelayOthers(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	t.Cleanup(hang.Close)
	fine := newReceiver(t, nil)
	e.create(hang.URL, webhooks.NewSubscription{EventTypes: []string{"session.created"}})
	e.create(fine.srv.URL, webhooks.NewSubscription{EventTypes: []string{"session.created"}})
	for i := range 50 {
		g := "h" + uuid.NewString()[:8] + string(rune('a'+i%26))
		e.append(domain.SessionStream(g), domain.SessionCreated{GUID: g, PIN: "1", Queue: "q", GroupID: "g"})
	}
	e.fan()
	opts := fast
	opts.Timeout = 30 * time.Second
	opts.Workers = 8
	opts.PerEndpoint = 2
	start := time.Now()
	e.deliverer(opts)
	waitFor(t, 10*time.Second, "the healthy endpoint's 50 events", func() bool { return len(fine.all()) >= 50 })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("healthy endpoint took %v", d)
	}
	close(release)
}

func TestRestartDeliversEverything(t *testing.T) {
	e := newEnv(t)
	var down sync.Mutex
	isDown := true
	rc := newReceiver(t, func(int, received) int {
		down.Lock()
		defer down.Unlock()
		if isDown {
			return 503
		}
		return 200
	})
	e.create(rc.srv.URL, webhooks.NewSubscription{EventTypes: []string{"session.created"}})
	for _, g := range []string{"r1", "r2", "r3"} {
		e.append(domain.SessionStream(g), domain.SessionCreated{GUID: g, PIN: "1", Queue: "q", GroupID: "g"})
	}
	e.fan()
	opts := fast
	opts.Schedule = []time.Duration{0, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}
	stop := e.deliverer(opts)
	waitFor(t, 5*time.Second, "first attempts", func() bool { return len(rc.all()) >= 3 })
	stop()
	down.Lock()
	isDown = false
	down.Unlock()
	// A new process: fresh fan-out and deliverer over the same database.
	e.fanout = webhooks.NewFanout(e.cfg)
	e.fan()
	e.deliverer(opts)
	waitFor(t, 10*time.Second, "every event after the restart", func() bool {
		ok := map[string]bool{}
		for _, g := range rc.all() {
			ok[g.id] = true
		}
		var n int
		_ = e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'`).Scan(&n)
		return n == 3 && len(ok) == 3
	})
}

func TestAPIManagement(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.svc.Create(ctx, service.Principal{Tenant: tenant, Role: service.RoleTechnician}, webhooks.NewSubscription{URL: "https://x.example"}); domain.ErrorCode(err) != domain.CodeForbidden {
		t.Errorf("technician created a webhook: %v", err)
	}
	if _, err := e.svc.Create(ctx, e.admin, webhooks.NewSubscription{URL: "ftp://x"}); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Errorf("ftp url: %v", err)
	}
	s := e.create("https://crm.example/hook", webhooks.NewSubscription{})
	if !strings.HasPrefix(s.Secret, "whsec_") || len(s.EventTypes) != 2 {
		t.Errorf("created %+v", s)
	}
	r, err := e.svc.RotateSecret(ctx, e.admin, s.ID)
	if err != nil || r.Secret == s.Secret {
		t.Fatalf("rotate: %v", err)
	}
	sig := webhooks.Sign("msg", 1, []byte("{}"), r.Secret, s.Secret)
	for _, sec := range []string{r.Secret, s.Secret} {
		if !verify(sec, received{id: "msg", ts: "1", sig: sig, body: []byte("{}")}) {
			t.Errorf("both secrets must sign after rotation")
		}
	}
	if _, err := e.svc.Test(ctx, e.admin, s.ID); err != nil {
		t.Fatal(err)
	}
	ds, err := e.svc.Deliveries(ctx, e.admin, s.ID, webhooks.DeliveryFilter{})
	if err != nil || len(ds) != 1 || ds[0].EventType != webhooks.TypeTest {
		t.Errorf("deliveries %+v, %v", ds, err)
	}
	if err := e.svc.Delete(ctx, e.admin, s.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Get(ctx, e.admin, s.ID); domain.ErrorCode(err) != domain.CodeNotFound {
		t.Errorf("deleted webhook: %v", err)
	}
}

// TestReplayDuringAnAttempt: a replay while a delivery's request is under
// way must not be undone when that attempt's outcome is recorded.
func TestReplayDuringAnAttempt(t *testing.T) {
	e := newEnv(t)
	inFirst := make(chan struct{})
	release := make(chan struct{})
	rc := newReceiver(t, func(n int, _ received) int {
		if n == 0 {
			close(inFirst)
			<-release // the first attempt hangs until the replay is done
		}
		return 200
	})
	s := e.create(rc.srv.URL, webhooks.NewSubscription{EventTypes: []string{"session.created"}})
	e.append(domain.SessionStream("g9"), domain.SessionCreated{GUID: "g9", PIN: "1", Queue: "q", GroupID: "g"})
	e.fan()
	e.deliverer(fast)
	<-inFirst
	n, err := e.svc.Replay(context.Background(), e.admin, s.ID, time.Now().Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("replay: %d %v", n, err)
	}
	close(release)
	waitFor(t, 10*time.Second, "the replayed delivery", func() bool { return len(rc.all()) >= 2 })
	if got := rc.all(); got[1].id != got[0].id {
		t.Errorf("the replay changed the webhook-id: %s then %s", got[0].id, got[1].id)
	}
}

// TestEventAndSummaryBothDelivered: an event delivered both under its own
// type and as a summary (session.created and session.started,
// session.closed and session.ended) reaches a subscription that names both
// twice, once per type; a rebuild of the fan-out adds nothing.
func TestEventAndSummaryBothDelivered(t *testing.T) {
	e := newEnv(t)
	rc := newReceiver(t, nil)
	sub := e.create(rc.srv.URL, webhooks.NewSubscription{EventTypes: []string{
		"session.created", webhooks.TypeSessionStarted, "session.closed", webhooks.TypeSessionEnded}})
	e.technician("tech1", "g1")
	e.session("guid1", "tech1", "g1")
	e.fan()
	if _, err := e.runner.Rebuild(context.Background(), e.fanout, nil); err != nil {
		t.Fatal(err)
	}
	e.deliverer(fast)
	want := []string{"session.closed", "session.created", webhooks.TypeSessionEnded, webhooks.TypeSessionStarted}
	waitFor(t, 10*time.Second, "four deliveries", func() bool { return len(rc.all()) >= len(want) })
	ids := map[string]bool{}
	var got []string
	for _, g := range rc.all() {
		if !verify(sub.Secret, g) {
			t.Errorf("signature %q does not verify", g.sig)
		}
		ids[g.id] = true
		got = append(got, decodeBody(t, g.body).Type)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) || len(ids) != len(want) {
		t.Errorf("delivered types %v with %d webhook-ids, want %v, each with its own id", got, len(ids), want)
	}
	ds, err := e.svc.Deliveries(context.Background(), e.admin, sub.ID, webhooks.DeliveryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != len(want) {
		t.Errorf("%d deliveries in the log, want %d", len(ds), len(want))
	}
}
