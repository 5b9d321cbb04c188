package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"golang.org/x/mod/sumdb/note"
)

func TestGDPREndpoints(t *testing.T) {
	db := pgtest.New(t)
	st := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(st.Close)
	mk, signer, verifier := ledgertest.Keys(t)
	sealer := ledger.NewSealer(st, ledger.NewKeyring(mk), 0)
	l := ledger.New(st, sealer, signer, ledger.Options{Origin: "vigil.test"})
	go l.Run(context.Background())
	t.Cleanup(l.Close)
	svc := service.New(service.Config{Log: l, Identity: st, Idempotency: st, Activity: st, Crypto: sealer, Region: "eu"})
	gdpr := compliance.NewGDPR(compliance.GDPRConfig{Pool: db.Pool, Ledger: l, Credentials: st, Signer: signer})
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: svc, GDPR: gdpr}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	_, admin, err := svc.CreateTenant(ctx, "Acme", "eu")
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path string, body any, want int, headers ...string) map[string]any {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, srv.URL+path, rd)
		req.Header.Set("Authorization", "Bearer "+admin)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out := map[string]any{}
		raw, _ := io.ReadAll(res.Body)
		_ = json.Unmarshal(raw, &out)
		if res.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, res.StatusCode, raw, want)
		}
		out["_raw"] = string(raw)
		return out
	}
	g := do("POST", "/v1/groups", map[string]any{"name": "L1"}, 201)
	const name, email = "Hedwig Quillmoreton", "hedwig.quillmoreton@example.com"
	tech := do("POST", "/v1/technicians", map[string]any{"email": email, "name": name, "group_id": g["id"], "password": "Correct-Horse-9-Battery"}, 201,
		"Idempotency-Key", "create-hedwig")
	subject := "technician:" + tech["id"].(string)

	x := do("POST", "/v1/gdpr/exports", map[string]any{"subject": subject}, 200, "Idempotency-Key", "export-1")
	if !strings.Contains(x["_raw"].(string), name) || x["event_id"] == "" {
		t.Errorf("export lacks the name: %s", x["_raw"])
	}
	do("POST", "/v1/gdpr/exports", map[string]any{"subject": "nobody"}, 400)
	do("POST", "/v1/gdpr/exports", map[string]any{"subject": "technician:nobody"}, 404)

	e := do("POST", "/v1/gdpr/erasures", map[string]any{"subject": subject}, 202)
	if e["state"] != "pending" {
		t.Errorf("delayed erasure: %v", e)
	}
	id := e["id"].(string)
	if got := do("GET", "/v1/gdpr/erasures/"+id, nil, 200); got["state"] != "pending" {
		t.Errorf("GET: %v", got)
	}
	if got := do("DELETE", "/v1/gdpr/erasures/"+id, nil, 200); got["state"] != "revoked" {
		t.Errorf("DELETE: %v", got)
	}
	do("GET", "/v1/gdpr/erasures/not-an-id", nil, 404)
	do("POST", "/v1/gdpr/erasures", map[string]any{"subject": subject, "delay": "soon"}, 400)

	done := do("POST", "/v1/gdpr/erasures", map[string]any{"subject": subject, "delay": "0s"}, 200)
	if done["state"] != "done" {
		t.Fatalf("immediate erasure: %v", done)
	}
	if _, err := compliance.VerifyErasureReceipt([]byte(done["receipt"].(string)), note.VerifierList(verifier)); err != nil {
		t.Errorf("receipt: %v", err)
	}
	do("DELETE", "/v1/gdpr/erasures/"+done["id"].(string), nil, 409)

	after := do("POST", "/v1/gdpr/exports", map[string]any{"subject": subject}, 200)
	for _, n := range []string{name, email} {
		if strings.Contains(after["_raw"].(string), n) {
			t.Errorf("export after erasure shows %q", n)
		}
		var hits int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM idempotency_keys WHERE position(convert_to($1, 'UTF8') IN body) > 0`, n).Scan(&hits); err != nil || hits != 0 {
			t.Errorf("stored answers still hold %q: %d %v", n, hits, err)
		}
	}
	if _, err := svc.Login(ctx, service.LoginRequest{Email: email, Password: "Correct-Horse-9-Battery"}); domain.ErrorCode(err) != domain.CodeUnauthenticated {
		t.Errorf("login after erasure: %v", err)
	}
}
