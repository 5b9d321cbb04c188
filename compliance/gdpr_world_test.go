package compliance_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/adapters/localfs"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"github.com/vigilhq/vigil/projections"
	"golang.org/x/mod/sumdb/note"
)

// clock is a movable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type world struct {
	t        *testing.T
	db       *pgtest.DB
	store    *postgres.Store
	ledger   *ledger.Ledger
	sealer   *ledger.Sealer
	svc      *service.Service
	runner   *projections.Runner
	gdpr     *compliance.GDPR
	gdprCfg  compliance.GDPRConfig
	blobs    *localfs.Store
	clock    *clock
	verifier note.Verifier
	tenant   string
	admin    service.Principal
	ingest   service.Principal
}

func newWorld(t *testing.T) *world {
	t.Helper()
	db := pgtest.New(t)
	st := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(st.Close)
	mk, signer, verifier := ledgertest.Keys(t)
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
	blobs, err := localfs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now().UTC()}
	w := &world{t: t, db: db, store: st, ledger: l, sealer: sealer, svc: svc, tenant: tenant.ID, blobs: blobs, clock: clk, verifier: verifier}
	w.runner = projections.NewRunner(db.Pool, st, projections.Options{}, projections.NewReporting(sealer), projections.NewSubjects())
	w.gdprCfg = compliance.GDPRConfig{Pool: db.Pool, Ledger: l, Credentials: st, Signer: signer, Now: clk.Now}
	w.gdpr = compliance.NewGDPR(w.gdprCfg)
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

func (w *world) cmd(p service.Principal, sid, body string) {
	w.t.Helper()
	c, err := service.DecodeCommand([]byte(body))
	w.must(err)
	_, err = w.svc.SessionCommand(context.Background(), p, sid, c, [16]byte{})
	w.must(err)
}

const password = "Correct-Horse-9-Battery"

// The personal values of the scenario: each must be findable before
// erasure and nowhere after.
const (
	techName      = "Adalind Lovelacequist"
	techEmail     = "adalind.lovelacequist@example.com"
	techIP        = "198.51.100.77"
	customerName  = "Gracelyn Hopperfield"
	customerEmail = "gracelyn.hopperfield@example.com"
	customerIP    = "192.0.2.177"
	chatText      = "my password is zebra-quartz-42"
	noteText      = "customer mentioned the zebra-quartz incident"
	fileName      = "secret-zebra-report.pdf"
	customField   = "vip-zebra-contract"
)

type scenario struct {
	tech, session, other string
	techP                service.Principal
}

// scenario creates a technician who logs in and works two sessions, the
// first with every kind of personal data, and projects everything.
func (w *world) scenario() scenario {
	ctx := context.Background()
	name := "L1"
	all := domain.GrantAll()
	policy := domain.DefaultGroupPolicy()
	policy.OneTimePromptAllowed = true
	g, err := w.svc.CreateGroup(ctx, w.admin, service.GroupChange{Name: &name, Permissions: &all, Policy: &policy}, [16]byte{})
	w.must(err)
	tv, err := w.svc.CreateTechnician(ctx, w.admin, service.NewTechnician{Email: techEmail, Name: techName, GroupID: g.ID, Password: password}, [16]byte{})
	w.must(err)
	lr, err := w.svc.Login(ctx, service.LoginRequest{Email: techEmail, Password: password, IP: netip.MustParseAddr(techIP)})
	w.must(err)
	pt, err := w.svc.Authenticate(ctx, lr.Token)
	w.must(err)
	var sc scenario
	sc.tech, sc.techP = tv.ID, pt
	for i := 0; i < 2; i++ {
		cname, cmail, text, ip, ntext, fname, field := customerName, customerEmail, chatText, customerIP, noteText, fileName, customField
		if i == 1 {
			cname, cmail, text, ip, ntext, fname, field = "Other Person", "other@example.com", "unrelated chat", "203.0.113.9", "another note", "other.txt", "plain"
		}
		s, err := w.svc.CreateSession(ctx, pt, service.NewSession{Queue: "shared", Channel: "web", CustomerName: cname,
			CustomerEmail: cmail, CustomFields: map[string]string{"cfield0": field}, TrackingID: "T-1"}, [16]byte{})
		w.must(err)
		w.cmd(w.ingest, s.ID, `{"type":"connect_customer","platform":"windows","ip":"`+ip+`"}`)
		w.cmd(pt, s.ID, `{"type":"pick_up"}`)
		w.cmd(pt, s.ID, `{"type":"request_consent","action":"all"}`)
		w.cmd(w.ingest, s.ID, `{"type":"grant_consent","action":"all"}`)
		w.cmd(pt, s.ID, `{"type":"start_recording","recording_id":"r1"}`)
		w.cmd(pt, s.ID, `{"type":"send_file","name":"`+fname+`","size":10,"md5":"`+strings.Repeat("a", 32)+`","sha256":"`+strings.Repeat("b", 64)+`"}`)
		w.cmd(pt, s.ID, `{"type":"chat","from":"technician","text":"hello"}`)
		w.cmd(w.ingest, s.ID, `{"type":"chat","from":"customer","text":"`+text+`"}`)
		w.cmd(pt, s.ID, `{"type":"note","text":"`+ntext+`"}`)
		w.cmd(pt, s.ID, `{"type":"stop_recording","recording_id":"r1"}`)
		w.cmd(pt, s.ID, `{"type":"close","reason":"done"}`)
		if i == 0 {
			sc.session = s.ID
		} else {
			sc.other = s.ID
		}
	}
	w.project()
	return sc
}

