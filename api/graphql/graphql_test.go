package gql_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	gql "github.com/vigilhq/vigil/api/graphql"
	"github.com/vigilhq/vigil/domain"
)

var t0 = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

const sessionsQuery = `query($f: SessionFilter, $first: Int, $after: String) {
	sessions(filter: $f, first: $first, after: $after) {
		totalCount
		edges { cursor node { id } }
		pageInfo { hasNextPage endCursor }
	}
}`

func TestSessionFilters(t *testing.T) {
	e := newEnv(t)
	a := e.session(fxSession{id: "a", created: t0, tech: "t1", group: "g1", channel: "web", status: "closed", email: "Ann@Example.com"})
	b := e.session(fxSession{id: "b", created: t0.Add(time.Hour), tech: "t2", group: "g2", status: "active", email: "bob@example.com"})
	c := e.session(fxSession{id: "c", created: t0.Add(2 * time.Hour), tech: "t1", group: "g2", channel: "web", status: "waiting"})
	for _, tc := range []struct {
		name   string
		filter map[string]any
		want   []string
	}{
		{"none", nil, []string{c, b, a}},
		{"technician", map[string]any{"technicianId": "t1"}, []string{c, a}},
		{"group", map[string]any{"groupId": "g2"}, []string{c, b}},
		{"status", map[string]any{"status": "active"}, []string{b}},
		{"channel", map[string]any{"channel": "web"}, []string{c, a}},
		{"from", map[string]any{"from": t0.Add(time.Hour).Format(time.RFC3339)}, []string{c, b}},
		{"to is exclusive", map[string]any{"to": t0.Add(time.Hour).Format(time.RFC3339)}, []string{a}},
		{"e-mail, any case and spacing", map[string]any{"customerEmail": "  ann@EXAMPLE.com "}, []string{a}},
		{"unknown e-mail", map[string]any{"customerEmail": "zed@example.com"}, nil},
		{"combined", map[string]any{"technicianId": "t1", "groupId": "g2"}, []string{c}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.ok(e.keys["admin"], sessionsQuery, map[string]any{"f": tc.filter})
			if diff := cmp.Diff(tc.want, ids(d["sessions"])); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
			if got := get(d, "sessions", "totalCount"); got != float64(len(tc.want)) {
				t.Errorf("totalCount = %v, want %d", got, len(tc.want))
			}
		})
	}
}

func TestSessionFields(t *testing.T) {
	e := newEnv(t)
	id := e.session(fxSession{created: t0, tech: e.techID, name: "Ann Lee", email: "ann@example.com",
		custom: map[string]string{"ticket": "T-1", "plan": "gold"}, tools: []string{"file_transfer", "remote_control"},
		pickup: ptr(12.5), transfers: 2})
	d := e.ok(e.keys["admin"], `query($id: ID!) { session(id: $id) {
		id status queue groupId technicianId createdAt closedAt pickupSeconds activeSeconds transfers tools recorded
		customerName customerEmail customFields } }`, map[string]any{"id": id})
	want := map[string]any{
		"id": id, "status": "closed", "queue": "shared", "groupId": "g1", "technicianId": e.techID,
		"createdAt": "2025-03-14T09:00:00Z", "closedAt": nil, "pickupSeconds": 12.5, "activeSeconds": nil,
		"transfers": float64(2), "tools": []any{"file_transfer", "remote_control"}, "recorded": false,
		"customerName": "Ann Lee", "customerEmail": "ann@example.com", "customFields": `{"plan":"gold","ticket":"T-1"}`,
	}
	if diff := cmp.Diff(want, d["session"]); diff != "" {
		t.Errorf("session (-want +got):\n%s", diff)
	}
}

