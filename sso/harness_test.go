package sso_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	gql "github.com/vigilhq/vigil/api/graphql"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"golang.org/x/mod/sumdb/note"
)

// clock is the service's clock, movable by the tests.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

// Advance moves the clock forward.
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

// world is a running API over a fresh database, with one tenant, a group
// and technician alice (and bob, in the tests that create him).
type world struct {
	t      *testing.T
	srv    *httptest.Server
	public string // the URL the SP's entity id and ACS URL are built on
	svc    *service.Service
	store  *postgres.Store
	ledger *ledger.Ledger
	sealer *ledger.Sealer
	pool   *pgxpool.Pool
	// verifier checks the log's checkpoints.
	verifier note.Verifier
	clock    *clock
	tenant   string
	admin    string
	group    string
	alice    string // technician ids
	bob      string
}

func newWorld(t *testing.T) *world { return newCluster(t, 1)[0] }

// newCluster starts n API nodes on one database, each with its own store,
// ledger writer and service (so its own caches), behind one public URL
// (the first node's, as a load balancer would give them), sharing one
// tenant, group and technicians.
func newCluster(t *testing.T, n int) []*world {
	t.Helper()
	db := pgtest.New(t)
	mk, signer, verifier := ledgertest.Keys(t)
	clk := &clock{}
	var public *url.URL
	var nodes []*world
	for i := 0; i < n; i++ {
		st := postgres.NewStore(db.Pool, postgres.Options{})
		t.Cleanup(st.Close)
		sealer := ledger.NewSealer(st, ledger.NewKeyring(mk), 0)
		l := ledger.New(st, sealer, signer, ledger.Options{Origin: "vigil.test"})
		go l.Run(context.Background())
		t.Cleanup(l.Close)
		svc := service.New(service.Config{Log: l, Identity: st, Idempotency: st, Activity: st, Crypto: sealer, Region: "eu", Now: clk.Now})
		var h http.Handler
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { h.ServeHTTP(rw, r) }))
		srv.Start()
		t.Cleanup(srv.Close)
		if public == nil {
			public, _ = url.Parse(srv.URL)
		}
		reports, err := gql.New(gql.Config{Reports: st, Opener: sealer, Index: sealer, Auth: svc})
		if err != nil {
			t.Fatal(err)
		}
		h = httpapi.New(httpapi.Options{Service: svc, PublicURL: public, GraphQL: reports.GraphQL(), Reports: reports.CSV()})
		nodes = append(nodes, &world{t: t, srv: srv, public: public.String(), svc: svc, store: st, ledger: l, sealer: sealer,
			pool: db.Pool, verifier: verifier, clock: clk})
	}
	w := nodes[0]
	ctx := context.Background()
	tenant, admin, err := w.svc.CreateTenant(ctx, "Acme", "eu")
	if err != nil {
		t.Fatal(err)
	}
	w.tenant, w.admin = tenant.ID, admin
	g := w.do("POST", "/v1/groups", admin, map[string]any{"name": "Support"})
	w.group = g.str("id")
	// One technician only: each costs a scrypt hash, seconds under -race.
	w.alice = w.technician("alice@example.test")
	for _, o := range nodes[1:] {
		o.tenant, o.admin, o.group, o.alice = w.tenant, w.admin, w.group, w.alice
	}
	t.Cleanup(func() {
		if err := w.ledger.CheckpointAll(context.Background()); err != nil {
			t.Errorf("checkpoint: %v", err)
		}
		if _, err := ledger.Verify(context.Background(), w.store, ledger.VerifyOptions{Verifiers: note.VerifierList(verifier), Origin: "vigil.test"}); err != nil {
			t.Errorf("verify after the test: %v", err)
		}
	})
	return nodes
}

const testPassword = "Correct-Horse-9"

func (w *world) technician(email string) string {
	w.t.Helper()
	r := w.do("POST", "/v1/technicians", w.admin, map[string]any{"email": email, "name": strings.Split(email, "@")[0],
		"group_id": w.group, "password": testPassword})
	if r.status != http.StatusCreated {
		w.t.Fatalf("create %s: %d %s", email, r.status, r.raw)
	}
	return r.str("id")
}

// answer is a decoded answer.
type answer struct {
	status int
	body   map[string]any
	raw    []byte
	header http.Header
}

func (a answer) str(k string) string { s, _ := a.body[k].(string); return s }

func (a answer) code() string {
	e, _ := a.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (w *world) do(method, path, bearer string, body any) answer {
	w.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, w.srv.URL+path, rd)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		w.t.Fatal(err)
	}
	return decodeAnswer(w.t, resp)
}

func decodeAnswer(t *testing.T, resp *http.Response) answer {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, raw: raw, header: resp.Header}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

// events returns the stream's events of type typ, personal fields opened.
func (w *world) events(stream, typ string) []domain.Event {
	w.t.Helper()
	evs, err := w.ledger.ReadStream(context.Background(), w.tenant, stream, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []domain.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// field returns a field of an event's data or, opened, its personal fields.
func field(t *testing.T, e domain.Event, name string) string {
	t.Helper()
	var data map[string]any
	_ = json.Unmarshal(e.Data, &data)
	if v, ok := data[name]; ok {
		s, _ := v.(string)
		return s
	}
	for _, f := range e.Personal {
		if f.Name == name {
			var s string
			_ = json.Unmarshal(f.Value, &s)
			return s
		}
	}
	return ""
}
