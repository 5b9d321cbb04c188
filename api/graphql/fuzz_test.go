package gql

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/parser"
	"github.com/graphql-go/graphql/language/source"
)

// FuzzQuery feeds arbitrary query text and variables through everything
// that runs before a query touches the database: parsing, validation
// against the schema, and the depth, complexity and page-size limits. None
// may panic, and a refusal by the limits must carry a code.
func FuzzQuery(f *testing.F) {
	for _, q := range []string{
		`{ sessions(first: 5) { totalCount edges { cursor node { id status customerName } } pageInfo { hasNextPage endCursor } } }`,
		`query($id: ID!) { session(id: $id) { id chat(first: 10) { text } files { name md5 } } }`,
		`{ sessions(first: 100) { edges { node { chat(first: 100) { text } notes { text } } } } }`,
		`{ a: session(id: "x") { id } b: session(id: "y") { id } }`,
		`fragment F on Session { id chat { text } } { sessions { edges { node { ...F } } } }`,
		`{ logins(filter: {outcome: "failed"}, first: 3) { edges { node { technicianId } } } }`,
		`{ technicianPerformance(from: "2026-01-01T00:00:00Z", to: "2026-02-01T00:00:00Z") { technicianId sessions } }`,
		`{ __schema { types { name fields { name type { name ofType { name ofType { name } } } } } } }`,
		`{ sessions(first: -1) { totalCount } }`,
		`{`,
	} {
		f.Add(q, `{"id":"abc","first":3}`)
	}
	// Nothing here reaches the ports: they are left unimplemented.
	s, err := New(Config{Reports: struct{ Reports }{}, Opener: struct{ Opener }{}, Index: struct{ BlindIndexer }{}, Auth: struct{ Authenticator }{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query, varsJSON string) {
		doc, err := parser.Parse(parser.ParseParams{Source: source.NewSource(&source.Source{Body: []byte(query), Name: "fuzz"})})
		if err != nil {
			return
		}
		if v := graphql.ValidateDocument(&s.schema, doc, nil); !v.IsValid {
			return
		}
		vars := map[string]any{}
		_ = json.Unmarshal([]byte(varsJSON), &vars)
		l := &limits{maxDepth: 10, maxComplexity: 1000, maxPage: 100, vars: vars}
		if err := l.check(doc, ""); err != nil {
			var c *codedError
			if !errors.As(err, &c) || c.code == "" {
				t.Fatalf("limits refused without a code: %v", err)
			}
		}
	})
}
