package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
)

// TestRelayRoutes drives the relay endpoints with a relay key over a real
// service: what vigil relay's HTTP backend asks.
func TestRelayRoutes(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	st := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(st.Close)
	raw := make([]byte, 32)
	rand.Read(raw)
	mk, _ := ledger.NewMasterKey(raw)
	skey, _, _ := note.GenerateKey(rand.Reader, "vigil.test")
	signer, _ := note.NewSigner(skey)
	sealer := ledger.NewSealer(st, ledger.NewKeyring(mk), 0)
	l := ledger.New(st, sealer, signer, ledger.Options{Origin: "vigil.test"})
	go l.Run(ctx)
	t.Cleanup(l.Close)
	svc := service.New(service.Config{Log: l, Identity: st, Idempotency: st, Activity: st, Crypto: sealer, Region: "eu"})
	a := &api{svc: svc, log: slog.New(slog.NewTextHandler(io.Discard, nil)), maxBody: 1 << 20}
	mux := http.NewServeMux()
	a.relayRoutes(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	tenant, adminKey, err := svc.CreateTenant(ctx, "Acme", "eu")
	if err != nil {
		t.Fatal(err)
	}
	admin, _ := svc.Authenticate(ctx, adminKey)
	_, relayKey, _ := svc.CreateAPIKey(ctx, tenant.ID, service.RoleRelay, "relay")
	_, ingestKey, _ := svc.CreateAPIKey(ctx, tenant.ID, service.RoleIngest, "applet")
	ingest, _ := svc.Authenticate(ctx, ingestKey)
	name := "L1"
	g, err := svc.CreateGroup(ctx, admin, service.GroupChange{Name: &name}, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	var toks []string
	var techs []service.Principal
	for _, email := range []string{"a@example.com", "b@example.com"} {
		if _, err := svc.CreateTechnician(ctx, admin, service.NewTechnician{Email: email, Name: "T", GroupID: g.ID, Password: "Correct-Horse-9-Battery"}, [16]byte{}); err != nil {
			t.Fatal(err)
		}
		res, err := svc.Login(ctx, service.LoginRequest{Email: email, Password: "Correct-Horse-9-Battery", Tenant: tenant.ID})
		if err != nil {
			t.Fatal(err)
		}
		p, _ := svc.Authenticate(ctx, res.Token)
		toks, techs = append(toks, res.Token), append(techs, p)
	}
	s, err := svc.CreateSession(ctx, techs[0], service.NewSession{Queue: domain.QueueShared}, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	svc.SessionCommand(ctx, ingest, s.ID, service.ConnectCustomerCmd{Type: "connect_customer", Platform: "linux"}, [16]byte{})
	if _, err := svc.SessionCommand(ctx, techs[0], s.ID, service.BareCmd{Type: "pick_up"}, [16]byte{}); err != nil {
		t.Fatal(err)
	}

	post := func(cred, path string, body any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", srv.URL+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+cred)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		json.NewDecoder(res.Body).Decode(&out)
		return res.StatusCode, out
	}
	code := func(m map[string]any) string {
		e, _ := m["error"].(map[string]any)
		c, _ := e["code"].(string)
		return c
	}
	for _, c := range []struct {
		name   string
		cred   string
		body   map[string]string
		status int
		code   string
	}{
		{"customer", relayKey, map[string]string{"side": "customer", "session": s.ID}, 200, ""},
		{"holder", relayKey, map[string]string{"side": "technician", "session": s.ID, "token": toks[0]}, 200, ""},
		{"other technician", relayKey, map[string]string{"side": "technician", "session": s.ID, "token": toks[1]}, 403, "forbidden"},
		{"unknown session", relayKey, map[string]string{"side": "customer", "session": "0123456789abcdef0123456789abcdef"}, 404, "not_found"},
		{"not a relay key", ingestKey, map[string]string{"side": "customer", "session": s.ID}, 403, "forbidden"},
		{"bad side", relayKey, map[string]string{"side": "both", "session": s.ID}, 400, "invalid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, out := post(c.cred, "/v1/relay/authorize", c.body)
			if st != c.status || code(out) != c.code {
				t.Fatalf("got %d %v, want %d %s", st, out, c.status, c.code)
			}
			if st == 200 && out["tenant"] != tenant.ID {
				t.Fatalf("tenant %v", out["tenant"])
			}
		})
	}
	refs := map[string]any{"sessions": []map[string]string{{"tenant": tenant.ID, "session": s.ID}}}
	if st, out := post(relayKey, "/v1/relay/closed", refs); st != 200 || len(out["closed"].([]any)) != 0 {
		t.Fatalf("open session: %d %v", st, out)
	}
	if _, err := svc.SessionCommand(ctx, techs[0], s.ID, service.CloseCmd{Type: "close"}, [16]byte{}); err != nil {
		t.Fatal(err)
	}
	if st, out := post(relayKey, "/v1/relay/closed", refs); st != 200 || len(out["closed"].([]any)) != 1 {
		t.Fatalf("closed session: %d %v", st, out)
	}
	if st, out := post(relayKey, "/v1/relay/authorize", map[string]string{"side": "customer", "session": s.ID}); st != 409 || code(out) != "session_closed" {
		t.Fatalf("closed session authorize: %d %v", st, out)
	}
}
