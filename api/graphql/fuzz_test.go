package gql

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
)

// HostileQuery is a request built to exhaust a GraphQL server, with the
// code it must be refused with.
type HostileQuery struct {
	Name      string
	Query     string
	Variables map[string]any
	Code      string
}

// HostileQueries returns the bombs of issue 13 at the sizes that were
// reported, and some their neighbours: each must be refused, quickly,
// with Code.
func HostileQueries() []HostileQuery {
	rep := func(s string, n int) string { return strings.Repeat(s, n) }
	var aliases strings.Builder
	aliases.WriteString("{")
	for i := range 1000 {
		// One response name, different arguments: they conflict.
		aliases.WriteString(` a: sessions(first: ` + strconv.Itoa(i%100) + `) { totalCount }`)
	}
	aliases.WriteString("}")
	var bomb strings.Builder
	// F0 spreads F1 twice, F1 spreads F2 twice, ...: 2^29 selections.
	bomb.WriteString("{ ...F0 }\n")
	for i := range 29 {
		bomb.WriteString("fragment F" + strconv.Itoa(i) + " on Query { ...F" + strconv.Itoa(i+1) + " ...F" + strconv.Itoa(i+1) + " }\n")
	}
	bomb.WriteString("fragment F29 on Query { __typename }\n")
	var wide strings.Builder
	// Within the lexical limits, each fragment doubles the selections.
	wide.WriteString("{ sessions { ...E0 } }\n")
	for i := range 25 {
		wide.WriteString("fragment E" + strconv.Itoa(i) + " on SessionConnection { pageInfo { hasNextPage } edges { cursor } x: edges { ...E" + strconv.Itoa(i+1) + "N } }\n")
		wide.WriteString("fragment E" + strconv.Itoa(i+1) + "N on SessionEdge { cursor }\n")
	}
	return []HostileQuery{
		{"fragment cycle", `query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }`, nil, domain.CodeInvalid},
		{"fragment cycle through a field", `{ ...A } fragment A on Query { integrity { ...B } } fragment B on Integrity { ...C } fragment C on Integrity { latestCheckpoint { size } ...B }`, nil, domain.CodeInvalid},
		{"fragment spreading itself", `{ ...A } fragment A on Query { ...A }`, nil, domain.CodeInvalid},
		{"1,000 conflicting aliases", aliases.String(), nil, CodeQueryTooLarge},
		{"3,000 aliases", "{" + rep(" a: sessions { totalCount } b: logins { edges { cursor } }", 1500) + "}", nil, CodeQueryTooLarge},
		{"99 conflicting aliases", "{" + rep(` a: sessions(first: 1) { totalCount }`, 50) + rep(` a: sessions(first: 2) { totalCount }`, 49) + "}", nil, domain.CodeInvalid},
		{"conflict in merged sub-selections", `{ sessions { edges { node { id: status } } } sessions { edges { node { id } } } }`, nil, domain.CodeInvalid},
		{"100,000 levels", rep("{a", 100000) + rep("}", 100000), nil, CodeQueryTooLarge},
		{"33 levels", rep("{a", 33) + rep("}", 33), nil, CodeQueryTooDeep},
		{"20,000 repeated fields", "{ sessions { " + rep("totalCount ", 20000) + "} }", nil, CodeQueryTooLarge},
		{"3,900 repeated fields", "{ sessions(first: 1) { edges { node { " + rep("id ", 3900) + "} } } }", nil, CodeQueryTooComplex},
		{"1,400 repeated fields", "{ " + rep("__typename ", 1400) + "}", nil, ""},
		{"90 aliases with every filter", "{" + aliased(90, `: sessions(first: 0, filter: {from: "2025-01-01T00:00:00Z", to: "2026-01-01T00:00:00Z", technicianId: "t", groupId: "g", status: "closed", channel: "web"}) { totalCount }`) + "}", nil, ""},
		{"50,000 @include", "{ sessions " + rep("@include(if: true) ", 50000) + "{ totalCount } }", nil, CodeQueryTooLarge},
		{"51 directives", "{ sessions " + rep("@include(if: true) ", 51) + "{ totalCount } }", nil, CodeQueryTooLarge},
		{"nested lists", `{ sessions(filter: {from: ` + rep("[", 50000) + rep("]", 50000) + `}) { totalCount } }`, nil, CodeQueryTooLarge},
		{"nested lists within the size", `{ sessions(filter: {from: ` + rep("[", 40) + rep("]", 40) + `}) { totalCount } }`, nil, CodeQueryTooDeep},
		{"nested objects", `{ sessions(filter: ` + rep("{a: ", 3000) + "1" + rep("}", 3000) + `) { totalCount } }`, nil, CodeQueryTooDeep},
		{"nested objects within the size", `{ sessions(filter: ` + rep("{from: ", 40) + "1" + rep("}", 40) + `) { totalCount } }`, nil, CodeQueryTooDeep},
		{"exponential fragments", bomb.String(), nil, CodeQueryTooLarge},
		{"doubling fragments", wide.String(), nil, CodeQueryTooLarge},
		{"31 fragments", "{ __typename }" + rep(" fragment F on Query { __typename }", 31), nil, CodeQueryTooLarge},
		{"many spreads", "{ ...F } fragment F on Query { __typename " + rep("...G ", 201) + "} fragment G on Query { __typename }", nil, CodeQueryTooLarge},
		{"long string", `{ sessions(filter: {status: "` + rep("x", 2000) + `"}) { totalCount } }`, nil, domain.CodeInvalid},
		{"NUL in a literal", `{ sessions(filter: {customerEmail: "a\u0000b"}) { totalCount } }`, nil, domain.CodeInvalid},
		{"NUL in an id", `{ session(id: "\u0000") { id } }`, nil, domain.CodeInvalid},
		{"NUL in a variable", `query($f: SessionFilter) { sessions(filter: $f) { totalCount } }`,
			map[string]any{"f": map[string]any{"customerEmail": "ann\x00@example.com"}}, domain.CodeInvalid},
		{"NUL in a technician filter", `{ logins(filter: {technicianId: "t\u0000"}) { edges { cursor } } }`, nil, domain.CodeInvalid},
		{"NUL in a cursor", `{ chatLog(after: "\u0000") { edges { cursor } } }`, nil, domain.CodeInvalid},
		{"NUL in an id variable", `query($id: ID!) { session(id: $id) { id } }`, map[string]any{"id": "a\x00"}, domain.CodeInvalid},
		{"control character in the query", "{ sessions { totalCount } }\x01", nil, domain.CodeInvalid},
		{"nested variables", `query($f: SessionFilter) { sessions(filter: $f) { totalCount } }`,
			map[string]any{"f": nested(1000)}, CodeQueryTooDeep},
		{"query over the size", "{ sessions { totalCount } }" + rep(" ", MaxQueryBytes), nil, CodeQueryTooLarge},
	}
}