// TestPagination pages through sessions (with equal creation times, to
// exercise the tie-breaker) while other sessions are inserted between the
// pages: every session that existed at the start is seen exactly once.
func TestPagination(t *testing.T) {
	e := newEnv(t)
	var want []string
	for i := range 23 {
		// Pairs share a creation time.
		want = append(want, e.session(fxSession{id: fmt.Sprintf("s%02d", i), created: t0.Add(time.Duration(i/2) * time.Minute)}))
	}
	seen := map[string]int{}
	var after any
	pages := 0
	for {
		d := e.ok(e.keys["admin"], sessionsQuery, map[string]any{"first": 5, "after": after})
		conn := d["sessions"]
		for _, id := range ids(conn) {
			seen[id]++
		}
		pages++
		// Inserted between pages: one newer than everything (before the
		// cursor), one older than everything (still to come), one tied
		// with existing rows.
		e.session(fxSession{id: fmt.Sprintf("new-%d", pages), created: t0.Add(time.Hour + time.Duration(pages)*time.Minute)})
		e.session(fxSession{id: fmt.Sprintf("old-%d", pages), created: t0.Add(-time.Duration(pages) * time.Minute)})
		if get(conn, "pageInfo", "hasNextPage") != true {
			break
		}
		after = get(conn, "pageInfo", "endCursor")
		if pages > 20 {
			t.Fatal("pagination does not end")
		}
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Errorf("session %s seen %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("session %s seen %d times", id, n)
		}
	}
	// Sessions older than the cursor that were inserted during the walk
	// show up; newer ones wait for the next walk.
	if seen["new-1"] != 0 || seen["old-1"] != 1 {
		t.Errorf("new-1 seen %d times, old-1 %d times", seen["new-1"], seen["old-1"])
	}
}

func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	mine := e.session(fxSession{created: t0, name: "Ann"})
	theirs := e.session(fxSession{tenant: e.other, created: t0, name: "Zed"})
	e.chat(e.tenant, mine, t0, "customer", "hello")
	e.chat(e.other, theirs, t0, "customer", "secret")

	d := e.ok(e.keys["admin"], sessionsQuery, nil)
	if diff := cmp.Diff([]string{mine}, ids(d["sessions"])); diff != "" {
		t.Errorf("tenant sessions (-want +got):\n%s", diff)
	}
	d = e.ok(e.keys["otherAdmin"], sessionsQuery, nil)
	if diff := cmp.Diff([]string{theirs}, ids(d["sessions"])); diff != "" {
		t.Errorf("other tenant sessions (-want +got):\n%s", diff)
	}
	e.fails(e.keys["admin"], `query($id: ID!) { session(id: $id) { id } }`, map[string]any{"id": theirs}, 200, "not_found")
	d = e.ok(e.keys["admin"], `{ chatLog { edges { node { sessionId text } } } }`, nil)
	if got := get(d, "chatLog", "edges", 0, "node", "text"); got != "hello" || len(get(d, "chatLog", "edges").([]any)) != 1 {
		t.Errorf("chat log = %v", d["chatLog"])
	}
}

