package service_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
)

// testClock is a clock the tests move.
type testClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// world is a service over a fresh database, with a tenant, its admin and
// an ingest key. Everything is real: PostgreSQL, the ledger, the sealer.
type world struct {
	t      *testing.T
	ctx    context.Context
	db     *pgtest.DB
	store  *postgres.Store
	ledger *ledger.Ledger
	sealer *ledger.Sealer
	clock  *testClock
	svc    *service.Service
	tenant string
	admin  service.Principal
	ingest service.Principal
}

const worldPassword = "Correct-Horse-9-Battery"

func newWorld(t *testing.T, configure ...func(*service.Config)) *world {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	st := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(st.Close)
	mk, signer, _ := ledgertest.Keys(t)
	sealer := ledger.NewSealer(st, ledger.NewKeyring(mk), 0)
	l := ledger.New(st, sealer, signer, ledger.Options{Origin: "vigil.test"})
	go l.Run(context.Background())
	t.Cleanup(l.Close)
	w := &world{t: t, ctx: ctx, db: db, store: st, ledger: l, sealer: sealer, clock: &testClock{}}
	w.svc = w.newService(configure...)
	tenant, adminKey, err := w.svc.CreateTenant(ctx, "Acme", "eu")
	if err != nil {
		t.Fatal(err)
	}
	w.tenant = tenant.ID
	if w.admin, err = w.svc.Authenticate(ctx, adminKey); err != nil {
		t.Fatal(err)
	}
	_, ingestKey, err := w.svc.CreateAPIKey(ctx, tenant.ID, service.RoleIngest, "applet")
	if err != nil {
		t.Fatal(err)
	}
	if w.ingest, err = w.svc.Authenticate(ctx, ingestKey); err != nil {
		t.Fatal(err)
	}
	return w
}

// newService returns another service over the same database and log, as a
// second node would run.
func (w *world) newService(configure ...func(*service.Config)) *service.Service {
	c := service.Config{Log: w.ledger, Identity: w.store, Idempotency: w.store, Activity: w.store, Crypto: w.sealer,
		Region: "eu", Now: w.clock.Now}
	for _, f := range configure {
		f(&c)
	}
	return service.New(c)
}

// group creates a group with every permission and policy (nil: default,
// with the one-time prompt allowed).
func (w *world) group(policy *domain.GroupPolicy) string {
	w.t.Helper()
	name := "Level 1"
	perms := domain.GrantAll()
	if policy == nil {
		p := domain.DefaultGroupPolicy()
		p.OneTimePromptAllowed = true
		policy = &p
	}
	g, err := w.svc.CreateGroup(w.ctx, w.admin, service.GroupChange{Name: &name, Permissions: &perms, Policy: policy}, [16]byte{})
	if err != nil {
		w.t.Fatal(err)
	}
	return g.ID
}

func (w *world) technician(group, email string) string {
	w.t.Helper()
	v, err := w.svc.CreateTechnician(w.ctx, w.admin, service.NewTechnician{Email: email, Name: "Tech " + email, GroupID: group, Password: worldPassword}, [16]byte{})
	if err != nil {
		w.t.Fatal(err)
	}
	return v.ID
}

// logIn logs email in and returns the token's principal.
func (w *world) logIn(email string) service.Principal {
	w.t.Helper()
	res, err := w.svc.Login(w.ctx, service.LoginRequest{Email: email, Password: worldPassword})
	if err != nil {
		w.t.Fatalf("log in %s: %v", email, err)
	}
	p, err := w.svc.Authenticate(w.ctx, res.Token)
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

// command decodes body as the API does and runs it on session guid.
func (w *world) command(p service.Principal, guid, body string) ([]domain.Event, error) {
	w.t.Helper()
	c, err := service.DecodeCommand([]byte(body))
	if err != nil {
		w.t.Fatalf("decode %s: %v", body, err)
	}
	return w.svc.SessionCommand(w.ctx, p, guid, c, [16]byte{})
}

// must runs a command that must succeed.
func (w *world) must(p service.Principal, guid, body string) {
	w.t.Helper()
	if _, err := w.command(p, guid, body); err != nil {
		w.t.Fatalf("%s: %v", body, err)
	}
}

// stream returns the events of a stream of the tenant.
func (w *world) stream(name string) []domain.Event {
	w.t.Helper()
	evs, err := w.ledger.ReadStream(w.ctx, w.tenant, name, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	return evs
}
