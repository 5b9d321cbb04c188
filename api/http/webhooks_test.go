package httpapi_test

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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/adapters/webhook"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"github.com/vigilhq/vigil/webhooks"
)

// whEnv is env with the webhook endpoints over the same database, and a
// deliverer the test starts.
type whEnv struct {
	*env
	cfg         webhooks.Config
	integration string // an integration key of the tenant
	otherAdmin  string // the admin key of another tenant
}

// newWebhookEnv builds the harness's env by hand (newEnv keeps its pool to
// itself), serving opts.Webhooks too.
func newWebhookEnv(t *testing.T) *whEnv {
	t.Helper()
	db := pgtest.New(t)
	st := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(st.Close)
	mk, signer, verifier := ledgertest.Keys(t)
	sealer := ledger.NewSealer(st, ledger.NewKeyring(mk), 0)
	l := ledger.New(st, sealer, signer, ledger.Options{Origin: "vigil.test"})
	go l.Run(context.Background())
	t.Cleanup(l.Close)
	clk := &clock{}
	svc := service.New(service.Config{Log: l, Identity: st, Idempotency: st, Activity: st, Crypto: sealer, Region: "eu", Now: clk.Now})
	cfg := webhooks.Config{Pool: db.Pool, Ledger: l}
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: svc, Webhooks: webhooks.NewService(cfg)}))
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv, svc: svc, store: st, ledger: l, verifier: verifier, clock: clk}
	ctx := context.Background()
	tenant, admin, err := svc.CreateTenant(ctx, "Acme", "eu")
	if err != nil {
		t.Fatal(err)
	}
	e.tenant, e.admin = tenant.ID, admin
	if _, e.ingest, err = svc.CreateAPIKey(ctx, tenant.ID, service.RoleIngest, "applet"); err != nil {
		t.Fatal(err)
	}
	w := &whEnv{env: e, cfg: cfg}
	if _, w.integration, err = svc.CreateAPIKey(ctx, tenant.ID, service.RoleIntegration, "crm"); err != nil {
		t.Fatal(err)
	}
	if _, w.otherAdmin, err = svc.CreateTenant(ctx, "Globex", "eu"); err != nil {
		t.Fatal(err)
	}
	return w
}

// deliverer runs a deliverer allowing allow until the test ends.
func (w *whEnv) deliverer(allow ...netip.Prefix) {
	d := webhooks.NewDeliverer(w.cfg, webhook.New(webhook.Options{Allow: allow}), webhooks.DelivererOptions{
		Schedule: []time.Duration{0, time.Hour}, Poll: 20 * time.Millisecond, Timeout: 2 * time.Second, Rate: 1000})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	w.t.Cleanup(func() { cancel(); <-done })
}

// hook is a request a receiver got.
type hook struct {
	id, ts, sig string
	body        []byte
}

type hookReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []hook
}

func newHookReceiver(t *testing.T) *hookReceiver {
	rc := &hookReceiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, hook{r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body})
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *hookReceiver) all() []hook {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hook(nil), rc.got...)
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	eventuallyWithin(t, what, 10*time.Second, ok)
}