func TestRoles(t *testing.T) {
	e := newEnv(t)
	held := e.session(fxSession{id: "held", created: t0, tech: e.techID})
	owned := e.session(fxSession{id: "owned", created: t0.Add(time.Minute), owner: e.techID, queue: "private"})
	other := e.session(fxSession{id: "other", created: t0.Add(2 * time.Minute), tech: e.tech2ID})
	for _, id := range []string{held, owned, other} {
		e.chat(e.tenant, id, t0, "customer", "hi from "+id)
	}
	e.exec(`INSERT INTO rpt_logins (tenant, position, technician_id, event_id, occurred_at, outcome) VALUES
		($1, $2, $3, gen_random_uuid(), $5, 'succeeded'), ($1, $4, $6, gen_random_uuid(), $5, 'failed')`,
		e.tenant, e.nextPos(), e.techID, e.nextPos(), t0, e.tech2ID)

	t.Run("admin and auditor see everything", func(t *testing.T) {
		for _, k := range []string{"admin", "auditor"} {
			d := e.ok(e.keys[k], sessionsQuery, nil)
			if diff := cmp.Diff([]string{other, owned, held}, ids(d["sessions"])); diff != "" {
				t.Errorf("%s (-want +got):\n%s", k, diff)
			}
		}
	})
	t.Run("technician sees his own", func(t *testing.T) {
		d := e.ok(e.keys["tech"], sessionsQuery, nil)
		if diff := cmp.Diff([]string{owned, held}, ids(d["sessions"])); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		e.fails(e.keys["tech"], `query($id: ID!) { session(id: $id) { id } }`, map[string]any{"id": other}, 200, "not_found")
		d = e.ok(e.keys["tech"], `query($id: ID!) { session(id: $id) { chat { text } } }`, map[string]any{"id": held})
		if got := get(d, "session", "chat", 0, "text"); got != "hi from held" {
			t.Errorf("chat = %v", got)
		}
		d = e.ok(e.keys["tech"], `{ chatLog { edges { node { sessionId } } } }`, nil)
		if n := len(get(d, "chatLog", "edges").([]any)); n != 2 {
			t.Errorf("technician's chat log has %d messages, want 2", n)
		}
		d = e.ok(e.keys["tech"], `{ logins { edges { node { technicianId } } } }`, nil)
		if got := get(d, "logins", "edges"); len(got.([]any)) != 1 || get(got, 0, "node", "technicianId") != e.techID {
			t.Errorf("technician's logins = %v", got)
		}
		e.fails(e.keys["tech"], `query($f: LoginFilter) { logins(filter: $f) { edges { cursor } } }`,
			map[string]any{"f": map[string]any{"technicianId": e.tech2ID}}, 200, "forbidden")
		e.fails(e.keys["tech"], `{ projectionStatus { name } }`, nil, 200, "forbidden")
	})
	t.Run("integration sees no chat", func(t *testing.T) {
		d := e.ok(e.keys["integration"], sessionsQuery, nil)
		if len(ids(d["sessions"])) != 3 {
			t.Errorf("integration sessions = %v", ids(d["sessions"]))
		}
		a := e.fails(e.keys["integration"], `query($id: ID!) { session(id: $id) { id chat { text } } }`, map[string]any{"id": held}, 200, "forbidden")
		if a.Data["session"] != nil {
			t.Errorf("session with a forbidden chat = %v, want null (chat is non-null)", a.Data["session"])
		}
		e.fails(e.keys["integration"], `{ chatLog { edges { cursor } } }`, nil, 200, "forbidden")
	})
	t.Run("ingest and relay are refused", func(t *testing.T) {
		for _, k := range []string{"ingest", "relay"} {
			e.fails(e.keys[k], sessionsQuery, nil, http.StatusForbidden, "forbidden")
		}
	})
	t.Run("credentials", func(t *testing.T) {
		e.fails("", sessionsQuery, nil, http.StatusUnauthorized, "unauthenticated")
		e.fails("vk_nope.nope", sessionsQuery, nil, http.StatusUnauthorized, "unauthenticated")
	})
}

