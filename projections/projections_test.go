package projections_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"github.com/vigilhq/vigil/projections"
)

type world struct {
	t      testing.TB
	db     *pgtest.DB
	store  *postgres.Store
	ledger *ledger.Ledger
	sealer *ledger.Sealer
	svc    *service.Service
	tenant string
	admin  service.Principal
	ingest service.Principal
}

func newWorld(t testing.TB) *world {
	t.Helper()
	db := pgtest.New(t)
	st := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(st.Close)
	mk, signer, _ := ledgertest.Keys(t)
	sealer := ledger.NewSealer(st, ledger.NewKeyring(mk), 0)
	l := ledger.New(st, sealer, signer, ledger.Options{Origin: "vigil.test"})
	go l.Run(context.Background())
	t.Cleanup(l.Close)
	svc := service.New(service.Config{Log: l, Identity: st, Idempotency: st, Activity: st, Crypto: sealer, Region: "eu"})
	ctx := context.Background()
	tenant, adminKey, err := svc.CreateTenant(ctx, "Acme", "eu")
	if err != nil {
		t.Fatal(err)
	}
	_, ingestKey, err := svc.CreateAPIKey(ctx, tenant.ID, service.RoleIngest, "")
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, db: db, store: st, ledger: l, sealer: sealer, svc: svc, tenant: tenant.ID}
	if w.admin, err = svc.Authenticate(ctx, adminKey); err != nil {
		t.Fatal(err)
	}
	if w.ingest, err = svc.Authenticate(ctx, ingestKey); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *world) must(err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) cmd(p service.Principal, sid, body string) error {
	w.t.Helper()
	c, err := service.DecodeCommand([]byte(body))
	w.must(err)
	_, err = w.svc.SessionCommand(context.Background(), p, sid, c, [16]byte{})
	return err
}

const password = "Correct-Horse-9-Battery"

