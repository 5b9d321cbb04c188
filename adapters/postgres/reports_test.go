package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	gql "github.com/vigilhq/vigil/api/graphql"
)

func newReports(t *testing.T) (*postgres.Store, func(string, ...any)) {
	t.Helper()
	db := pgtest.New(t)
	st := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(st.Close)
	return st, func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

func sessionIDs(rows []gql.Session) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, r.ID)
	}
	return out
}

func TestReportsSessions(t *testing.T) {
	st, exec := newReports(t)
	ctx := context.Background()
	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	// s0..s5: pairs share a creation time; s5 belongs to another tenant.
	for i := range 6 {
		tenant, tech, owner := "t1", "", ""
		switch i {
		case 1:
			tech = "alice"
		case 2:
			owner = "alice"
		case 5:
			tenant = "t2"
		}
		exec(`INSERT INTO rpt_sessions (tenant, guid, status, queue, group_id, technician_id, owner_id, created_at,
			customer_email_idx, created_position, last_position) VALUES ($1, $2, 'closed', 'shared', 'g', $3, $4, $5, $6, $7, $7)`,
			tenant, fmt.Sprintf("s%d", i), tech, owner, t0.Add(time.Duration(i/2)*time.Minute), []byte{byte(i)}, i+1)
	}
	var all []string
	var after *gql.SessionCursor
	for range 5 {
		rows, err := st.Sessions(ctx, "t1", gql.SessionFilter{}, gql.SessionPage{After: after, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, sessionIDs(rows)...)
		if len(rows) < 2 {
			break
		}
		last := rows[len(rows)-1]
		after = &gql.SessionCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	if diff := cmp.Diff([]string{"s4", "s2", "s3", "s0", "s1"}, all); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		name string
		f    gql.SessionFilter
		want []string
	}{
		{"visible to alice", gql.SessionFilter{VisibleTo: "alice"}, []string{"s2", "s1"}},
		{"blind index", gql.SessionFilter{CustomerEmailIndex: []byte{3}}, []string{"s3"}},
		{"time range", gql.SessionFilter{From: t0.Add(time.Minute), To: t0.Add(2 * time.Minute)}, []string{"s2", "s3"}},
	} {
		rows, err := st.Sessions(ctx, "t1", tc.f, gql.SessionPage{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, sessionIDs(rows)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
		n, err := st.CountSessions(ctx, "t1", tc.f)
		if err != nil || n != len(tc.want) {
			t.Errorf("%s: count %d, %v", tc.name, n, err)
		}
	}
	rows, err := st.SessionsByIDs(ctx, "t1", []string{"s1", "s5", "nope"})
	if err != nil || len(rows) != 1 || rows[0].ID != "s1" || rows[0].TechnicianID != "alice" {
		t.Errorf("by ids: %v, %v", rows, err)
	}
}

func TestReportsTimeline(t *testing.T) {
	st, exec := newReports(t)
	ctx := context.Background()
	t0 := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	for i := range 9 {
		exec(`INSERT INTO rpt_chat (tenant, position, guid, event_id, occurred_at, sender) VALUES ('t1', $1, $2, gen_random_uuid(), $3, 'customer')`,
			i+1, fmt.Sprintf("s%d", i%3), t0.Add(time.Duration(i)*time.Second))
	}
	rows, err := st.ChatBySessions(ctx, "t1", []string{"s0", "s1"}, gql.TimelinePage{After: 1, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s@%d", r.SessionID, r.Position))
	}
	// s0 has 1, 4, 7; s1 has 2, 5, 8.
	if diff := cmp.Diff([]string{"s0@4", "s0@7", "s1@2", "s1@5"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	log, err := st.ChatLog(ctx, "t1", gql.LogFilter{SessionID: "s2"}, gql.LogPage{After: &gql.LogCursor{OccurredAt: t0.Add(2 * time.Second), Position: 3}, Limit: 5})
	if err != nil || len(log) != 2 || log[0].Position != 6 {
		t.Errorf("chat log: %v, %v", log, err)
	}
}

func TestReportsStatusAndPerformance(t *testing.T) {
	st, exec := newReports(t)
	ctx := context.Background()
	exec(`INSERT INTO projection_positions (name, position, updated_at) VALUES ('sessions', 0, now())`)
	status, err := st.ProjectionStatus(ctx)
	if err != nil || len(status) != 1 || status[0].Name != "sessions" || status[0].Head != 0 || status[0].Lag != 0 {
		t.Errorf("status: %+v, %v", status, err)
	}
	exec(`INSERT INTO rpt_technician_daily (tenant, technician_id, day, sessions, pickup_s_sum, pickup_n, duration_s_sum, duration_n, transfers)
		VALUES ('t1', 'alice', '2025-03-14', 3, 30, 3, 0, 0, 1), ('t1', 'alice', '2025-03-16', 1, 0, 0, 0, 0, 0)`)
	days, err := st.TechnicianPerformance(ctx, "t1", time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC), time.Date(2025, 3, 15, 0, 0, 0, 0, time.UTC), "")
	if err != nil || len(days) != 1 || *days[0].AvgPickupSeconds != 10 || days[0].AvgDurationSeconds != nil ||
		days[0].Day != time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC) {
		t.Errorf("performance: %+v, %v", days, err)
	}
}

// TestReportsSessionTimes: the console's waiting and pickup chart averages
// the sessions created on each UTC day, only those with a sample, only the
// tenant's, only the days asked.
func TestReportsSessionTimes(t *testing.T) {
	st, exec := newReports(t)
	ctx := context.Background()
	day := time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC)
	for i, s := range []struct {
		tenant          string
		created         time.Time
		waiting, pickup any
	}{
		{"t1", day.Add(1 * time.Hour), 10.0, 20.0},
		{"t1", day.Add(23 * time.Hour), 30.0, 40.0},
		{"t1", day.Add(2 * time.Hour), nil, nil},              // never picked up
		{"t1", day.AddDate(0, 0, 1).Add(time.Hour), 5.0, 6.0}, // the next day
		{"t1", day.AddDate(0, 0, 3), 1.0, 1.0},                // after the range
		{"t2", day.Add(time.Hour), 1000.0, 1000.0},            // another tenant
	} {
		exec(`INSERT INTO rpt_sessions (tenant, guid, status, queue, group_id, technician_id, owner_id, created_at,
			waiting_s, pickup_s, customer_email_idx, created_position, last_position)
			VALUES ($1, $2, 'closed', 'shared', 'g', 'alice', 'alice', $3, $4, $5, $6, $7, $7)`,
			s.tenant, fmt.Sprintf("s%d", i), s.created, s.waiting, s.pickup, []byte{byte(i)}, i+1)
	}
	days, err := st.SessionTimes(ctx, "t1", day, day.AddDate(0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 2 || days[0].Day != day || days[0].Sessions != 3 || *days[0].AvgWaitingSeconds != 20 || *days[0].AvgPickupSeconds != 30 ||
		days[1].Sessions != 1 || *days[1].AvgWaitingSeconds != 5 {
		t.Errorf("session times: %+v", days)
	}
}
