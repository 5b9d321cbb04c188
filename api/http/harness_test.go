package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"golang.org/x/mod/sumdb/note"
)

// clock is a movable clock for the service.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// env is a running API over a fresh database.
type env struct {
	t        *testing.T
	srv      *httptest.Server
	svc      *service.Service
	store    *postgres.Store
	ledger   *ledger.Ledger
	verifier note.Verifier
	clock    *clock
	tenant   string
	admin    string // admin API key
	ingest   string // ingest API key
}

type envOptions struct {
	region  string
	proxies []netip.Prefix
}

func newEnv(t *testing.T, opts ...func(*envOptions)) *env {
	t.Helper()
	o := envOptions{region: "eu"}
	for _, f := range opts {
		f(&o)
	}
	db := pgtest.New(t)
	st := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(st.Close)
	mk, signer, verifier := ledgertest.Keys(t)
	sealer := ledger.NewSealer(st, ledger.NewKeyring(mk), 0)
	l := ledger.New(st, sealer, signer, ledger.Options{Origin: "vigil.test"})
	go l.Run(context.Background())
	t.Cleanup(l.Close)
	clk := &clock{}
	svc := service.New(service.Config{Log: l, Identity: st, Idempotency: st, Activity: st, Crypto: sealer, Region: o.region, Now: clk.Now})
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: svc, TrustedProxies: o.proxies}))
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv, svc: svc, store: st, ledger: l, verifier: verifier, clock: clk}
	ctx := context.Background()
	tenant, admin, err := svc.CreateTenant(ctx, "Acme", o.region)
	if err != nil {
		t.Fatal(err)
	}
	e.tenant, e.admin = tenant.ID, admin
	_, e.ingest, err = svc.CreateAPIKey(ctx, tenant.ID, service.RoleIngest, "applet")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever a test did, the log it leaves verifies.
		if err := l.CheckpointAll(context.Background()); err != nil {
			t.Errorf("checkpoint: %v", err)
		}
		if _, err := ledger.Verify(context.Background(), st, ledger.VerifyOptions{Verifiers: note.VerifierList(verifier), Origin: "vigil.test"}); err != nil {
			t.Errorf("verify after the test: %v", err)
		}
	})
	return e
}

// resp is a decoded answer.
type resp struct {
	status int
	body   map[string]any
	raw    []byte
	header http.Header
}

func (r resp) code() string {
	e, _ := r.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (r resp) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

type hdr map[string]string

// do sends a request with cred as bearer ("" for none) and body (a string
// is sent as is, anything else as JSON).
func (e *env) do(method, path, cred string, body any, headers ...hdr) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, h := range headers {
		for k, v := range h {
			req.Header.Set(k, v)
		}
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := resp{status: res.StatusCode, raw: raw, header: res.Header}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			e.t.Fatalf("%s %s: answer is not a JSON object: %s", method, path, raw)
		}
	}
	return out
}

// want fails the test unless r has status and, for errors, code.
func (e *env) want(r resp, status int, code string) resp {
	e.t.Helper()
	if r.status != status || (code != "" && r.code() != code) {
		e.t.Fatalf("got %d %s, want %d %s", r.status, r.raw, status, code)
	}
	if status >= 400 && r.code() == "" {
		e.t.Fatalf("error answer without a code: %s", r.raw)
	}
	return r
}

var allPermissions = map[string]bool{
	"remote_control": true, "reboot": true, "desktop_view": true, "record_sessions": true, "file_transfer": true,
	"private_session": true, "file_manager": true, "request_credentials": true, "send_url": true, "clipboard_sync": true,
	"system_info": true, "deploy_script": true, "one_time_prompt": true, "transfer_session": true, "screen_share": true,
}

// group creates a group with perms (nil: all) and policy overrides.
func (e *env) group(perms map[string]bool, policy map[string]any, allow ...string) string {
	e.t.Helper()
	if perms == nil {
		perms = allPermissions
	}
	body := map[string]any{"name": "Level 1", "permissions": perms}
	if policy != nil {
		body["policy"] = policy
	}
	if len(allow) > 0 {
		body["ip_allowlist"] = allow
	}
	r := e.want(e.do("POST", "/v1/groups", e.admin, body), 201, "")
	return r.str("id")
}

const goodPassword = "Correct-Horse-9-Battery"

// technician creates a technician in group and returns its id.
func (e *env) technician(group, email string, extra ...map[string]any) string {
	e.t.Helper()
	body := map[string]any{"email": email, "name": "Tech " + email, "group_id": group, "password": goodPassword}
	for _, x := range extra {
		for k, v := range x {
			body[k] = v
		}
	}
	r := e.want(e.do("POST", "/v1/technicians", e.admin, body), 201, "")
	return r.str("id")
}

func (e *env) login(email, password string, extra ...map[string]any) resp {
	e.t.Helper()
	body := map[string]any{"email": email, "password": password}
	for _, x := range extra {
		for k, v := range x {
			body[k] = v
		}
	}
	return e.do("POST", "/v1/auth/login", "", body)
}

func (e *env) token(email string) string {
	e.t.Helper()
	r := e.want(e.login(email, goodPassword), 200, "")
	return r.str("token")
}

func (e *env) command(cred, session string, body map[string]any, headers ...hdr) resp {
	e.t.Helper()
	return e.do("POST", "/v1/sessions/"+session+"/commands", cred, body, headers...)
}

// events returns the types of a stream's events, in order.
func (e *env) events(stream string) []domain.Event {
	e.t.Helper()
	evs, err := e.ledger.ReadStream(context.Background(), e.tenant, stream, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func types(evs []domain.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

func (e *env) head() int64 {
	e.t.Helper()
	h, err := e.store.Head(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return h
}
