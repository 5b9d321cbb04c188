package gql

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/graphql-go/graphql"
)

func TestScan(t *testing.T) {
	rep := strings.Repeat
	aliases := func(n int) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			b.WriteString(" a" + strconv.Itoa(i) + ": __typename")
		}
		return b.String() + " }"
	}
	for _, tc := range []struct {
		name, query, code string
	}{
		{"100 aliases", aliases(MaxAliases), ""},
		{"101 aliases", aliases(MaxAliases + 1), CodeQueryTooLarge},
		{"colons in arguments are no aliases", "{" + rep(` sessions(first: 1, after: "x") { totalCount }`, 150) + "}", ""},
		{"strings hide brackets, colons and keywords", `{ a: sessions(filter: {status: "` + rep(`{[( a: b fragment @x $y ...`, 30) + `"}) { totalCount } }`, ""},
		{"escaped quotes", `{ sessions(filter: {status: "\"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{"}) { totalCount } }`, ""},
		{"block strings", `{ sessions(filter: {status: """ \""" ` + rep("{", 40) + ` """}) { totalCount } }`, ""},
		{"comments", "{ __typename # " + rep("{ a: b @c $d ...", 200) + "\n}", ""},
		{"32 levels", rep("{a", 32) + rep("}", 32), ""},
		{"33 levels", rep("{a", 33) + rep("}", 33), CodeQueryTooDeep},
		{"4,000 tokens", "{" + rep(" a", MaxQueryTokens-2) + " }", ""},
		{"4,001 tokens", "{" + rep(" a", MaxQueryTokens-1) + " }", CodeQueryTooLarge},
		{"100 variables", "query(" + rep("$a: Int ", 50) + ") {" + rep(" sessions(first: $a) { totalCount }", 50) + " }", ""},
		{"101 variables", "query(" + rep("$a: Int ", 51) + ") {" + rep(" sessions(first: $a) { totalCount }", 50) + " }", CodeQueryTooLarge},
		{"a value of 100 tokens", `{ sessions(filter: {` + rep(`from: 1 `, 32) + `b c}) { totalCount } }`, ""},
		{"a value of 101 tokens", `{ sessions(filter: {` + rep(`from: 1 `, 33) + `}) { totalCount } }`, CodeQueryTooLarge},
		{"invalid UTF-8", "{ __typename \xff }", "invalid"},
		{"NUL", "{ __typename \x00 }", "invalid"},
		{"BOM and tabs", "\uFEFF{\t__typename\r\n}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if c := scan(tc.query); c != nil {
				got = c.code
			}
			if got != tc.code {
				t.Errorf("scan = %q, want %q", got, tc.code)
			}
		})
	}
}

// TestSchemaHasNoAbstractTypes keeps mergeable right: it treats every
// field of a selection set as having one parent type, which only holds
// while the schema has no interfaces or unions. Adding one needs
// mergeable to compare response shapes across parent types, as the spec's
// rule does.
func TestSchemaHasNoAbstractTypes(t *testing.T) {
	s := newTestAPI(t)
	for name, typ := range s.schema.TypeMap() {
		switch typ.(type) {
		case *graphql.Interface, *graphql.Union:
			t.Errorf("type %s is abstract", name)
		}
	}
}

// countingReports counts the reads of a tenant with no rows.
type countingReports struct {
	emptyReports
	n *atomic.Int64
}

func (c countingReports) Sessions(ctx context.Context, tenant string, f SessionFilter, p SessionPage) ([]Session, error) {
	c.n.Add(1)
	return nil, ctx.Err()
}

// TestGoneClientRunsNothing checks that a request whose client has gone
// (its context cancelled) stops before execution.
func TestGoneClientRunsNothing(t *testing.T) {
	n := &atomic.Int64{}
	s, err := New(Config{Reports: countingReports{n: n}, Opener: nothingSealed{}, Index: nothingSealed{}, Auth: staticAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	body, _ := json.Marshal(map[string]any{"query": `{ sessions { edges { cursor } } }`})
	req := httptest.NewRequest("POST", "/graphql", bytes.NewReader(body)).WithContext(ctx)
	req.Header.Set("Authorization", "Bearer x")
	rec := httptest.NewRecorder()
	s.GraphQL().ServeHTTP(rec, req)
	if n.Load() != 0 {
		t.Errorf("a cancelled request read %d times", n.Load())
	}
	if !strings.Contains(rec.Body.String(), `"code":"timeout"`) {
		t.Errorf("answer %d %s, want code timeout", rec.Code, rec.Body)
	}
}