// eventuallyWithin is eventually with its own bound, for waits that run
// scrypt (seconds each under -race on a loaded machine).
func eventuallyWithin(t *testing.T, what string, bound time.Duration, ok func() bool) {
	t.Helper()
	end := time.Now().Add(bound)
	for !ok() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// verifyStandardWebhook is an independent Standard Webhooks check, written
// from the specification: the signed content is "id.timestamp.body", the
// key the base64 after "whsec_", the header a space-separated list of
// "v1,<base64 HMAC-SHA256>"; the timestamp must be within 5 minutes.
func verifyStandardWebhook(secret string, h hook, now time.Time) bool {
	ts, err := strconv.ParseInt(h.ts, 10, 64)
	if err != nil || now.Sub(time.Unix(ts, 0)).Abs() > 5*time.Minute || h.id == "" {
		return false
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h.id + "." + h.ts + "."))
	mac.Write(h.body)
	want := mac.Sum(nil)
	for _, s := range strings.Split(h.sig, " ") {
		version, sig, ok := strings.Cut(s, ",")
		got, err := base64.StdEncoding.DecodeString(sig)
		if ok && version == "v1" && err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

func TestWebhookEndpoints(t *testing.T) {
	e := newWebhookEnv(t)
	rc := newHookReceiver(t)
	e.deliverer(netip.MustParsePrefix("127.0.0.1/32"))
	g := e.group(nil, nil)
	e.technician(g, "wh@example.com")
	tech := e.token("wh@example.com")

	var id, secret string
	t.Run("roles", func(t *testing.T) {
		body := map[string]any{"url": "https://crm.example/hook"}
		for name, cred := range map[string]string{"ingest": e.ingest, "technician": tech} {
			e.want(e.do("POST", "/v1/webhooks", cred, body), 403, "forbidden")
			e.want(e.do("GET", "/v1/webhooks", cred, nil), 403, "forbidden")
			_ = name
		}
		e.want(e.do("GET", "/v1/webhooks", "", nil), 401, "")
		for _, cred := range []string{e.admin, e.integration} {
			r := e.want(e.do("POST", "/v1/webhooks", cred, body), 201, "")
			if !strings.HasPrefix(r.str("secret"), "whsec_") || r.str("id") == "" {
				t.Errorf("created %s", r.raw)
			}
			e.want(e.do("DELETE", "/v1/webhooks/"+r.str("id"), cred, nil), 204, "")
		}
	})

	t.Run("create", func(t *testing.T) {
		r := e.want(e.do("POST", "/v1/webhooks", e.integration, map[string]any{"url": rc.srv.URL + "/hook", "exclude_chat": true,
			"group_id": g, "description": "CRM"}), 201, "")
		id, secret = r.str("id"), r.str("secret")
		if !strings.HasPrefix(secret, "whsec_") {
			t.Fatalf("secret %q", secret)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
		if err != nil || len(key) < 24 {
			t.Errorf("secret key of %d bytes: %v", len(key), err)
		}
		types, _ := r.body["event_types"].([]any)
		if len(types) != 2 || r.body["exclude_chat"] != true || r.body["enabled"] != true || r.str("group_id") != g {
			t.Errorf("created %s", r.raw)
		}
	})
	if id == "" {
		t.FailNow()
	}

	t.Run("get, list and patch never show the secret", func(t *testing.T) {
		r := e.want(e.do("GET", "/v1/webhooks/"+id, e.admin, nil), 200, "")
		if r.str("id") != id || r.str("url") != rc.srv.URL+"/hook" || r.str("description") != "CRM" {
			t.Errorf("get %s", r.raw)
		}
		l := e.want(e.do("GET", "/v1/webhooks", e.integration, nil), 200, "")
		if list, _ := l.body["webhooks"].([]any); len(list) != 1 {
			t.Errorf("list %s", l.raw)
		}
		p := e.want(e.do("PATCH", "/v1/webhooks/"+id, e.integration, map[string]any{"description": "CRM 2", "event_types": []string{"session.ended"}}), 200, "")
		if p.str("description") != "CRM 2" || len(p.body["event_types"].([]any)) != 1 {
			t.Errorf("patch %s", p.raw)
		}
		p = e.want(e.do("PATCH", "/v1/webhooks/"+id, e.integration, map[string]any{"enabled": false}), 200, "")
		if p.body["enabled"] != false {
			t.Errorf("disable %s", p.raw)
		}
		p = e.want(e.do("PATCH", "/v1/webhooks/"+id, e.integration, map[string]any{"enabled": true}), 200, "")
		if p.body["enabled"] != true {
			t.Errorf("enable %s", p.raw)
		}
		for _, raw := range [][]byte{r.raw, l.raw, p.raw} {
			if strings.Contains(string(raw), "whsec_") || strings.Contains(string(raw), "secret") {
				t.Errorf("a secret in %s", raw)
			}
		}
	})

	t.Run("test event delivered and signed", func(t *testing.T) {
		r := e.want(e.do("POST", "/v1/webhooks/"+id+"/test", e.integration, nil), 202, "")
		did := r.str("delivery_id")
		eventually(t, "the test event", func() bool { return len(rc.all()) >= 1 })
		h := rc.all()[0]
		if h.id != did {
			t.Errorf("webhook-id %q, want the delivery id %q", h.id, did)
		}
		if !verifyStandardWebhook(secret, h, time.Now()) {
			t.Errorf("signature %q does not verify over %s", h.sig, h.body)
		}
		tampered := h
		tampered.body = append([]byte(nil), h.body...)
		tampered.body[len(tampered.body)-2] ^= 1
		if verifyStandardWebhook(secret, tampered, time.Now()) {
			t.Errorf("a tampered body verifies")
		}
		var p struct {
			Type      string         `json:"type"`
			Timestamp string         `json:"timestamp"`
			Data      map[string]any `json:"data"`
		}
		if err := json.Unmarshal(h.body, &p); err != nil || p.Type != webhooks.TypeTest || p.Timestamp == "" || p.Data == nil {
			t.Errorf("payload %s: %v", h.body, err)
		}
		eventually(t, "the delivery logged as delivered", func() bool {
			d := e.want(e.do("GET", "/v1/webhooks/"+id+"/deliveries", e.integration, nil), 200, "")
			list, _ := d.body["deliveries"].([]any)
			if len(list) != 1 {
				return false
			}
			x := list[0].(map[string]any)
			return x["id"] == did && x["state"] == "delivered" && x["attempts"] == float64(1) && x["last_status"] == float64(204)
		})
		d := e.want(e.do("GET", "/v1/webhooks/"+id+"/deliveries?state=pending", e.integration, nil), 200, "")
		if list, _ := d.body["deliveries"].([]any); len(list) != 0 {
			t.Errorf("pending filter %s", d.raw)
		}
	})

	t.Run("rotate-secret: both secrets sign", func(t *testing.T) {
		r := e.want(e.do("POST", "/v1/webhooks/"+id+"/rotate-secret", e.admin, nil), 200, "")
		fresh := r.str("secret")
		if !strings.HasPrefix(fresh, "whsec_") || fresh == secret {
			t.Fatalf("rotated %s", r.raw)
		}
		before := len(rc.all())
		e.want(e.do("POST", "/v1/webhooks/"+id+"/test", e.integration, nil), 202, "")
		eventually(t, "the second test event", func() bool { return len(rc.all()) > before })
		h := rc.all()[before]
		if !verifyStandardWebhook(fresh, h, time.Now()) || !verifyStandardWebhook(secret, h, time.Now()) {
			t.Errorf("after rotation, signatures %q must verify under both secrets", h.sig)
		}
		secret = fresh
	})

	t.Run("replay since", func(t *testing.T) {
		before := rc.all()
		r := e.want(e.do("POST", "/v1/webhooks/"+id+"/replay", e.integration, map[string]any{"since": time.Now().Add(-time.Hour).Format(time.RFC3339Nano)}), 202, "")
		if r.body["queued"] != float64(2) {
			t.Errorf("replay queued %s, want 2", r.raw)
		}
		eventually(t, "the replayed events", func() bool { return len(rc.all()) >= len(before)+2 })
		ids := map[string]bool{}
		for _, h := range before {
			ids[h.id] = true
		}
		for _, h := range rc.all()[len(before):] {
			if !ids[h.id] {
				t.Errorf("replay sent a new webhook-id %s", h.id)
			}
			if !verifyStandardWebhook(secret, h, time.Now()) {
				t.Errorf("replayed signature does not verify")
			}
		}
		r = e.want(e.do("POST", "/v1/webhooks/"+id+"/replay", e.integration, map[string]any{"since": time.Now().Add(time.Hour).Format(time.RFC3339Nano)}), 202, "")
		if r.body["queued"] != float64(0) {
			t.Errorf("replay from the future queued %s", r.raw)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct {
			name, method, path string
			body               any
		}{
			{"not JSON", "POST", "/v1/webhooks", "{"},
			{"empty body", "POST", "/v1/webhooks", ""},
			{"unknown field", "POST", "/v1/webhooks", map[string]any{"url": "https://x.example", "secret": "mine"}},
			{"ftp url", "POST", "/v1/webhooks", map[string]any{"url": "ftp://x.example/"}},
			{"relative url", "POST", "/v1/webhooks", map[string]any{"url": "/hook"}},
			{"credentials in the url", "POST", "/v1/webhooks", map[string]any{"url": "https://u:p@x.example/"}},
			{"unknown event type", "POST", "/v1/webhooks", map[string]any{"url": "https://x.example", "event_types": []string{"session.exploded"}}},
			{"patch bad url", "PATCH", "/v1/webhooks/" + id, map[string]any{"url": "gopher://x"}},
			{"replay without since", "POST", "/v1/webhooks/" + id + "/replay", map[string]any{}},
			{"replay bad since", "POST", "/v1/webhooks/" + id + "/replay", map[string]any{"since": "yesterday"}},
			{"deliveries bad state", "GET", "/v1/webhooks/" + id + "/deliveries?state=lost", nil},
			{"deliveries bad limit", "GET", "/v1/webhooks/" + id + "/deliveries?limit=many", nil},
			{"deliveries bad before", "GET", "/v1/webhooks/" + id + "/deliveries?before=now", nil},
		} {
			t.Run(c.name, func(t *testing.T) {
				e.want(e.do(c.method, c.path, e.integration, c.body), 400, "invalid")
			})
		}
	})

	t.Run("tenant isolation", func(t *testing.T) {
		for _, c := range []struct{ method, path string }{
			{"GET", "/v1/webhooks/" + id}, {"PATCH", "/v1/webhooks/" + id}, {"DELETE", "/v1/webhooks/" + id},
			{"POST", "/v1/webhooks/" + id + "/rotate-secret"}, {"GET", "/v1/webhooks/" + id + "/deliveries"},
			{"POST", "/v1/webhooks/" + id + "/replay"}, {"POST", "/v1/webhooks/" + id + "/test"},
		} {
			var body any
			switch {
			case c.method == "PATCH":
				body = map[string]any{"description": "mine now"}
			case strings.HasSuffix(c.path, "/replay"):
				body = map[string]any{"since": time.Now().Add(-time.Hour).Format(time.RFC3339)}
			}
			e.want(e.do(c.method, c.path, e.otherAdmin, body), 404, "not_found")
		}
		l := e.want(e.do("GET", "/v1/webhooks", e.otherAdmin, nil), 200, "")
		if list, _ := l.body["webhooks"].([]any); len(list) != 0 {
			t.Errorf("the other tenant lists %s", l.raw)
		}
		e.want(e.do("GET", "/v1/webhooks/not-a-uuid", e.admin, nil), 404, "not_found")
		r := e.want(e.do("GET", "/v1/webhooks/"+id, e.admin, nil), 200, "")
		if r.str("description") != "CRM 2" {
			t.Errorf("the other tenant changed it: %s", r.raw)
		}
	})

	t.Run("delete", func(t *testing.T) {
		e.want(e.do("DELETE", "/v1/webhooks/"+id, e.integration, nil), 204, "")
		e.want(e.do("GET", "/v1/webhooks/"+id, e.integration, nil), 404, "not_found")
		e.want(e.do("GET", "/v1/webhooks/"+id+"/deliveries", e.integration, nil), 404, "not_found")
		e.want(e.do("DELETE", "/v1/webhooks/"+id, e.integration, nil), 404, "not_found")
	})
}

// TestWebhookSSRF: as docs/webhooks.md says, the address is checked when
// the deliverer dials it, on the resolved address, so a private, loopback
// or link-local URL is accepted at creation and refused at delivery, with
// the refusal in the delivery log and nothing sent.
func TestWebhookSSRF(t *testing.T) {
	e := newWebhookEnv(t)
	rc := newHookReceiver(t)
	e.deliverer() // no allowed CIDRs: production defaults
	for _, url := range []string{rc.srv.URL + "/hook", "http://10.20.30.40/hook", "https://169.254.169.254/latest/meta-data", "https://[::1]:9/x"} {
		t.Run(url, func(t *testing.T) {
			r := e.want(e.do("POST", "/v1/webhooks", e.integration, map[string]any{"url": url}), 201, "")
			id := r.str("id")
			e.want(e.do("POST", "/v1/webhooks/"+id+"/test", e.integration, nil), 202, "")
			eventually(t, "a refused attempt in the delivery log", func() bool {
				d := e.want(e.do("GET", "/v1/webhooks/"+id+"/deliveries", e.integration, nil), 200, "")
				list, _ := d.body["deliveries"].([]any)
				if len(list) != 1 {
					return false
				}
				x := list[0].(map[string]any)
				errText, _ := x["last_error"].(string)
				if x["attempts"] != float64(1) || x["state"] != "pending" || !strings.Contains(errText, "refused") {
					return false
				}
				// The subscriber gets a category; the addresses and the
				// resolver stay in the server log.
				if strings.ContainsAny(errText, "0123456789") || strings.Contains(errText, "dial") {
					t.Errorf("last_error %q shows internal detail", errText)
				}
				return true
			})
		})
	}
	if n := len(rc.all()); n != 0 {
		t.Errorf("the loopback receiver got %d requests", n)
	}
}
