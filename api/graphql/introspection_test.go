package gql

import (
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/graphql-go/graphql/language/parser"
	"github.com/graphql-go/graphql/language/source"
)

// introspectionQuery is graphql-js 16's getIntrospectionQuery(), what
// GraphiQL, Apollo, codegen and Postman send (written by
// testdata/clients/graphql: node -e 'import("graphql").then(g =>
// process.stdout.write(g.getIntrospectionQuery()))').
func introspectionQuery(tb testing.TB) string {
	tb.Helper()
	raw, err := os.ReadFile("testdata/introspection.graphql")
	if err != nil {
		tb.Fatal(err)
	}
	return string(raw)
}

// levels returns fragments L1 to Ln, each selecting the fields of a type
// and the next fragment on the types of those fields, however wrapped.
func levels(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		next := "__typename"
		if i < n {
			next = "...L" + strconv.Itoa(i+1)
		}
		b.WriteString(" fragment L" + strconv.Itoa(i) + " on __Type { name fields { name type { " + next +
			" ofType { " + next + " ofType { " + next + " ofType { " + next + " } } } } } }")
	}
	return b.String()
}

// TestIntrospection checks that getIntrospectionQuery passes the limits
// with room to spare, and that introspection bombs do not.
func TestIntrospection(t *testing.T) {
	s := newTestAPI(t)
	q := introspectionQuery(t)
	doc, err := parser.Parse(parser.ParseParams{Source: source.NewSource(&source.Source{Body: []byte(q)})})
	if err != nil {
		t.Fatal(err)
	}
	l := &limits{maxDepth: DefaultMaxDepth, maxComplexity: DefaultMaxComplexity, maxPage: DefaultMaxPageSize, schema: &s.schema}
	if err := l.check(doc, ""); err != nil {
		t.Fatal(err)
	}
	t.Logf("getIntrospectionQuery resolves %d fields, %d levels deep", l.intro.fields, l.introDepth)
	if l.intro.fields*2 > MaxIntrospectionFields {
		t.Errorf("getIntrospectionQuery resolves %d fields: less than half of the limit %d is left for the schema to grow", l.intro.fields, MaxIntrospectionFields)
	}
	body, _ := json.Marshal(map[string]any{"query": q, "operationName": "IntrospectionQuery"})
	status, r := serve(t, s.GraphQL(), body)
	if status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("getIntrospectionQuery: %d %+v", status, r.Errors)
	}
	raw, _ := json.Marshal(r.Data)
	if strings.Contains(string(raw), `"description":""`) {
		t.Errorf("introspection answers empty descriptions, not null")
	}
	if !strings.Contains(string(raw), `"name":"SessionConnection"`) {
		t.Errorf("introspection lacks SessionConnection: %.300s", raw)
	}

	rep := strings.Repeat
	for _, tc := range []struct{ name, query, code string }{
		{"fields of the types of fields", `{ a: __schema { types { ...L1 } } b: __schema { types { ...L1 } } }` + levels(3), CodeQueryTooComplex},
		{"getIntrospectionQuery five times", "{" + aliased(5, `: __schema { types { ...FullType } directives { name description locations args { ...InputValue } } }`) +
			"}" + q[strings.Index(q, "fragment FullType"):], CodeQueryTooComplex},
		{"100 aliases of __schema", "{" + aliased(100, `: __schema { types { fields { args { name } } } }`) + "}", CodeQueryTooComplex},
		{"ofType 25 deep", `{ __type(name: "Session") { ` + rep("ofType { ", 25) + "name" + rep(" }", 25) + " } }", CodeQueryTooDeep},
		{"one type", `{ __type(name: "Session") { name fields { name type { name kind ofType { name } } } } }`, ""},
		{"a type by variable", `query($n: String!) { __type(name: $n) { name fields { name } } }`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"query": tc.query, "variables": map[string]any{"n": "Session"}})
			status, r := serve(t, s.GraphQL(), body)
			if tc.code == "" {
				if status != 200 || len(r.Errors) > 0 {
					t.Fatalf("got %d %+v", status, r.Errors)
				}
				return
			}
			if status != http.StatusBadRequest || len(r.Errors) == 0 || r.Errors[0].Extensions["code"] != tc.code {
				t.Fatalf("got %d %+v, want 400 and %s", status, r.Errors, tc.code)
			}
		})
	}
}