func TestErasedSubject(t *testing.T) {
	e := newEnv(t)
	id := e.session(fxSession{created: t0, name: "Ann", email: "ann@example.com", custom: map[string]string{"k": "v"}})
	e.chat(e.tenant, id, t0, "customer", "my card number")
	keep := e.session(fxSession{created: t0.Add(time.Minute), name: "Bob"})
	for _, subject := range domain.KeySubjects(domain.SessionSubject(id)) {
		if _, err := e.sealer.Shred(context.Background(), e.tenant, subject); err != nil {
			t.Fatal(err)
		}
	}
	d := e.ok(e.keys["admin"], `{ sessions { edges { node { id customerName customerEmail customFields chat(first: 10) { text } } } } }`, nil)
	want := []any{
		map[string]any{"node": map[string]any{"id": keep, "customerName": "Bob", "customerEmail": nil, "customFields": nil, "chat": []any{}}},
		map[string]any{"node": map[string]any{"id": id, "customerName": "[erased]", "customerEmail": "[erased]", "customFields": "[erased]",
			"chat": []any{map[string]any{"text": "[erased]"}}}},
	}
	if diff := cmp.Diff(want, get(d, "sessions", "edges")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestLimits(t *testing.T) {
	e := newEnv(t)
	e.session(fxSession{created: t0})
	for _, tc := range []struct {
		name, query string
		vars        map[string]any
		code        string
	}{
		{"too complex", `{ sessions(first: 100) { edges { node { chat(first: 100) { text } } } } }`, nil, gql.CodeQueryTooComplex},
		{"too complex by default sizes", `{ sessions(first: 50) { edges { node { chat { text sender } } } } }`, nil, gql.CodeQueryTooComplex},
		{"too complex through a variable", `query($n: Int) { sessions(first: $n) { edges { node { chat(first: 50) { text } } } } }`, map[string]any{"n": 100}, gql.CodeQueryTooComplex},
		{"first over the cap", `{ sessions(first: 101) { totalCount } }`, nil, "invalid"},
		{"first over the cap in a variable", `query($n: Int) { logins(first: $n) { edges { cursor } } }`, map[string]any{"n": 1000}, "invalid"},
		{"negative first", `{ sessions(first: -1) { totalCount } }`, nil, "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.queries.n.Load()
			e.fails(e.keys["admin"], tc.query, tc.vars, http.StatusBadRequest, tc.code)
			if n := e.queries.n.Load() - before; n != 0 {
				t.Errorf("a refused query ran %d statements", n)
			}
		})
	}

	shallow := newEnvWith(t, e, func(c *gql.Config) { c.MaxDepth = 4 })
	shallow.fails(e.keys["admin"], `{ sessions { edges { node { chat { text } } } } }`, nil, http.StatusBadRequest, gql.CodeQueryTooDeep)
	shallow.fails(e.keys["admin"], `query { sessions { ...E } }
		fragment E on SessionConnection { edges { ...N } }
		fragment N on SessionEdge { node { chat { text } } }`, nil, http.StatusBadRequest, gql.CodeQueryTooDeep)
	shallow.ok(e.keys["admin"], `{ sessions { edges { node { id } } } }`, nil)
	// Introspection is bounded apart (MaxIntrospectionDepth): 11 levels
	// answer, 21 do not.
	e.ok(e.keys["admin"], `{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } }`, nil)
	e.fails(e.keys["admin"], `{ __schema { types { fields { type { `+strings.Repeat("ofType { ", 16)+`name`+strings.Repeat(" }", 16)+` } } } } }`,
		nil, http.StatusBadRequest, gql.CodeQueryTooDeep)
	e.ok(e.keys["admin"], `{ sessions(first: 100) { edges { node { id chat(first: 5) { text } } } } }`, nil)
}

// newEnvWith serves e's database and credentials through another server
// configured by opt.
func newEnvWith(t *testing.T, e *env, opt envOption) *env {
	t.Helper()
	c := gql.Config{Reports: e.reports, Opener: e.sealer, Index: e.sealer, Auth: e.svc}
	opt(&c)
	api, err := gql.New(c)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/graphql", api.GraphQL())
	mux.Handle("/graphql/schema.graphql", api.GraphQL())
	mux.Handle("GET /v1/reports/{file}", api.CSV())
	e2 := *e
	e2.srv = newServer(t, mux)
	return &e2
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.session(fxSession{created: t0})
	for _, tc := range []struct {
		name, query string
		vars        map[string]any
		status      int
		code        string
	}{
		{"malformed", `{ sessions { edges `, nil, 400, "invalid"},
		{"unknown field", `{ sessions { edges { node { nope } } } }`, nil, 400, "invalid"},
		{"unknown argument", `{ sessions(last: 3) { totalCount } }`, nil, 400, "invalid"},
		{"bad cursor", `{ sessions(after: "bm9wZQ") { totalCount } }`, nil, 200, "invalid"},
		{"cursor of another list", `query($c: String) { sessions(after: $c) { totalCount } }`, map[string]any{"c": "bDF8Y2hhdHwxfDI"}, 200, "invalid"},
		{"bad time literal", `{ sessions(filter: {from: "yesterday"}) { totalCount } }`, nil, 400, "invalid"},
		{"bad time variable", sessionsQuery, map[string]any{"f": map[string]any{"from": "2025-13-01"}}, 400, "invalid"},
		{"to before from", sessionsQuery, map[string]any{"f": map[string]any{"from": "2025-03-02T00:00:00Z", "to": "2025-03-01T00:00:00Z"}}, 200, "invalid"},
		{"bad day", `{ technicianPerformance(from: "March", to: "2025-03-02") { day } }`, nil, 200, "invalid"},
		{"long range", `{ technicianPerformance(from: "2020-01-01", to: "2025-03-02") { day } }`, nil, 200, "invalid"},
		{"variable of the wrong type", `query($n: Int) { sessions(first: $n) { totalCount } }`, map[string]any{"n": "ten"}, 400, "invalid"},
		{"unknown operation", `query A { sessions { totalCount } }`, nil, 400, "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"query": tc.query, "variables": tc.vars}
			if tc.name == "unknown operation" {
				body["operationName"] = "B"
			}
			raw, _ := json.Marshal(body)
			a := e.post(e.keys["admin"], raw)
			if a.status != tc.status || len(a.Errors) == 0 || a.codes()[0] != tc.code {
				t.Errorf("got %d %s, want %d %s", a.status, a.raw, tc.status, tc.code)
			}
		})
	}
	t.Run("body not JSON", func(t *testing.T) {
		a := e.post(e.keys["admin"], []byte(`query { sessions }`))
		if a.status != 400 || a.codes()[0] != "invalid" {
			t.Errorf("got %d %s", a.status, a.raw)
		}
	})
}