// aliased returns n fields, aliases a0, a1, ... followed by field.
func aliased(n int, field string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(" a" + strconv.Itoa(i) + field)
	}
	return b.String()
}

// nested returns a map nested n deep.
func nested(n int) map[string]any {
	m := map[string]any{"from": "2025-01-01T00:00:00Z"}
	for range n {
		m = map[string]any{"from": m}
	}
	return m
}

// staticAuth authenticates every bearer as an admin of tenant t.
type staticAuth struct{}

func (staticAuth) Authenticate(context.Context, string) (service.Principal, error) {
	return service.Principal{Tenant: "t", Role: service.RoleAdmin, Scope: service.ScopeFull}, nil
}

// emptyReports is a tenant with no rows, for the tests that exercise the
// request path without a database.
type emptyReports struct{}

func (emptyReports) Sessions(context.Context, string, SessionFilter, SessionPage) ([]Session, error) {
	return nil, nil
}
func (emptyReports) CountSessions(context.Context, string, SessionFilter) (int, error) { return 0, nil }
func (emptyReports) SessionsByIDs(context.Context, string, []string) ([]Session, error) {
	return nil, nil
}
func (emptyReports) ChatBySessions(context.Context, string, []string, TimelinePage) ([]ChatMessage, error) {
	return nil, nil
}
func (emptyReports) NotesBySessions(context.Context, string, []string, TimelinePage) ([]Note, error) {
	return nil, nil
}
func (emptyReports) FileTransfersBySessions(context.Context, string, []string, TimelinePage) ([]FileTransfer, error) {
	return nil, nil
}
func (emptyReports) ConsentsBySessions(context.Context, string, []string, TimelinePage) ([]Consent, error) {
	return nil, nil
}
func (emptyReports) ActionsBySessions(context.Context, string, []string, TimelinePage) ([]Action, error) {
	return nil, nil
}
func (emptyReports) RecordingsBySessions(context.Context, string, []string) ([]Recording, error) {
	return nil, nil
}
func (emptyReports) Recordings(context.Context, string, RecordingFilter, RecordingPage) ([]Recording, error) {
	return nil, nil
}
func (emptyReports) ChatLog(context.Context, string, LogFilter, LogPage) ([]ChatMessage, error) {
	return nil, nil
}
func (emptyReports) FileTransfers(context.Context, string, LogFilter, LogPage) ([]FileTransfer, error) {
	return nil, nil
}
func (emptyReports) Consents(context.Context, string, LogFilter, LogPage) ([]Consent, error) {
	return nil, nil
}
func (emptyReports) Logins(context.Context, string, LoginFilter, LogPage) ([]Login, error) {
	return nil, nil
}
func (emptyReports) CountChatLog(context.Context, string, LogFilter) (int, error) { return 0, nil }
func (emptyReports) CountFileTransfers(context.Context, string, LogFilter) (int, error) {
	return 0, nil
}
func (emptyReports) CountConsents(context.Context, string, LogFilter) (int, error) { return 0, nil }
func (emptyReports) CountLogins(context.Context, string, LoginFilter) (int, error) { return 0, nil }
func (emptyReports) CountRecordings(context.Context, string, RecordingFilter) (int, error) {
	return 0, nil
}
func (emptyReports) CountWebhookDeliveries(context.Context, string, WebhookDeliveryFilter) (int, error) {
	return 0, nil
}
func (emptyReports) TechnicianPerformance(context.Context, string, time.Time, time.Time, string) ([]TechnicianDay, error) {
	return nil, nil
}
func (emptyReports) SessionTimes(context.Context, string, time.Time, time.Time) ([]SessionDay, error) {
	return nil, nil
}
func (emptyReports) ProjectionStatus(context.Context) ([]ProjectionState, error) { return nil, nil }
func (emptyReports) LatestCheckpoint(context.Context, string) (ledger.Checkpoint, error) {
	return ledger.Checkpoint{}, domain.ErrNotFound
}
func (emptyReports) WebhookSubscriptions(context.Context, string) ([]WebhookSubscription, error) {
	return nil, nil
}
func (emptyReports) WebhookDeliveries(context.Context, string, WebhookDeliveryFilter, WebhookDeliveryPage) ([]WebhookDelivery, error) {
	return nil, nil
}

