package gql_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/graphql-go/graphql/language/parser"
	"github.com/graphql-go/graphql/language/source"
)

// do sends a request to e's server as cred and returns the status, the
// Content-Type and the body.
func (e *env) do(method, path, cred string, header map[string]string, body string) (int, string, string) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Content-Type"), string(raw)
}

// TestGraphQLOverHTTP checks what GraphQL-over-HTTP clients rely on: GET
// runs query operations (and only those), the application/graphql-response+json
// media type is honoured, an execution that fails at the root answers
// "data": null beside errors while a request error has no data, and the
// SDL is served at /graphql/schema.graphql.
func TestGraphQLOverHTTP(t *testing.T) {
	e := newEnv(t)
	e.session(fxSession{created: t0, status: "closed"})
	admin := e.keys["admin"]
	get := func(q url.Values, header map[string]string) (int, string, string) {
		return e.do("GET", "/graphql?"+q.Encode(), admin, header, "")
	}

	t.Run("GET runs a query", func(t *testing.T) {
		status, ct, body := get(url.Values{"query": {`query Q($s: String) { sessions(filter: {status: $s}) { totalCount } }`},
			"variables": {`{"s": "closed"}`}, "operationName": {"Q"}}, nil)
		if status != 200 || ct != "application/json" || body != `{"data":{"sessions":{"totalCount":1}}}`+"\n" {
			t.Errorf("GET: %d %s %s", status, ct, body)
		}
	})
	t.Run("GET refuses a mutation", func(t *testing.T) {
		status, _, body := get(url.Values{"query": {`mutation { sessions { totalCount } }`}}, nil)
		if status != http.StatusMethodNotAllowed || !strings.Contains(body, `"code":"invalid"`) {
			t.Errorf("GET mutation: %d %s", status, body)
		}
	})
	t.Run("GET with bad variables", func(t *testing.T) {
		status, _, body := get(url.Values{"query": {`{ __typename }`}, "variables": {`[1`}}, nil)
		if status != http.StatusBadRequest || !strings.Contains(body, `"code":"invalid"`) {
			t.Errorf("GET bad variables: %d %s", status, body)
		}
	})
	t.Run("application/graphql-response+json", func(t *testing.T) {
		accept := map[string]string{"Accept": "application/graphql-response+json, application/json;q=0.9"}
		status, ct, _ := get(url.Values{"query": {`{ sessions { totalCount } }`}}, accept)
		if status != 200 || ct != "application/graphql-response+json" {
			t.Errorf("Accept graphql-response+json: %d %s", status, ct)
		}
		status, ct, _ = e.do("POST", "/graphql", admin, accept, `{"query": "{ nope }"}`)
		if status != http.StatusBadRequest || ct != "application/graphql-response+json" {
			t.Errorf("request error: %d %s", status, ct)
		}
		_, ct, _ = e.do("POST", "/graphql", admin, map[string]string{"Accept": "application/json"}, `{"query": "{ __typename }"}`)
		if ct != "application/json" {
			t.Errorf("Accept application/json: %s", ct)
		}
	})
	t.Run("data null at the root", func(t *testing.T) {
		// integrity is non-null and refused to technicians: the error
		// reaches the root.
		status, _, body := e.do("POST", "/graphql", e.keys["tech"], nil, `{"query": "{ integrity { latestCheckpoint { size } } }"}`)
		var a map[string]json.RawMessage
		_ = json.Unmarshal([]byte(body), &a)
		if status != 200 || string(a["data"]) != "null" || a["errors"] == nil {
			t.Errorf("root error: %d %s", status, body)
		}
		_, _, body = e.do("POST", "/graphql", admin, nil, `{"query": "{ nope }"}`)
		a = nil
		_ = json.Unmarshal([]byte(body), &a)
		if _, ok := a["data"]; ok {
			t.Errorf("a request error has data: %s", body)
		}
	})
	t.Run("SDL", func(t *testing.T) {
		status, ct, sdl := e.do("GET", "/graphql/schema.graphql", admin, nil, "")
		if status != 200 || !strings.HasPrefix(ct, "application/graphql") {
			t.Fatalf("GET /graphql/schema.graphql: %d %s %.200s", status, ct, sdl)
		}
		if _, err := parser.Parse(parser.ParseParams{Source: source.NewSource(&source.Source{Body: []byte(sdl)})}); err != nil {
			t.Fatalf("the SDL does not parse: %v\n%s", err, sdl)
		}
		for _, want := range []string{"type Query {", "type PageInfo {", "  hasPreviousPage: Boolean!", "  startCursor: String",
			"scalar Time", "input SessionFilter {", "  sessions(\n", "    filter: SessionFilter\n", "  ): SessionConnection!\n"} {
			if !strings.Contains(sdl, want) {
				t.Errorf("the SDL lacks %q", want)
			}
		}
		if n, m := strings.Count(sdl, "Connection {"), strings.Count(sdl, "  totalCount: Int!"); n == 0 || n != m {
			t.Errorf("%d connections, %d with totalCount", n, m)
		}
		if status, _, _ := e.do("GET", "/graphql/schema.graphql", "", nil, ""); status != http.StatusUnauthorized {
			t.Errorf("SDL without credentials: %d", status)
		}
	})
}
