package gql_test

import (
	"fmt"
	"testing"
	"time"
)

// TestRelayConnections walks every connection of the schema two rows at a
// time, with a filter, and checks the Relay connection spec: totalCount
// counts the filtered rows over every page, pageInfo has hasPreviousPage
// (false on the first page, true after a cursor), startCursor and
// endCursor (the first and last edges' cursors), and the pages hold
// totalCount rows in all.
func TestRelayConnections(t *testing.T) {
	e := newEnv(t)
	var sessions []string
	for i := range 3 {
		id := e.session(fxSession{created: t0.Add(time.Duration(i) * time.Minute), tech: e.techID, status: "closed"})
		sessions = append(sessions, id)
		e.chat(e.tenant, id, t0.Add(time.Duration(i)*time.Second), "customer", fmt.Sprint(i))
		e.chat(e.tenant, id, t0.Add(time.Duration(i)*time.Second+time.Millisecond), "technician", "re")
		e.timelineRows(id, t0.Add(time.Duration(i)*time.Minute))
	}
	e.session(fxSession{created: t0, status: "active"}) // filtered out below
	e.exec(`INSERT INTO rpt_logins (tenant, position, technician_id, event_id, occurred_at, outcome) VALUES
		($1, $2, $3, gen_random_uuid(), $5, 'failed'), ($1, $4, $3, gen_random_uuid(), $5, 'locked_out'),
		($1, $6, $3, gen_random_uuid(), $5, 'locked_out'), ($1, $7, $3, gen_random_uuid(), $5, 'locked_out')`,
		e.tenant, e.nextPos(), e.techID, e.nextPos(), t0, e.nextPos(), e.nextPos())
	wh := e.webhooksFixture()

	for _, tc := range []struct {
		list, args string
		want       int
	}{
		{"sessions", `filter: {status: "closed"}`, 3},
		{"chatLog", `filter: {sessionId: "` + sessions[1] + `"}`, 2},
		{"chatLog", ``, 6},
		{"logins", `filter: {outcome: "locked_out"}`, 3},
		{"lockouts", ``, 3},
		{"fileTransfers", `filter: {direction: "sent"}`, 3},
		{"consents", `filter: {kind: "granted"}`, 3},
		{"recordings", `filter: {state: "stored"}`, 3},
		{"webhookDeliveries", `filter: {webhookId: "` + wh.active.ID + `"}`, 4},
	} {
		t.Run(tc.list+"("+tc.args+")", func(t *testing.T) {
			q := fmt.Sprintf(`query($after: String) { c: %s(%s first: 2, after: $after) {
				totalCount edges { cursor } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`, tc.list, tc.args)
			seen := 0
			var after any
			for page := 0; ; page++ {
				d := e.ok(e.keys["admin"], q, map[string]any{"after": after})
				c := d["c"]
				if got := get(c, "totalCount"); got != float64(tc.want) {
					t.Fatalf("totalCount = %v, want %d", got, tc.want)
				}
				edges := get(c, "edges").([]any)
				seen += len(edges)
				pi := get(c, "pageInfo")
				if get(pi, "hasPreviousPage") != (page > 0) {
					t.Errorf("page %d: hasPreviousPage = %v", page, get(pi, "hasPreviousPage"))
				}
				if len(edges) > 0 && (get(pi, "startCursor") != get(edges[0], "cursor") || get(pi, "endCursor") != get(edges[len(edges)-1], "cursor")) {
					t.Errorf("page %d: pageInfo %v does not match edges %v", page, pi, edges)
				}
				if get(pi, "hasNextPage") != true {
					break
				}
				after = get(pi, "endCursor")
				if page > 5 {
					t.Fatal("paging does not end")
				}
			}
			if seen != tc.want {
				t.Errorf("pages held %d rows, want %d", seen, tc.want)
			}
		})
	}
}