// TestNoNPlusOne checks that a page of sessions with every timeline part
// costs one statement per table, however many sessions it holds.
func TestNoNPlusOne(t *testing.T) {
	e := newEnv(t)
	q := `{ sessions(first: 10) { edges { node { id
		chat(first: 10) { text } notes(first: 10) { text } files(first: 10) { name } consents(first: 10) { kind }
		actions(first: 10) { type } recordings { state } } } } }`
	count := func() (int64, map[string]any) {
		before := e.queries.n.Load()
		d := e.ok(e.keys["admin"], q, nil)
		return e.queries.n.Load() - before, d
	}
	for i := range 2 {
		id := e.session(fxSession{created: t0.Add(time.Duration(i) * time.Minute)})
		e.chat(e.tenant, id, t0, "customer", "hello")
		e.timelineRows(id, t0)
	}
	few, _ := count()
	for i := 2; i < 10; i++ {
		id := e.session(fxSession{created: t0.Add(time.Duration(i) * time.Minute)})
		e.chat(e.tenant, id, t0, "customer", "hello")
		e.chat(e.tenant, id, t0.Add(time.Second), "technician", "hi")
		e.timelineRows(id, t0)
	}
	many, d := count()
	if few != 7 || many != 7 {
		t.Errorf("statements: %d for 2 sessions, %d for 10; want 7 (sessions + one per timeline table)", few, many)
	}
	for _, ed := range get(d, "sessions", "edges").([]any) {
		if len(get(ed, "node", "chat").([]any)) == 0 || len(get(ed, "node", "recordings").([]any)) != 1 ||
			get(ed, "node", "files", 0, "name") != "=report.xlsx" {
			t.Fatalf("timeline of %v is incomplete: %v", get(ed, "node", "id"), ed)
		}
	}

	// Aliased session(id) fields are one read too.
	all := ids(e.ok(e.keys["admin"], `{ sessions(first: 3) { edges { node { id } } } }`, nil)["sessions"])
	before := e.queries.n.Load()
	d = e.ok(e.keys["admin"], `query($a: ID!, $b: ID!, $c: ID!) { a: session(id: $a) { chat { text } } b: session(id: $b) { chat { text } } c: session(id: $c) { id chat { text } } }`,
		map[string]any{"a": all[0], "b": all[1], "c": all[2]})
	if n := e.queries.n.Load() - before; n != 2 {
		t.Errorf("three session(id) with chat took %d statements, want 2", n)
	}
	if get(d, "c", "id") != all[2] {
		t.Errorf("c = %v", d["c"])
	}
}

func TestTimeout(t *testing.T) {
	e := newEnv(t)
	slow := newEnvWith(t, e, func(c *gql.Config) {
		c.Reports = slowReports{Reports: e.reports}
		c.QueryTimeout = 100 * time.Millisecond
	})
	a := slow.query(e.keys["admin"], `{ sessions { totalCount } }`, nil)
	if len(a.Errors) == 0 || a.codes()[0] != gql.CodeTimeout {
		t.Errorf("got %d %s, want code timeout", a.status, a.raw)
	}
}

// slowReports never answers a sessions read before its deadline.
type slowReports struct{ gql.Reports }

