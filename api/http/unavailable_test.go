package httpapi_test

import (
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
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
)

// A database outage answers 503 with code unavailable and a Retry-After,
// never 500 (issue 13, item 8): the API runs over a pool that reaches its
// database through a proxy, and the test cuts the proxy.
func TestDatabaseOutageIs503(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	proxy := pgtest.NewProxy(t, db)
	pool, err := postgres.OpenExisting(ctx, proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := postgres.NewStore(pool, postgres.Options{})
	t.Cleanup(st.Close)
	mk, signer, _ := ledgertest.Keys(t)
	sealer := ledger.NewSealer(st, ledger.NewKeyring(mk), 0)
	l := ledger.New(st, sealer, signer, ledger.Options{Origin: "vigil.test"})
	go l.Run(context.Background())
	t.Cleanup(l.Close)
	svc := service.New(service.Config{Log: l, Identity: st, Idempotency: st, Activity: st, Crypto: sealer, Region: "eu"})
	srv := httptest.NewServer(httpapi.New(httpapi.Options{Service: svc}))
	t.Cleanup(srv.Close)
	_, admin, err := svc.CreateTenant(ctx, "Acme", "eu")
	if err != nil {
		t.Fatal(err)
	}

	do := func(method, path, body string) (*http.Response, map[string]map[string]string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var out map[string]map[string]string
		_ = json.Unmarshal(b, &out)
		return res, out
	}
	group := `{"name":"Level 1","permissions":{"remote_control":true}}`
	if res, body := do("POST", "/v1/groups", group); res.StatusCode != http.StatusCreated {
		t.Fatalf("before the outage: %d %v", res.StatusCode, body)
	}

	proxy.Cut()
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/groups", group},
		{"GET", "/v1/groups/g1", ""},
	} {
		res, body := do(c.method, c.path, c.body)
		if res.StatusCode != http.StatusServiceUnavailable || body["error"]["code"] != "unavailable" || body["error"]["message"] == "" {
			t.Errorf("%s %s during the outage: %d %v, want 503 unavailable", c.method, c.path, res.StatusCode, body)
		}
		if ra := res.Header.Get("Retry-After"); ra == "" || strings.Trim(ra, "0123456789") != "" {
			t.Errorf("%s %s during the outage: Retry-After %q, want a number of seconds", c.method, c.path, ra)
		}
	}
}
