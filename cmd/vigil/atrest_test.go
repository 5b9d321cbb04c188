package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
)

// TestNothingPersonalInClearAtRest runs vigil simulate against a real
// serve, through a proxy that notes every personal value simulate sends
// (names, e-mail addresses, chat and note text, customer IPs, file and
// script names, URLs, custom field values; passwords too), waits until
// the projections, webhooks and the bus have caught up, and then searches
// every text, bytea, JSON and array column of every table for every one of
// them: personal data is only ever stored sealed (blind indexes are keyed
// hashes), so there must be no hit.
func TestNothingPersonalInClearAtRest(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir())
	addr := freeAddr(t)
	vars := map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error",
		"VIGIL_HTTP_ADDR": addr, "VIGIL_RELAY_ADDR": "127.0.0.1:0", "VIGIL_WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32"}
	env := envFunc(vars)
	ctx := context.Background()

	tenant, ingest := tenantWithIngest(t, env)
	var out bytes.Buffer

	// A CRM receiver, so that webhook payloads are stored too.
	var hooks sync.Map
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hooks.Store(string(b), true)
		w.WriteHeader(204)
	}))
	defer receiver.Close()

	_, logs := serveProcess(t, vars)
	base := "http://" + addr
	req, _ := http.NewRequest("POST", base+"/v1/webhooks", strings.NewReader(`{"url": "`+receiver.URL+`", "description": "crm"}`))
	req.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("webhook subscription: %d", res.StatusCode)
	}

	// simulate talks to serve through a proxy that notes what it sends.
	target, _ := url.Parse(base)
	rp := httputil.NewSingleHostReverseProxy(target)
	personal := newPersonalSet()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		personal.noteRequest(r.URL.Path, body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()

	out.Reset()
	err = run(ctx, []string{"simulate", "--url", proxy.URL, "--key", tenant["admin_key"], "--ingest-key", ingest["key"],
		"--sessions", "8", "--concurrency", "2", "--seed", "5", "--quiet"}, env, &out, io.Discard)
	if err != nil {
		t.Fatalf("simulate: %v\n%s\nserver log:\n%s", err, out.String(), logs.String())
	}
	values := personal.list()
	for _, kind := range []string{"name", "email", "text", "ip", "url", "custom_fields", "password"} {
		if personal.count(kind) == 0 {
			t.Fatalf("simulate sent no %s: the proxy sees nothing (sent %v)", kind, values)
		}
	}

	// Wait until everything that stores what happened has done so.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		caughtUp := strings.Contains(string(b), `vigil_projection_lag_events{projection="reporting"} 0`) &&
			strings.Contains(string(b), `vigil_projection_lag_events{projection="subjects"} 0`)
		n := 0
		hooks.Range(func(any, any) bool { n++; return true })
		if caughtUp && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("projections or webhooks never caught up (%d deliveries):\n%s", n, b)
		}
	}

	cols := searchableColumns(t, db)
	if len(cols) < 20 {
		t.Fatalf("only %d columns to search: %v", len(cols), cols)
	}
	hits := 0
	for _, c := range cols {
		for _, v := range values {
			var n int64
			if err := db.Pool.QueryRow(ctx, c.query(), v.value).Scan(&n); err != nil {
				t.Fatalf("search %s.%s: %v", c.table, c.column, err)
			}
			if n > 0 {
				hits++
				t.Errorf("%s.%s: %d rows hold the %s %q in clear", c.table, c.column, n, v.kind, v.value)
			}
		}
	}
	t.Logf("searched %d columns for %d personal values sent by simulate: %d hits", len(cols), len(values), hits)
}

// personalValue is one personal string simulate sent, and what it is.
type personalValue struct{ kind, value string }

// personalSet collects the personal values of requests.
type personalSet struct {
	mu   sync.Mutex
	seen map[personalValue]bool
}

func newPersonalSet() *personalSet { return &personalSet{seen: map[personalValue]bool{}} }

// noteRequest notes the personal values of a JSON request body: the
// fields that the event catalogue seals (names, e-mail addresses, chat and
// note text, IPs, URLs, file and script names, custom field values) and
// passwords. A group's name is not personal; nor are ids and tracking ids.
func (p *personalSet) noteRequest(path string, body []byte) {
	if path == "/v1/groups" || len(body) == 0 {
		return
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var walk func(key string, v any, inCustom bool)
	walk = func(key string, v any, inCustom bool) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(k, e, inCustom || k == "custom_fields")
			}
		case string:
			kind := ""
			switch {
			case inCustom:
				kind = "custom_fields"
			case key == "name", key == "email", key == "text", key == "ip", key == "url":
				kind = key
			case key == "password", key == "new_password":
				kind = "password"
			}
			// Very short values could match by chance in ciphertext.
			if kind != "" && len(x) >= 5 {
				p.seen[personalValue{kind, x}] = true
			}
		}
	}
	walk("", v, false)
}

func (p *personalSet) list() []personalValue {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]personalValue, 0, len(p.seen))
	for v := range p.seen {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].kind+out[i].value < out[j].kind+out[j].value })
	return out
}

func (p *personalSet) count(kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for v := range p.seen {
		if v.kind == kind {
			n++
		}
	}
	return n
}

// column is one column that can hold a string.
type column struct{ schema, table, column, typ string }

// query counts the rows of the column that hold $1: bytes as UTF-8 for
// bytea, the text form for the rest (JSON and arrays included).
func (c column) query() string {
	ident := pgx.Identifier{c.schema, c.table}.Sanitize() + "." + pgx.Identifier{c.column}.Sanitize()
	from := " FROM " + pgx.Identifier{c.schema, c.table}.Sanitize()
	if c.typ == "bytea" {
		return "SELECT count(*)" + from + " WHERE position(convert_to($1, 'UTF8') IN " + ident + ") > 0"
	}
	return "SELECT count(*)" + from + " WHERE position($1 IN " + ident + "::text) > 0"
}

// searchableColumns lists every column of every table of the database's
// own schemas whose type can hold a string.
func searchableColumns(t *testing.T, db *pgtest.DB) []column {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT c.table_schema, c.table_name, c.column_name, c.data_type
		FROM information_schema.columns c JOIN information_schema.tables t USING (table_schema, table_name)
		WHERE t.table_type = 'BASE TABLE' AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
		ORDER BY 1, 2, 3`)
	if err != nil {
		t.Fatal(err)
	}
	all, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (column, error) {
		var c column
		err := row.Scan(&c.schema, &c.table, &c.column, &c.typ)
		return c, err
	})
	if err != nil {
		t.Fatal(err)
	}
	stringy := []string{"text", "character varying", "character", "bytea", "json", "jsonb", "ARRAY", "USER-DEFINED"}
	var out []column
	for _, c := range all {
		if slices.Contains(stringy, c.typ) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		t.Fatal(fmt.Errorf("no columns"))
	}
	return out
}