// scenario drives sessions covering every projected event type and returns
// the technicians' ids and the first session's id.
func (w *world) scenario(sessions int) (techA, techB, first string) {
	ctx := context.Background()
	name := "L1"
	all := domain.GrantAll()
	policy := domain.DefaultGroupPolicy()
	policy.OneTimePromptAllowed = true
	g, err := w.svc.CreateGroup(ctx, w.admin, service.GroupChange{Name: &name, Permissions: &all, Policy: &policy}, [16]byte{})
	w.must(err)
	a, err := w.svc.CreateTechnician(ctx, w.admin, service.NewTechnician{Email: "a@example.com", Name: "Ada", GroupID: g.ID, Password: password}, [16]byte{})
	w.must(err)
	b, err := w.svc.CreateTechnician(ctx, w.admin, service.NewTechnician{Email: "b@example.com", Name: "Bob", GroupID: g.ID, Password: password}, [16]byte{})
	w.must(err)
	// Logins: a failure, a success each.
	if _, err := w.svc.Login(ctx, service.LoginRequest{Email: "a@example.com", Password: "wrong-password-1"}); err == nil {
		w.t.Fatal("wrong password accepted")
	}
	la, err := w.svc.Login(ctx, service.LoginRequest{Email: "a@example.com", Password: password})
	w.must(err)
	lb, err := w.svc.Login(ctx, service.LoginRequest{Email: "b@example.com", Password: password})
	w.must(err)
	pa, err := w.svc.Authenticate(ctx, la.Token)
	w.must(err)
	pb, err := w.svc.Authenticate(ctx, lb.Token)
	w.must(err)
	for i := 0; i < sessions; i++ {
		s, err := w.svc.CreateSession(ctx, pa, service.NewSession{Queue: "shared", Channel: "web", CustomerName: "Grace",
			CustomerEmail: fmt.Sprintf("Grace%d@Example.com", i), CustomFields: map[string]string{"cfield0": "ticket"}, TrackingID: "T-1"}, [16]byte{})
		w.must(err)
		if i == 0 {
			first = s.ID
		}
		w.must(w.cmd(w.ingest, s.ID, `{"type":"connect_customer","platform":"windows","ip":"192.0.2.1"}`))
		w.must(w.cmd(pa, s.ID, `{"type":"pick_up"}`))
		if err := w.cmd(pa, s.ID, `{"type":"start","action":"remote_control"}`); domain.ErrorCode(err) != domain.CodeConsentRequired {
			w.t.Fatalf("start without consent: %v", err)
		}
		w.must(w.cmd(pa, s.ID, `{"type":"request_consent","action":"reboot"}`))
		w.must(w.cmd(w.ingest, s.ID, `{"type":"deny_consent","action":"reboot"}`))
		w.must(w.cmd(pa, s.ID, `{"type":"request_consent","action":"all"}`))
		w.must(w.cmd(w.ingest, s.ID, `{"type":"grant_consent","action":"all"}`))
		w.must(w.cmd(pa, s.ID, `{"type":"start_recording","recording_id":"r1"}`))
		w.must(w.cmd(pa, s.ID, `{"type":"start","action":"remote_control"}`))
		w.must(w.cmd(pa, s.ID, `{"type":"end","action":"remote_control"}`))
		w.must(w.cmd(pa, s.ID, `{"type":"send_file","name":"fix.exe","size":10,"md5":"`+strings.Repeat("a", 32)+`","sha256":"`+strings.Repeat("b", 64)+`"}`))
		w.must(w.cmd(pa, s.ID, `{"type":"receive_file","name":"log.txt","size":20,"md5":"`+strings.Repeat("c", 32)+`","sha256":"`+strings.Repeat("d", 64)+`"}`))
		w.must(w.cmd(pa, s.ID, `{"type":"chat","from":"technician","text":"hello"}`))
		w.must(w.cmd(w.ingest, s.ID, `{"type":"chat","from":"customer","text":"secret words"}`))
		w.must(w.cmd(pa, s.ID, `{"type":"note","text":"a note"}`))
		w.must(w.cmd(pa, s.ID, `{"type":"set_custom_fields","custom_fields":{"cfield1":"vip"}}`))
		w.must(w.cmd(pa, s.ID, `{"type":"stop_recording","recording_id":"r1"}`))
		w.must(w.cmd(pa, s.ID, `{"type":"transfer","to_technician":"`+b.ID+`"}`))
		w.must(w.cmd(pb, s.ID, `{"type":"close","reason":"fixed"}`))
	}
	return a.ID, b.ID, first
}

func newRunner(w *world, batch int, ps ...projections.Projection) *projections.Runner {
	if len(ps) == 0 {
		ps = []projections.Projection{projections.NewReporting(w.sealer), projections.NewSubjects()}
	}
	return projections.NewRunner(w.db.Pool, w.store, projections.Options{Batch: batch}, ps...)
}

var tables = []struct{ name, order string }{
	{"rpt_sessions", "tenant, guid"}, {"rpt_chat", "position"}, {"rpt_notes", "position"},
	{"rpt_file_transfers", "position"}, {"rpt_consents", "position"}, {"rpt_actions", "position"},
	{"rpt_logins", "position"}, {"rpt_technician_daily", "tenant, technician_id, day"},
	{"rpt_recordings", "tenant, guid, recording_id"}, {"rpt_subject_index", "tenant, subject, position, tbl"},
}

// dump renders every reporting table as text, row by row, in key order.
func dump(t *testing.T, w *world) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, tb := range tables {
		rows, err := w.db.Pool.Query(context.Background(), `SELECT t::text FROM `+tb.name+` t ORDER BY `+tb.order)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		out[tb.name] = lines
	}
	return out
}