// nothingSealed refuses to open anything: emptyReports holds nothing
// sealed.
type nothingSealed struct{}

func (nothingSealed) OpenRefString(context.Context, string, []byte) (string, error) {
	return "", domain.ErrNotFound
}
func (nothingSealed) OpenRef(context.Context, string, []byte) (json.RawMessage, bool, error) {
	return nil, false, domain.ErrNotFound
}
func (nothingSealed) BlindIndex(_ context.Context, _, v string) ([]byte, error) {
	return []byte(v), nil
}

// newTestAPI is the API over a tenant with no rows, where every bearer
// is an admin.
func newTestAPI(tb testing.TB) *Server {
	tb.Helper()
	s, err := New(Config{Reports: emptyReports{}, Opener: nothingSealed{}, Index: nothingSealed{}, Auth: staticAuth{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func newTestServer(tb testing.TB) http.Handler { return newTestAPI(tb).GraphQL() }

// serve posts body to h and returns the status and decoded answer.
func serve(tb testing.TB, h http.Handler, body []byte) (int, response) {
	tb.Helper()
	req := httptest.NewRequest("POST", "/graphql", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer x")
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var r response
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		tb.Fatalf("answer is not JSON: %v: %s", err, rec.Body.Bytes())
	}
	return rec.Code, r
}

// FuzzQuery feeds arbitrary query text and variables through the whole
// request path of POST /graphql: the lexical pre-check, parsing, the
// document checks (fragment cycles, strings), the depth, complexity and
// page-size limits, validation, the merge check and execution (over a
// tenant with no rows). Nothing may panic, every error must carry a code,
// and nothing but a field error may answer 200 with errors.
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
		`{ sessions @include(if: true) { totalCount } a: sessions @skip(if: false) { totalCount } }`,
		`query($f: SessionFilter = {status: "closed"}) { sessions(filter: $f) { totalCount } }`,
		`{ sessions { edges { node { id: status } } } sessions { edges { node { id } } } }`,
		`{ ... on Query { integrity { latestCheckpoint { size } } } }`,
		`"""block""" query { __typename }`,
		`{`,
	} {
		f.Add(q, `{"id":"abc","first":3}`)
	}
	for _, h := range HostileQueries() {
		if len(h.Query) <= 4*MaxQueryBytes {
			vars, _ := json.Marshal(h.Variables)
			f.Add(h.Query, string(vars))
		}
	}
	h := newTestServer(f)
	f.Fuzz(func(t *testing.T, query, varsJSON string) {
		vars := map[string]any{}
		_ = json.Unmarshal([]byte(varsJSON), &vars)
		body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
		if err != nil {
			return
		}
		status, r := serve(t, h, body)
		for _, e := range r.Errors {
			if c, _ := e.Extensions["code"].(string); c == "" {
				t.Fatalf("error without a code: %+v", e)
			} else if c == domain.CodeInternal {
				t.Fatalf("internal error: %+v", e)
			}
		}
		if status == http.StatusOK && len(r.Errors) > 0 {
			for _, e := range r.Errors {
				if len(e.Path) == 0 {
					t.Fatalf("200 with an error that is not a field's: %+v", e)
				}
			}
		}
	})
}

// TestHostileQueries sends every bomb through the request path and checks
// that it is refused with its code (an empty code: answered).
func TestHostileQueries(t *testing.T) {
	h := newTestServer(t)
	for _, q := range HostileQueries() {
		t.Run(q.Name, func(t *testing.T) {
			body, _ := json.Marshal(map[string]any{"query": q.Query, "variables": q.Variables})
			status, r := serve(t, h, body)
			if q.Code == "" {
				if status != 200 || len(r.Errors) > 0 {
					t.Fatalf("got %d %+v, want an answer", status, r.Errors)
				}
				return
			}
			if (status != http.StatusBadRequest && status != http.StatusRequestEntityTooLarge) || len(r.Errors) == 0 || r.Errors[0].Extensions["code"] != q.Code {
				t.Fatalf("got %d %+v, want 400 or 413 and code %s", status, r.Errors, q.Code)
			}
		})
	}
}

// BenchmarkHostileQueries measures what each bomb costs the server before
// it is refused: see docs/api.md for the bounds.
func BenchmarkHostileQueries(b *testing.B) {
	h := newTestServer(b)
	for _, q := range HostileQueries() {
		body, _ := json.Marshal(map[string]any{"query": q.Query, "variables": q.Variables})
		b.Run(strings.ReplaceAll(q.Name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				serve(b, h, body)
			}
		})
	}
}