func (w *world) project() {
	w.t.Helper()
	w.must(w.runner.CatchUp(context.Background()))
}

// tableHits searches every text-like and bytea column of every table of
// the database for needle, and returns "table.column" for each hit.
func (w *world) tableHits(needle string) []string {
	w.t.Helper()
	ctx := context.Background()
	rows, err := w.db.Pool.Query(ctx, `SELECT table_name, column_name, data_type FROM information_schema.columns
		WHERE table_schema = 'public' AND data_type IN ('text', 'bytea', 'jsonb', 'json', 'ARRAY', 'character varying', 'uuid')`)
	w.must(err)
	type col struct{ table, column, typ string }
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (col, error) {
		var c col
		return c, r.Scan(&c.table, &c.column, &c.typ)
	})
	w.must(err)
	var hits []string
	for _, c := range cols {
		q := fmt.Sprintf(`SELECT count(*) FROM %q WHERE %q::text ILIKE '%%' || $1 || '%%'`, c.table, c.column)
		if c.typ == "bytea" {
			q = fmt.Sprintf(`SELECT count(*) FROM %q WHERE position(convert_to($1, 'UTF8') IN %q) > 0 OR %q::text ILIKE '%%' || $1 || '%%'`, c.table, c.column, c.column)
		}
		var n int
		w.must(w.db.Pool.QueryRow(ctx, q, needle).Scan(&n))
		if n > 0 {
			hits = append(hits, c.table+"."+c.column)
		}
	}
	return hits
}

// readable returns what the subject's export and the session timelines
// (through the service, opened) show, as one string.
func (w *world) readable(sc scenario) string {
	w.t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, s := range []string{"session:" + sc.session, "technician:" + sc.tech} {
		x, err := w.gdpr.ExportSubject(ctx, w.admin, s)
		w.must(err)
		b.Write(mustJSON(w.t, x))
	}
	for _, s := range []string{sc.session, sc.other} {
		tl, err := w.svc.SessionTimeline(ctx, w.admin, s)
		w.must(err)
		b.Write(mustJSON(w.t, tl))
	}
	return b.String()
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (w *world) verifyLog() {
	w.t.Helper()
	ctx := context.Background()
	w.must(w.ledger.CheckpointAll(ctx))
	if _, err := ledger.Verify(ctx, w.store, ledger.VerifyOptions{Verifiers: note.VerifierList(w.verifier), Origin: "vigil.test"}); err != nil {
		w.t.Fatalf("verify after erasure: %v", err)
	}
}

func dur(d time.Duration) *time.Duration { return &d }
