package gql_test

import (
	"encoding/json"
	"net/http"
	"testing"

	gql "github.com/vigilhq/vigil/api/graphql"
)

// TestHostileRequests sends the bombs of issue 13 (a fragment cycle that
// overflowed graphql-go's validator; conflicting aliases, deep nesting,
// repeated fields, directives and literals that took minutes and
// gigabytes; NUL bytes that PostgreSQL refused as an internal error) to
// the real API, as an admin and as a technician: each is refused with its
// code before a single SQL statement runs.
func TestHostileRequests(t *testing.T) {
	e := newEnv(t)
	e.session(fxSession{created: t0, tech: e.techID, email: "ann@example.com"})
	for _, role := range []string{"admin", "tech"} {
		for _, q := range gql.HostileQueries() {
			t.Run(role+"/"+q.Name, func(t *testing.T) {
				body, _ := json.Marshal(map[string]any{"query": q.Query, "variables": q.Variables})
				before := e.queries.n.Load()
				a := e.post(e.keys[role], body)
				if q.Code == "" {
					if a.status != http.StatusOK || len(a.Errors) > 0 {
						t.Fatalf("got %d %s, want an answer", a.status, a.raw)
					}
					return
				}
				if (a.status != http.StatusBadRequest && a.status != http.StatusRequestEntityTooLarge) || len(a.Errors) == 0 || a.codes()[0] != q.Code {
					t.Fatalf("got %d %.300s, want 400 or 413 and code %s", a.status, a.raw, q.Code)
				}
				if n := e.queries.n.Load() - before; n != 0 {
					t.Errorf("a refused query ran %d statements", n)
				}
			})
		}
	}
	// The server still answers.
	e.ok(e.keys["admin"], `{ sessions { totalCount } }`, nil)
}
