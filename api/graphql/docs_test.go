package gql_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// docSessionID is the session the examples of docs/api.md read.
const docSessionID = "4f1c2a9e7b3d4c5e8a6f0b1d2c3e4f5a"

// graphqlBlock is a ```graphql fenced block of Markdown.
var graphqlBlock = regexp.MustCompile("(?ms)^```graphql\n(.*?)^```")

// docQueries returns every ```graphql block of docs/*.md and README.md, by
// file.
func docQueries(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	out := map[string][]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range graphqlBlock.FindAllStringSubmatch(string(raw), -1) {
			out[filepath.Base(f)] = append(out[filepath.Base(f)], m[1])
		}
	}
	return out
}

// TestDocExamples runs every GraphQL example of the docs, as written, as
// an admin over a tenant holding the rows they ask for: none may fail, and
// each must find something.
func TestDocExamples(t *testing.T) {
	e := newEnv(t)
	at := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	e.session(fxSession{id: docSessionID, created: at, status: "closed", channel: "web", tech: e.techID,
		name: "Ada Lovelace", email: "ada@example.com", custom: map[string]string{"cfield0": "ticket 4711"}})
	e.chat(e.tenant, docSessionID, at.Add(time.Minute), "customer", "hello")
	e.timelineRows(docSessionID, at.Add(2*time.Minute))
	queries := docQueries(t)
	if len(queries["api.md"]) < 4 {
		t.Fatalf("found %d GraphQL examples in docs/api.md", len(queries["api.md"]))
	}
	for file, qs := range queries {
		for i, q := range qs {
			t.Run(file+"#"+strings.Repeat("I", i+1), func(t *testing.T) {
				d := e.ok(e.keys["admin"], q, nil)
				found := false
				for _, v := range d {
					found = found || (v != nil && !isEmptyConnection(v))
				}
				if !found {
					t.Errorf("the example finds nothing: %v\n%s", d, q)
				}
			})
		}
	}
}

func isEmptyConnection(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	if n, ok := m["totalCount"].(float64); ok {
		return n == 0
	}
	return false
}