func count(t *testing.T, w *world, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := w.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestEveryEventTypeLands(t *testing.T) {
	w := newWorld(t)
	techA, techB, sid := w.scenario(2)
	ctx := context.Background()
	r := newRunner(w, 50)
	w.must(r.CatchUp(ctx))

	var s struct {
		status, platform, tech, closedBy, reason, tracking string
		transfers                                          int
		tools                                              []string
		recorded                                           bool
		waiting, pickup, active, total                     *float64
		nameRef, emailRef, fieldsRef, idx                  []byte
	}
	err := w.db.Pool.QueryRow(ctx, `SELECT status, platform, technician_id, closed_by, close_reason, tracking_id, transfers, tools, recorded,
		waiting_s, pickup_s, active_s, total_s, customer_name_ref, customer_email_ref, custom_fields_ref, customer_email_idx
		FROM rpt_sessions WHERE tenant = $1 AND guid = $2`, w.tenant, sid).Scan(&s.status, &s.platform, &s.tech, &s.closedBy, &s.reason, &s.tracking,
		&s.transfers, &s.tools, &s.recorded, &s.waiting, &s.pickup, &s.active, &s.total, &s.nameRef, &s.emailRef, &s.fieldsRef, &s.idx)
	w.must(err)
	if s.status != "closed" || s.platform != "windows" || s.tech != techB || s.closedBy != "technician" || s.reason != "fixed" ||
		s.tracking != "T-1" || s.transfers != 1 || !s.recorded {
		t.Errorf("session row %+v", s)
	}
	wantTools := []string{string(domain.ActionReceiveFile), string(domain.ActionRemoteControl), string(domain.ActionSendFile)}
	slices.Sort(wantTools)
	if diff := cmp.Diff(wantTools, s.tools); diff != "" {
		t.Errorf("tools (-want +got):\n%s", diff)
	}
	for name, v := range map[string]*float64{"waiting": s.waiting, "pickup": s.pickup, "active": s.active, "total": s.total} {
		if v == nil || *v < 0 {
			t.Errorf("%s duration %v", name, v)
		}
	}
	// Personal values are sealed references that open to the value.
	for ref, want := range map[string]string{string(s.nameRef): "Grace", string(s.emailRef): "Grace0@Example.com"} {
		got, err := w.sealer.OpenRefString(ctx, w.tenant, []byte(ref))
		w.must(err)
		if got != want {
			t.Errorf("sealed reference opens to %q, want %q", got, want)
		}
	}
	// The blind index matches the lower-cased address.
	idx, err := w.sealer.BlindIndex(ctx, projections.CustomerEmailPurpose, "grace0@example.com")
	w.must(err)
	if string(idx) != string(s.idx) {
		t.Error("customer e-mail blind index does not match")
	}

	for _, c := range []struct {
		sql  string
		want int
	}{
		{`SELECT count(*) FROM rpt_sessions WHERE tenant = $1`, 2},
		{`SELECT count(*) FROM rpt_chat WHERE tenant = $1`, 4},
		{`SELECT count(*) FROM rpt_chat WHERE tenant = $1 AND sender = 'customer'`, 2},
		{`SELECT count(*) FROM rpt_notes WHERE tenant = $1`, 2},
		{`SELECT count(*) FROM rpt_file_transfers WHERE tenant = $1 AND direction = 'sent'`, 2},
		{`SELECT count(*) FROM rpt_file_transfers WHERE tenant = $1 AND direction = 'received' AND consent_event_id IS NOT NULL`, 2},
		{`SELECT count(*) FROM rpt_consents WHERE tenant = $1 AND kind = 'requested'`, 4},
		{`SELECT count(*) FROM rpt_consents WHERE tenant = $1 AND kind = 'granted'`, 2},
		{`SELECT count(*) FROM rpt_consents WHERE tenant = $1 AND kind = 'denied'`, 2},
		{`SELECT count(*) FROM rpt_consents WHERE tenant = $1 AND kind = 'action_denied' AND reason = 'consent_required'`, 2},
		{`SELECT count(*) FROM rpt_actions WHERE tenant = $1 AND consent_event_id IS NOT NULL`, 6},
		{`SELECT count(*) FROM rpt_logins WHERE tenant = $1 AND outcome = 'succeeded'`, 2},
		{`SELECT count(*) FROM rpt_logins WHERE tenant = $1 AND outcome = 'failed' AND reason = 'bad_password'`, 1},
		{`SELECT count(*) FROM rpt_recordings WHERE tenant = $1 AND state = 'stopped'`, 2},
		{`SELECT coalesce(sum(sessions), 0)::int FROM rpt_technician_daily WHERE tenant = $1`, 4},
		{`SELECT coalesce(sum(transfers), 0)::int FROM rpt_technician_daily WHERE tenant = $1`, 2},
		{`SELECT coalesce(sum(duration_n), 0)::int FROM rpt_technician_daily WHERE tenant = $1`, 2},
		{`SELECT count(*) FROM rpt_subject_index WHERE tenant = $1 AND subject = 'session-chat:' || '` + sid + `' AND tbl = 'rpt_chat'`, 2},
		{`SELECT count(*) FROM rpt_subject_index WHERE tenant = $1 AND subject = 'technician:' || '` + techA + `' AND tbl = 'rpt_logins'`, 2},
	} {
		if got := count(t, w, c.sql, w.tenant); got != c.want {
			t.Errorf("%s = %d, want %d", c.sql, got, c.want)
		}
	}
	st, err := r.Status(ctx)
	w.must(err)
	for _, x := range st {
		if x.Lag != 0 || x.Position != x.Head {
			t.Errorf("projection %s lags: %+v", x.Name, x)
		}
	}
}

func TestReplayIsByteIdentical(t *testing.T) {
	w := newWorld(t)
	w.scenario(3)
	ctx := context.Background()
	r := newRunner(w, 7) // small batches: many commits, rows built across batches
	w.must(r.CatchUp(ctx))
	before := dump(t, w)
	if len(before["rpt_sessions"]) != 3 {
		t.Fatalf("%d sessions projected", len(before["rpt_sessions"]))
	}
	for _, p := range r.Projections() {
		if _, err := r.Rebuild(ctx, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(before, dump(t, w)); diff != "" {
		t.Errorf("rebuild from 0 changed the tables (-incremental +rebuilt):\n%s", diff)
	}
	// One big batch gives the same rows as many small ones.
	big := newRunner(w, 100000)
	for _, p := range big.Projections() {
		if _, err := big.Rebuild(ctx, p, nil); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(before, dump(t, w)); diff != "" {
		t.Errorf("batch size changed the tables:\n%s", diff)
	}
}

// TestCheckComparesWithARebuild: Check finds a projection equal to a
// rebuild even when the live runner is behind the log (it catches up
// first), names a table whose rows were changed behind the projection's
// back, and changes nothing either way.
func TestCheckComparesWithARebuild(t *testing.T) {
	w := newWorld(t)
	w.scenario(2)
	ctx := context.Background()
	r := newRunner(w, 7)
	w.must(r.CatchUp(ctx))
	// Appended after the live runner's last step: logins are projected.
	for range 2 {
		_, err := w.svc.Login(ctx, service.LoginRequest{Email: "a@example.com", Password: password})
		w.must(err)
	}
	check := func() map[string][]projections.Difference {
		t.Helper()
		out := map[string][]projections.Difference{}
		for _, p := range r.Projections() {
			diff, n, err := r.Check(ctx, p, nil)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatalf("%s: check replayed no events", p.Name())
			}
			if len(diff) > 0 {
				out[p.Name()] = diff
			}
		}
		return out
	}
	before := dump(t, w)
	if got := check(); len(got) != 0 {
		t.Fatalf("a projection behind the log but correct differs: %+v", got)
	}
	if diff := cmp.Diff(before, dump(t, w)); diff != "" {
		t.Errorf("check changed the tables:\n%s", diff)
	}
	// A row changed behind the projection's back, and one deleted.
	if _, err := w.db.Pool.Exec(ctx, `UPDATE rpt_chat SET position = position + 1000000 WHERE position = (SELECT min(position) FROM rpt_chat)`); err != nil {
		t.Fatal(err)
	}
	if _, err := w.db.Pool.Exec(ctx, `DELETE FROM rpt_subject_index WHERE position = (SELECT min(position) FROM rpt_subject_index)`); err != nil {
		t.Fatal(err)
	}
	tampered := dump(t, w)
	got := check()
	if len(got["reporting"]) != 1 || got["reporting"][0].Table != "rpt_chat" || got["reporting"][0].Live != got["reporting"][0].Rebuilt {
		t.Errorf("reporting: got %+v, want rpt_chat with as many rows live as rebuilt", got["reporting"])
	}
	if len(got["subjects"]) != 1 || got["subjects"][0].Live != got["subjects"][0].Rebuilt-1 {
		t.Errorf("subjects: got %+v, want rpt_subject_index with one row fewer live", got["subjects"])
	}
	if diff := cmp.Diff(tampered, dump(t, w)); diff != "" {
		t.Errorf("check repaired the tables (it must change nothing):\n%s", diff)
	}
}

// failing applies its projection, then fails on its n-th batch: a crash
// mid-batch, after some of the batch's rows were written.
type failing struct {
	projections.Projection
	mu    sync.Mutex
	calls int
	n     int
}

var errCrash = errors.New("crash")

func (f *failing) Apply(ctx context.Context, tx pgx.Tx, evs []domain.Event) error {
	if err := f.Projection.Apply(ctx, tx, evs); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls == f.n {
		return errCrash
	}
	return nil
}

func TestCrashMidBatchRepeatsNothing(t *testing.T) {
	w := newWorld(t)
	w.scenario(2)
	ctx := context.Background()
	crashing := newRunner(w, 5, &failing{Projection: projections.NewReporting(w.sealer), n: 4})
	if err := crashing.CatchUp(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("catch-up: %v, want the crash", err)
	}
	// Restart: a fresh runner picks up at the stored position.
	w.must(newRunner(w, 5, projections.NewReporting(w.sealer)).CatchUp(ctx))
	after := dump(t, w)
	clean := newRunner(w, 5, projections.NewReporting(w.sealer))
	_, err := clean.Rebuild(ctx, clean.Projections()[0], nil)
	w.must(err)
	if diff := cmp.Diff(after, dump(t, w)); diff != "" {
		t.Errorf("rows after a crash and restart differ from a clean build:\n%s", diff)
	}
}

func TestTwoRunnersNeverDoubleApply(t *testing.T) {
	w := newWorld(t)
	w.scenario(3)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- newRunner(w, 3).CatchUp(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		w.must(err)
	}
	concurrent := dump(t, w)
	r := newRunner(w, 1000)
	for _, p := range r.Projections() {
		_, err := r.Rebuild(ctx, p, nil)
		w.must(err)
	}
	// The daily counters are additive: a batch applied twice would show.
	if diff := cmp.Diff(concurrent, dump(t, w)); diff != "" {
		t.Errorf("four runners at once differ from one rebuild:\n%s", diff)
	}
}

func TestRunFollowsTheLog(t *testing.T) {
	w := newWorld(t)
	w.scenario(1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := newRunner(w, 100)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	w.scenario2(ctx)
	for {
		st, err := r.Status(ctx)
		w.must(err)
		if st[0].Lag == 0 && st[1].Lag == 0 && count(t, w, `SELECT count(*) FROM rpt_sessions`) == 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("projections never caught up: %+v", st)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("run ended with %v", err)
	}
}

// scenario2 adds one more session by the existing technician a.
func (w *world) scenario2(ctx context.Context) {
	la, err := w.svc.Login(ctx, service.LoginRequest{Email: "a@example.com", Password: password})
	w.must(err)
	pa, err := w.svc.Authenticate(ctx, la.Token)
	w.must(err)
	s, err := w.svc.CreateSession(ctx, pa, service.NewSession{Queue: "shared"}, [16]byte{})
	w.must(err)
	w.must(w.cmd(w.ingest, s.ID, `{"type":"connect_customer","platform":"mac"}`))
	w.must(w.cmd(pa, s.ID, `{"type":"pick_up"}`))
}
