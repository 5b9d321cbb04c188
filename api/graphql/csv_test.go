package gql_test

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// csvGet downloads a report and returns the status, the content type and
// the records (or the error code).
func (e *env) csvGet(cred, path string) (int, string, [][]string, string) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		var body struct {
			Error struct{ Code string } `json:"error"`
		}
		if err := json.Unmarshal(raw, &body); err != nil {
			e.t.Fatalf("error answer is not JSON: %s", raw)
		}
		return res.StatusCode, res.Header.Get("Content-Type"), nil, body.Error.Code
	}
	recs, err := csv.NewReader(strings.NewReader(string(raw))).ReadAll()
	if err != nil {
		e.t.Fatalf("not CSV: %v\n%s", err, raw)
	}
	return res.StatusCode, res.Header.Get("Content-Type"), recs, ""
}

func TestCSV(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC().Truncate(time.Second)
	mine := e.session(fxSession{id: "mine", created: now.Add(-time.Hour), tech: e.techID, name: "=cmd|' /C calc'!A0", email: "ann@example.com"})
	theirs := e.session(fxSession{id: "theirs", created: now.Add(-2 * time.Hour), tech: e.tech2ID, name: "Bob"})
	e.session(fxSession{id: "old", created: now.Add(-40 * 24 * time.Hour)})
	e.chat(e.tenant, mine, now.Add(-time.Hour), "customer", "hello, \"tech\"\nline two")
	e.chat(e.tenant, theirs, now.Add(-time.Hour), "customer", "other")

	t.Run("sessions, last 30 days", func(t *testing.T) {
		status, ctype, recs, _ := e.csvGet(e.keys["admin"], "/v1/reports/sessions.csv")
		if status != 200 || !strings.HasPrefix(ctype, "text/csv") {
			t.Fatalf("%d %s", status, ctype)
		}
		if recs[0][0] != "id" || recs[0][22] != "customer_name" || len(recs) != 3 {
			t.Fatalf("records = %v", recs)
		}
		if diff := cmp.Diff([]string{"mine", "'=cmd|' /C calc'!A0", "ann@example.com"}, []string{recs[1][0], recs[1][22], recs[1][23]}); diff != "" {
			t.Errorf("first row (-want +got):\n%s", diff)
		}
		if recs[2][0] != "theirs" {
			t.Errorf("second row = %v", recs[2])
		}
	})
	t.Run("explicit range", func(t *testing.T) {
		from := now.Add(-50 * 24 * time.Hour).Format(time.RFC3339)
		to := now.Add(-90 * time.Minute).Format(time.RFC3339)
		_, _, recs, _ := e.csvGet(e.keys["auditor"], "/v1/reports/sessions.csv?from="+from+"&to="+to)
		if len(recs) != 3 || recs[1][0] != "theirs" || recs[2][0] != "old" {
			t.Errorf("records = %v", recs)
		}
	})
	t.Run("technician sees his own", func(t *testing.T) {
		_, _, recs, _ := e.csvGet(e.keys["tech"], "/v1/reports/sessions.csv")
		if len(recs) != 2 || recs[1][0] != "mine" {
			t.Errorf("records = %v", recs)
		}
		_, _, recs, _ = e.csvGet(e.keys["tech"], "/v1/reports/chatlog.csv")
		if len(recs) != 2 || recs[1][6] != "hello, \"tech\"\nline two" {
			t.Errorf("chat = %v", recs)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		for _, c := range []struct {
			cred, path string
			status     int
			code       string
		}{
			{e.keys["integration"], "/v1/reports/chatlog.csv", 403, "forbidden"},
			{e.keys["ingest"], "/v1/reports/sessions.csv", 403, "forbidden"},
			{"", "/v1/reports/sessions.csv", 401, "unauthenticated"},
			{e.keys["admin"], "/v1/reports/sessions.csv?from=yesterday", 400, "invalid"},
			{e.keys["admin"], "/v1/reports/sessions.csv?from=2025-03-02T00:00:00Z&to=2025-03-01T00:00:00Z", 400, "invalid"},
			{e.keys["admin"], "/v1/reports/nope.csv", 404, "not_found"},
		} {
			status, _, _, code := e.csvGet(c.cred, c.path)
			if status != c.status || code != c.code {
				t.Errorf("%s: %d %s, want %d %s", c.path, status, code, c.status, c.code)
			}
		}
		status, _, recs, _ := e.csvGet(e.keys["integration"], "/v1/reports/sessions.csv")
		if status != 200 || len(recs) != 3 {
			t.Errorf("integration sessions: %d %v", status, recs)
		}
	})
	t.Run("streams many pages", func(t *testing.T) {
		e.exec(`INSERT INTO rpt_chat (tenant, position, guid, event_id, occurred_at, sender)
			SELECT $1, $2::bigint + i, $3, gen_random_uuid(), $4::timestamptz - i * interval '1 second', 'technician' FROM generate_series(1, 1234) i`,
			e.tenant, e.nextPos()+10, mine, now.Add(-time.Minute))
		_, _, recs, _ := e.csvGet(e.keys["admin"], "/v1/reports/chatlog.csv")
		if len(recs) != 1+2+1234 {
			t.Fatalf("%d records", len(recs))
		}
		seen := map[string]bool{}
		for _, r := range recs[1:] {
			if seen[r[0]] {
				t.Fatalf("position %s twice", r[0])
			}
			seen[r[0]] = true
		}
	})
	t.Run("logins and file transfers", func(t *testing.T) {
		e.timelineRows(mine, now.Add(-time.Hour))
		e.exec(`INSERT INTO rpt_logins (tenant, position, technician_id, event_id, occurred_at, outcome) VALUES ($1, $2, $3, gen_random_uuid(), $4, 'succeeded')`,
			e.tenant, e.nextPos()+5000, e.techID, now.Add(-time.Hour))
		_, _, recs, _ := e.csvGet(e.keys["admin"], "/v1/reports/file-transfers.csv")
		if len(recs) != 2 || recs[1][6] != "'=report.xlsx" || recs[1][4] != "sent" {
			t.Errorf("file transfers = %v", recs)
		}
		_, _, recs, _ = e.csvGet(e.keys["admin"], "/v1/reports/logins.csv")
		if len(recs) != 2 || recs[1][4] != "succeeded" {
			t.Errorf("logins = %v", recs)
		}
	})
}
