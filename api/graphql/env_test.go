package gql_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	gql "github.com/vigilhq/vigil/api/graphql"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
)

// queryCounter counts the SQL statements of the reporting pool.
type queryCounter struct{ n atomic.Int64 }

func (c *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// env is the reporting API over a fresh database: the real service for
// credentials, a real sealer, the PostgreSQL reports port (on a pool of its
// own whose statements are counted), and fixture rows written straight into
// the reporting tables.
type env struct {
	t       *testing.T
	pool    *pgxpool.Pool
	store   *postgres.Store
	sealer  *ledger.Sealer
	ledger  *ledger.Ledger
	svc     *service.Service
	srv     *httptest.Server
	queries *queryCounter
	reports gql.Reports

	tenant, other string
	keys          map[string]string // role name -> credential
	techID        string            // the technician of keys["tech"]
	tech2ID       string            // of keys["tech2"]

	pos *atomic.Int64 // shared by the copies of newEnvWith
}

type envOption func(*gql.Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	st := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(st.Close)
	mk, signer, _ := ledgertest.Keys(t)
	sealer := ledger.NewSealer(st, ledger.NewKeyring(mk), 0)
	// Checkpoints only when a test asks (CheckpointAll): a slow run
	// (-race) must not see one appear by itself.
	l := ledger.New(st, sealer, signer, ledger.Options{Origin: "vigil.test", CheckpointInterval: time.Hour})
	go l.Run(context.Background())
	t.Cleanup(l.Close)
	svc := service.New(service.Config{Log: l, Identity: st, Idempotency: st, Activity: st, Crypto: sealer, Region: "eu"})

	qc := &queryCounter{}
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = qc
	rpool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rpool.Close)
	reports := postgres.NewStore(rpool, postgres.Options{})

	e := &env{t: t, pool: db.Pool, store: st, sealer: sealer, ledger: l, svc: svc, queries: qc, reports: reports, keys: map[string]string{}}
	c := gql.Config{Reports: reports, Opener: sealer, Index: sealer, Auth: svc}
	for _, o := range opts {
		o(&c)
	}
	if c.Reports == nil {
		c.Reports = reports
	}
	api, err := gql.New(c)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/graphql", api.GraphQL())
	mux.Handle("/graphql/schema.graphql", api.GraphQL())
	mux.Handle("GET /v1/reports/{file}", api.CSV())
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)

	tenant, admin, err := svc.CreateTenant(ctx, "Acme", "eu")
	if err != nil {
		t.Fatal(err)
	}
	e.tenant, e.keys["admin"] = tenant.ID, admin
	for _, role := range []service.Role{service.RoleAuditor, service.RoleIntegration, service.RoleIngest, service.RoleRelay} {
		_, k, err := svc.CreateAPIKey(ctx, tenant.ID, role, string(role))
		if err != nil {
			t.Fatal(err)
		}
		e.keys[string(role)] = k
	}
	other, otherAdmin, err := svc.CreateTenant(ctx, "Globex", "eu")
	if err != nil {
		t.Fatal(err)
	}
	e.other, e.keys["otherAdmin"] = other.ID, otherAdmin

	p, err := svc.Authenticate(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	name := "Level 1"
	g, err := svc.CreateGroup(ctx, p, service.GroupChange{Name: &name}, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{"tech", "tech2"} {
		email := fmt.Sprintf("%s@example.com", k)
		tv, err := svc.CreateTechnician(ctx, p, service.NewTechnician{Email: email, Name: "Tech " + k, GroupID: g.ID, Password: "Correct-Horse-9-Battery"}, [16]byte{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := svc.Login(ctx, service.LoginRequest{Email: email, Password: "Correct-Horse-9-Battery"})
		if err != nil {
			t.Fatal(err)
		}
		e.keys[k] = res.Token
		if i == 0 {
			e.techID = tv.ID
		} else {
			e.tech2ID = tv.ID
		}
	}
	e.pos = &atomic.Int64{}
	e.pos.Store(1 << 40) // far from the ledger's own positions
	return e
}

// nextPos returns a fresh position for a fixture row.
func (e *env) nextPos() int64 {
	return e.pos.Add(1)
}

// seal seals payload p of stream in tenant and returns the sealed
// references by field name, and the event id.
func (e *env) seal(tenant, stream string, p domain.Payload) (map[string][]byte, string) {
	e.t.Helper()
	ev, err := domain.NewEvent(domain.Meta{Tenant: tenant, Stream: stream, Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}}, p)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.sealer.Seal(context.Background(), &ev); err != nil {
		e.t.Fatal(err)
	}
	refs := map[string][]byte{}
	for _, f := range ev.Sealed {
		refs[f.Name] = ledger.EncodeSealedRef(ev.ID, f)
	}
	return refs, ev.ID.String()
}

// fxSession is a fixture row of rpt_sessions.
type fxSession struct {
	tenant               string
	id                   string
	created              time.Time
	status, queue, group string
	channel, tech, owner string
	name, email          string
	custom               map[string]string
	tools                []string
	pickup               *float64
	transfers            int
}

func (e *env) session(s fxSession) string {
	e.t.Helper()
	if s.tenant == "" {
		s.tenant = e.tenant
	}
	if s.id == "" {
		s.id = domain.NewEventID().String()
	}
	if s.status == "" {
		s.status = "closed"
	}
	if s.queue == "" {
		s.queue = "shared"
	}
	if s.group == "" {
		s.group = "g1"
	}
	if s.tools == nil {
		s.tools = []string{}
	}
	refs, _ := e.seal(s.tenant, domain.SessionStream(s.id), domain.SessionCreated{
		GUID: s.id, PIN: "123456", Queue: s.queue, GroupID: s.group,
		CustomerName: s.name, CustomerEmail: s.email, CustomFields: s.custom,
	})
	var idx []byte
	if s.email != "" {
		var err error
		idx, err = e.sealer.BlindIndex(context.Background(), gql.CustomerEmailPurpose, strings.ToLower(strings.TrimSpace(s.email)))
		if err != nil {
			e.t.Fatal(err)
		}
	}
	pos := e.nextPos()
	_, err := e.pool.Exec(context.Background(), `INSERT INTO rpt_sessions (tenant, guid, status, queue, channel, group_id,
		technician_id, owner_id, created_at, pickup_s, transfers, tools, customer_name_ref, customer_email_ref,
		custom_fields_ref, customer_email_idx, created_position, last_position)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)`,
		s.tenant, s.id, s.status, s.queue, s.channel, s.group, s.tech, s.owner, s.created, s.pickup, s.transfers, s.tools,
		refs["customer_name"], refs["customer_email"], refs["custom_fields"], idx, pos)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.id
}

// chat adds a chat message to session id of tenant and returns its position.
func (e *env) chat(tenant, id string, at time.Time, from, text string) int64 {
	e.t.Helper()
	refs, evID := e.seal(tenant, domain.SessionStream(id), domain.ChatMessage{From: from, Text: text})
	pos := e.nextPos()
	e.exec(`INSERT INTO rpt_chat (tenant, position, guid, event_id, occurred_at, sender, text_ref) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		tenant, pos, id, evID, at, from, refs["text"])
	return pos
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// timelineRows adds a note, a file transfer, a consent, an action and a
// recording to session id.
func (e *env) timelineRows(id string, at time.Time) {
	e.t.Helper()
	ev := domain.NewEventID().String()
	refs, _ := e.seal(e.tenant, domain.SessionStream(id), domain.FileSent{TechnicianID: e.techID, Name: "=report.xlsx", Size: 5, MD5: "m", SHA256: "s"})
	e.exec(`INSERT INTO rpt_notes (tenant, position, guid, event_id, occurred_at, technician_id) VALUES ($1, $2, $3, $4, $5, $6)`,
		e.tenant, e.nextPos(), id, ev, at, e.techID)
	e.exec(`INSERT INTO rpt_file_transfers (tenant, position, guid, event_id, occurred_at, direction, technician_id, name_ref, size, md5, sha256)
		VALUES ($1, $2, $3, $4, $5, 'sent', $6, $7, 5, 'm', 's')`, e.tenant, e.nextPos(), id, ev, at, e.techID, refs["name"])
	e.exec(`INSERT INTO rpt_consents (tenant, position, guid, event_id, occurred_at, kind, action) VALUES ($1, $2, $3, $4, $5, 'granted', 'file_transfer')`,
		e.tenant, e.nextPos(), id, ev, at)
	e.exec(`INSERT INTO rpt_actions (tenant, position, guid, event_id, occurred_at, type, action, technician_id) VALUES ($1, $2, $3, $4, $5, 'session.file_sent', 'file_transfer', $6)`,
		e.tenant, e.nextPos(), id, ev, at, e.techID)
	e.exec(`INSERT INTO rpt_recordings (tenant, guid, recording_id, state, started_at) VALUES ($1, $2, $3, 'stored', $4)`,
		e.tenant, id, "r-"+id, at)
}

// gqlAnswer is a decoded GraphQL answer.
type gqlAnswer struct {
	status int
	Data   map[string]any `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Path       []any          `json:"path"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
	raw string
}

// codes returns every error's extensions.code.
func (a gqlAnswer) codes() []string {
	var out []string
	for _, e := range a.Errors {
		c, _ := e.Extensions["code"].(string)
		out = append(out, c)
	}
	return out
}

func (e *env) post(cred string, body []byte) gqlAnswer {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	a := gqlAnswer{status: res.StatusCode, raw: string(raw)}
	if err := json.Unmarshal(raw, &a); err != nil {
		e.t.Fatalf("answer is not JSON: %s", raw)
	}
	for _, er := range a.Errors {
		if er.Extensions["code"] == nil || er.Extensions["code"] == "" {
			e.t.Fatalf("error without extensions.code: %s", raw)
		}
	}
	return a
}

// query runs a GraphQL query as cred.
func (e *env) query(cred, q string, vars map[string]any) gqlAnswer {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": q, "variables": vars})
	return e.post(cred, body)
}

// ok runs q and fails the test on any error.
func (e *env) ok(cred, q string, vars map[string]any) map[string]any {
	e.t.Helper()
	a := e.query(cred, q, vars)
	if a.status != 200 || len(a.Errors) > 0 {
		e.t.Fatalf("query failed: %d %s", a.status, a.raw)
	}
	return a.Data
}

// fails runs q and checks that it fails with status and code.
func (e *env) fails(cred, q string, vars map[string]any, status int, code string) gqlAnswer {
	e.t.Helper()
	a := e.query(cred, q, vars)
	if a.status != status || len(a.Errors) == 0 || a.codes()[0] != code {
		e.t.Fatalf("got %d %s, want %d and code %s", a.status, a.raw, status, code)
	}
	return a
}

// get walks a decoded JSON value along keys and indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// ids returns the node ids of a connection.
func ids(conn any) []string {
	var out []string
	for _, ed := range get(conn, "edges").([]any) {
		out = append(out, get(ed, "node", "id").(string))
	}
	return out
}

func ptr[T any](v T) *T { return &v }
