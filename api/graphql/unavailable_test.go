package gql_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	gql "github.com/vigilhq/vigil/api/graphql"
	"github.com/vigilhq/vigil/domain/service"
)

// A database outage answers with code unavailable, never internal (issue
// 13, item 8): a field whose reports cannot be read carries
// extensions.code unavailable; a request that fails as a whole (its
// credential cannot be looked up), and a CSV report, answer 503 with a
// Retry-After. The reports and the credential look-up read through a proxy
// that the test cuts.
func TestDatabaseOutageIsUnavailable(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	proxy := pgtest.NewProxy(t, &pgtest.DB{URL: e.pool.Config().ConnString()})
	pool, err := postgres.OpenExisting(ctx, proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := postgres.NewStore(pool, postgres.Options{})
	serve := func(auth gql.Authenticator) *httptest.Server {
		api, err := gql.New(gql.Config{Reports: st, Opener: e.sealer, Index: e.sealer, Auth: auth})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("/graphql", api.GraphQL())
		mux.Handle("GET /v1/reports/{file}", api.CSV())
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv
	}
	reports := serve(e.svc) // credentials on the live database
	whole := serve(service.New(service.Config{Log: e.ledger, Identity: st, Idempotency: st, Activity: st, Crypto: e.sealer, Region: "eu"}))
	do := func(srv *httptest.Server, method, path, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+e.keys["admin"])
		req.Header.Set("Content-Type", "application/json")
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		return res, string(raw)
	}
	query := `{"query": "{ sessions { totalCount } }"}`
	for _, srv := range []*httptest.Server{reports, whole} {
		if res, raw := do(srv, "POST", "/graphql", query); res.StatusCode != 200 {
			t.Fatalf("before the outage: %d %s", res.StatusCode, raw)
		}
	}
	proxy.Cut()
	if res, raw := do(reports, "POST", "/graphql", query); !strings.Contains(raw, `"path":["sessions"],"extensions":{"code":"unavailable"}`) {
		t.Errorf("a field during the outage: %d %s, want extensions.code unavailable", res.StatusCode, raw)
	}
	for _, c := range []struct {
		srv                *httptest.Server
		method, path, body string
	}{
		{whole, "POST", "/graphql", query},
		{reports, "GET", "/v1/reports/sessions.csv", ""},
	} {
		res, raw := do(c.srv, c.method, c.path, c.body)
		if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(raw, `"code":"unavailable"`) || res.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s during the outage: %d Retry-After %q %s, want 503 unavailable with Retry-After",
				c.method, c.path, res.StatusCode, res.Header.Get("Retry-After"), raw)
		}
	}
}