func (slowReports) Sessions(ctx context.Context, _ string, _ gql.SessionFilter, _ gql.SessionPage) ([]gql.Session, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestLogLists(t *testing.T) {
	e := newEnv(t)
	s1 := e.session(fxSession{created: t0, tech: e.techID})
	s2 := e.session(fxSession{created: t0, tech: e.tech2ID})
	var want []string
	for i := range 7 {
		id := s1
		if i%2 == 1 {
			id = s2
		}
		// Equal times for pairs: the position breaks the tie.
		e.chat(e.tenant, id, t0.Add(time.Duration(i/2)*time.Second), "customer", fmt.Sprintf("m%d", i))
		want = append(want, fmt.Sprintf("m%d", i))
	}
	var got []string
	var after any
	for range 10 {
		d := e.ok(e.keys["admin"], `query($after: String) { chatLog(first: 3, after: $after) { edges { node { text } } pageInfo { hasNextPage endCursor } } }`,
			map[string]any{"after": after})
		for _, ed := range get(d, "chatLog", "edges").([]any) {
			got = append(got, get(ed, "node", "text").(string))
		}
		if get(d, "chatLog", "pageInfo", "hasNextPage") != true {
			break
		}
		after = get(d, "chatLog", "pageInfo", "endCursor")
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chat log pages (-want +got):\n%s", diff)
	}
	d := e.ok(e.keys["admin"], `query($s: String) { chatLog(filter: {sessionId: $s}) { edges { node { sessionId } } } }`, map[string]any{"s": s2})
	if n := len(get(d, "chatLog", "edges").([]any)); n != 3 {
		t.Errorf("chat of %s: %d messages, want 3", s2, n)
	}

	refs, _ := e.seal(e.tenant, domain.TechnicianStream(e.techID), domain.LoginFailed{IP: "192.0.2.7"})
	e.exec(`INSERT INTO rpt_logins (tenant, position, technician_id, event_id, occurred_at, outcome, reason, ip_ref) VALUES
		($1, $2, $3, gen_random_uuid(), $4, 'failed', 'bad_password', $5),
		($1, $6, $3, gen_random_uuid(), $7, 'locked_out', '', NULL),
		($1, $8, $9, gen_random_uuid(), $7, 'succeeded', '', NULL)`,
		e.tenant, e.nextPos(), e.techID, t0, refs["ip"], e.nextPos(), t0.Add(time.Minute), e.nextPos(), e.tech2ID)
	d = e.ok(e.keys["auditor"], `{
		logins(filter: {outcome: "failed"}) { edges { node { outcome reason ip technicianId } } }
		lockouts { edges { node { outcome technicianId } } }
		all: logins(filter: {technicianId: "`+e.tech2ID+`"}) { edges { node { outcome } } }
	}`, nil)
	wantLogins := map[string]any{
		"logins":   map[string]any{"edges": []any{map[string]any{"node": map[string]any{"outcome": "failed", "reason": "bad_password", "ip": "192.0.2.7", "technicianId": e.techID}}}},
		"lockouts": map[string]any{"edges": []any{map[string]any{"node": map[string]any{"outcome": "locked_out", "technicianId": e.techID}}}},
		"all":      map[string]any{"edges": []any{map[string]any{"node": map[string]any{"outcome": "succeeded"}}}},
	}
	if diff := cmp.Diff(wantLogins, d); diff != "" {
		t.Errorf("logins (-want +got):\n%s", diff)
	}

	e.timelineRows(s1, t0)
	e.timelineRows(s2, t0.Add(time.Hour))
	d = e.ok(e.keys["tech"], `{
		fileTransfers(filter: {direction: "sent"}) { edges { node { sessionId name size } } }
		consents(filter: {kind: "granted"}) { edges { node { sessionId action } } }
	}`, nil)
	wantLists := map[string]any{
		"fileTransfers": map[string]any{"edges": []any{map[string]any{"node": map[string]any{"sessionId": s1, "name": "=report.xlsx", "size": float64(5)}}}},
		"consents":      map[string]any{"edges": []any{map[string]any{"node": map[string]any{"sessionId": s1, "action": "file_transfer"}}}},
	}
	if diff := cmp.Diff(wantLists, d); diff != "" {
		t.Errorf("technician's lists (-want +got):\n%s", diff)
	}
	d = e.ok(e.keys["admin"], `query($f: Time) { fileTransfers(filter: {from: $f}) { edges { node { sessionId } } } }`, map[string]any{"f": t0.Add(time.Minute).Format(time.RFC3339)})
	if got := get(d, "fileTransfers", "edges"); len(got.([]any)) != 1 || get(got, 0, "node", "sessionId") != s2 {
		t.Errorf("file transfers from %v: %v", t0.Add(time.Minute), got)
	}
}

func TestPerformanceStatusIntegrity(t *testing.T) {
	e := newEnv(t)
	e.exec(`INSERT INTO rpt_technician_daily (tenant, technician_id, day, sessions, pickup_s_sum, pickup_n, duration_s_sum, duration_n, transfers) VALUES
		($1, $2, '2025-03-14', 4, 40, 4, 600, 3, 1), ($1, $3, '2025-03-14', 1, 0, 0, 0, 0, 0), ($1, $2, '2025-03-20', 2, 10, 1, 100, 1, 0)`,
		e.tenant, e.techID, e.tech2ID)
	q := `{ technicianPerformance(from: "2025-03-14", to: "2025-03-15") { technicianId day sessions avgPickupSeconds avgDurationSeconds transfers } }`
	d := e.ok(e.keys["admin"], q, nil)
	rows := get(d, "technicianPerformance").([]any)
	sort.Slice(rows, func(i, j int) bool {
		return get(rows[i], "technicianId").(string) < get(rows[j], "technicianId").(string)
	})
	want := []any{
		map[string]any{"technicianId": e.techID, "day": "2025-03-14", "sessions": float64(4), "avgPickupSeconds": float64(10), "avgDurationSeconds": float64(200), "transfers": float64(1)},
		map[string]any{"technicianId": e.tech2ID, "day": "2025-03-14", "sessions": float64(1), "avgPickupSeconds": nil, "avgDurationSeconds": nil, "transfers": float64(0)},
	}
	if e.tech2ID < e.techID {
		want[0], want[1] = want[1], want[0]
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("performance (-want +got):\n%s", diff)
	}
	d = e.ok(e.keys["tech"], q, nil)
	if rows := get(d, "technicianPerformance").([]any); len(rows) != 1 || get(rows, 0, "technicianId") != e.techID {
		t.Errorf("technician's performance = %v", rows)
	}

	head, err := e.store.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.exec(`INSERT INTO projection_positions (name, position, updated_at) VALUES ('sessions', $1, now()), ('logins', $2, now())`, head-2, head)
	d = e.ok(e.keys["auditor"], `{ projectionStatus { name position head lag } }`, nil)
	wantStatus := []any{
		map[string]any{"name": "logins", "position": float64(head), "head": float64(head), "lag": float64(0)},
		map[string]any{"name": "sessions", "position": float64(head - 2), "head": float64(head), "lag": float64(2)},
	}
	if diff := cmp.Diff(wantStatus, d["projectionStatus"]); diff != "" {
		t.Errorf("projection status (-want +got):\n%s", diff)
	}

	d = e.ok(e.keys["admin"], `{ integrity { latestCheckpoint { size } } }`, nil)
	if get(d, "integrity", "latestCheckpoint") != nil {
		t.Errorf("checkpoint before any: %v", d)
	}
	if err := e.ledger.CheckpointAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	d = e.ok(e.keys["auditor"], `{ integrity { latestCheckpoint { size rootHash note } } }`, nil)
	cp := get(d, "integrity", "latestCheckpoint")
	note, _ := get(cp, "note").(string)
	root, _ := get(cp, "rootHash").(string)
	size, _ := get(cp, "size").(float64)
	if size < 1 || root == "" || !strings.Contains(note, root) || !strings.HasPrefix(note, "vigil.test/"+e.tenant+"\n") {
		t.Errorf("checkpoint = %v", cp)
	}
	e.fails(e.keys["tech"], `{ integrity { latestCheckpoint { size } } }`, nil, 200, "forbidden")
}

func TestQueryPage(t *testing.T) {
	e := newEnv(t)
	res, err := e.srv.Client().Get(e.srv.URL + "/graphql")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Errorf("GET /graphql: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	prod := newEnvWith(t, e, func(c *gql.Config) { c.Production = true })
	res, err = prod.srv.Client().Get(prod.srv.URL + "/graphql")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /graphql in production: %d", res.StatusCode)
	}
}

func TestSessionTimelinePaging(t *testing.T) {
	e := newEnv(t)
	id := e.session(fxSession{created: t0})
	var positions []int64
	for i := range 5 {
		positions = append(positions, e.chat(e.tenant, id, t0.Add(time.Duration(i)*time.Second), "customer", fmt.Sprint(i)))
	}
	d := e.ok(e.keys["admin"], `query($id: ID!, $after: Long) { session(id: $id) { chat(first: 2, after: $after) { text position } } }`,
		map[string]any{"id": id, "after": positions[1]})
	var got []string
	for _, m := range get(d, "session", "chat").([]any) {
		got = append(got, get(m, "text").(string))
	}
	if !slices.Equal(got, []string{"2", "3"}) {
		t.Errorf("chat after %d = %v", positions[1], got)
	}
}
