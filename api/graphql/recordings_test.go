package gql_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vigilhq/vigil/domain"
)

// recordingsFixture is three sessions: tech's (two recordings, one stored
// and viewed, one failed), tech2's (one stored, never viewed) and an erased
// one (a recording whose row erasure deleted, and one a rebuild wrote back).
type recordingsFixture struct {
	mine, theirs, erased string
}

func (e *env) recordingsFixture() recordingsFixture {
	e.t.Helper()
	f := recordingsFixture{
		mine:   e.session(fxSession{created: t0, tech: e.techID}),
		theirs: e.session(fxSession{created: t0, tech: e.tech2ID}),
		erased: e.session(fxSession{created: t0}),
	}
	rec := func(guid, id, tech, state string, started time.Time, size, duration *int64, views int) {
		e.t.Helper()
		md5, sha := "", ""
		if size != nil {
			md5, sha = "0123456789abcdef0123456789abcdef", "ab"+id
		}
		e.exec(`INSERT INTO rpt_recordings (tenant, guid, recording_id, technician_id, state, started_at, stored_at, object_key, content_type,
				size, md5, sha256, views, duration_ms)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			e.tenant, guid, id, tech, state, started, started.Add(time.Minute), "recordings/"+id, "video/webm", size, md5, sha, views, duration)
		e.exec(`INSERT INTO recording_objects (tenant, recording_id, guid, object_key, created_at) VALUES ($1, $2, $3, $4, $5)`,
			e.tenant, id, guid, "recordings/"+id, started)
	}
	rec(f.mine, "rec-a", e.techID, "stored", t0.Add(1*time.Minute), ptr[int64](1<<20), ptr[int64](61000), 2)
	rec(f.mine, "rec-b", e.techID, "failed", t0.Add(2*time.Minute), nil, nil, 0)
	rec(f.theirs, "rec-c", e.tech2ID, "stored", t0.Add(3*time.Minute), ptr[int64](5), nil, 0)
	rec(f.erased, "rec-d", "", "stored", t0.Add(4*time.Minute), ptr[int64](7), nil, 1)
	// rec-e: erasure deleted its reporting row; the upload index remains.
	e.exec(`INSERT INTO recording_objects (tenant, recording_id, guid, object_key, created_at) VALUES ($1, 'rec-e', $2, 'recordings/rec-e', $3)`,
		e.tenant, f.erased, t0.Add(5*time.Minute))
	e.exec(`INSERT INTO erasure_requests (id, tenant, subject, scope, state, requested_at, due_at, done_at)
		VALUES ($1, $2, $3, 'all', 'done', $4, $4, $4)`, domain.NewEventID().String(), e.tenant, string(domain.SessionSubject(f.erased)), t0)
	// A pending erasure of another session changes nothing.
	e.exec(`INSERT INTO erasure_requests (id, tenant, subject, scope, state, requested_at, due_at)
		VALUES ($1, $2, $3, 'all', 'pending', $4, $4)`, domain.NewEventID().String(), e.tenant, string(domain.SessionSubject(f.theirs)), t0)
	return f
}

const recordingsQuery = `query($f: RecordingFilter, $n: Int, $after: String) {
	recordings(filter: $f, first: $n, after: $after) {
		edges { cursor node { id sessionId state size md5 sha256 durationMs contentType views viewed erased } }
		pageInfo { hasNextPage endCursor } } }`

// recordingIDs returns the ids of a recordings answer and its endCursor
// when there is a next page.
func recordingIDs(d map[string]any) ([]string, string) {
	conn := d["recordings"]
	out := []string{}
	for _, ed := range get(conn, "edges").([]any) {
		out = append(out, get(ed, "node", "id").(string))
	}
	next := ""
	if get(conn, "pageInfo", "hasNextPage") == true {
		next, _ = get(conn, "pageInfo", "endCursor").(string)
	}
	return out, next
}

func TestRecordingsConnection(t *testing.T) {
	e := newEnv(t)
	f := e.recordingsFixture()
	admin := e.keys["admin"]

	t.Run("pages in time order", func(t *testing.T) {
		var got []string
		after := any(nil)
		for range 10 {
			page, next := recordingIDs(e.ok(admin, recordingsQuery, map[string]any{"n": 2, "after": after}))
			got = append(got, page...)
			if next == "" {
				break
			}
			after = next
		}
		if diff := cmp.Diff([]string{"rec-a", "rec-b", "rec-c", "rec-d", "rec-e"}, got); diff != "" {
			t.Errorf("pages (-want +got):\n%s", diff)
		}
	})

	t.Run("fields", func(t *testing.T) {
		d := e.ok(admin, recordingsQuery, map[string]any{"n": 10})
		byID := map[string]any{}
		for _, ed := range get(d, "recordings", "edges").([]any) {
			byID[get(ed, "node", "id").(string)] = get(ed, "node")
		}
		want := map[string]any{
			"id": "rec-a", "sessionId": f.mine, "state": "stored", "size": float64(1 << 20), "md5": "0123456789abcdef0123456789abcdef",
			"sha256": "abrec-a", "durationMs": float64(61000), "contentType": "video/webm", "views": float64(2), "viewed": true, "erased": false,
		}
		if diff := cmp.Diff(want, byID["rec-a"]); diff != "" {
			t.Errorf("rec-a (-want +got):\n%s", diff)
		}
		if get(byID["rec-b"], "state") != "failed" || get(byID["rec-b"], "size") != nil || get(byID["rec-b"], "durationMs") != nil {
			t.Errorf("rec-b = %v", byID["rec-b"])
		}
		for _, id := range []string{"rec-d", "rec-e"} {
			if get(byID[id], "state") != "erased" || get(byID[id], "erased") != true {
				t.Errorf("%s of an erased session = %v", id, byID[id])
			}
		}
		if get(byID["rec-c"], "erased") != false || get(byID["rec-c"], "viewed") != false {
			t.Errorf("rec-c (a pending erasure only) = %v", byID["rec-c"])
		}
	})

	t.Run("filters", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			filter map[string]any
			want   []string
		}{
			{"stored", map[string]any{"state": "stored"}, []string{"rec-a", "rec-c"}},
			{"viewed", map[string]any{"state": "viewed"}, []string{"rec-a"}},
			{"failed", map[string]any{"state": "failed"}, []string{"rec-b"}},
			{"erased", map[string]any{"state": "erased"}, []string{"rec-d", "rec-e"}},
			{"session", map[string]any{"sessionId": f.mine}, []string{"rec-a", "rec-b"}},
			{"erased session", map[string]any{"sessionId": f.erased}, []string{"rec-d", "rec-e"}},
			{"time range", map[string]any{"from": t0.Add(2 * time.Minute).Format(time.RFC3339), "to": t0.Add(4 * time.Minute).Format(time.RFC3339)}, []string{"rec-b", "rec-c"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, _ := recordingIDs(e.ok(admin, recordingsQuery, map[string]any{"f": tc.filter}))
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		}
	})

	t.Run("a technician sees his sessions' recordings", func(t *testing.T) {
		got, _ := recordingIDs(e.ok(e.keys["tech"], recordingsQuery, nil))
		if diff := cmp.Diff([]string{"rec-a", "rec-b"}, got); diff != "" {
			t.Errorf("tech (-want +got):\n%s", diff)
		}
		got, _ = recordingIDs(e.ok(e.keys["tech"], recordingsQuery, map[string]any{"f": map[string]any{"sessionId": f.theirs}}))
		if len(got) != 0 {
			t.Errorf("tech reads another technician's recordings: %v", got)
		}
		got, _ = recordingIDs(e.ok(e.keys["auditor"], recordingsQuery, nil))
		if len(got) != 5 {
			t.Errorf("auditor sees %v, want all five", got)
		}
	})

	t.Run("another tenant's recordings are invisible", func(t *testing.T) {
		got, _ := recordingIDs(e.ok(e.keys["otherAdmin"], recordingsQuery, nil))
		if len(got) != 0 {
			t.Errorf("other tenant sees %v", got)
		}
	})

	t.Run("session(id).recordings", func(t *testing.T) {
		d := e.ok(admin, `query($id: ID!) { session(id: $id) { recordings { id state durationMs viewed erased } } }`, map[string]any{"id": f.erased})
		want := []any{
			map[string]any{"id": "rec-d", "state": "erased", "durationMs": nil, "viewed": true, "erased": true},
			map[string]any{"id": "rec-e", "state": "erased", "durationMs": nil, "viewed": false, "erased": true},
		}
		if diff := cmp.Diff(want, get(d, "session", "recordings")); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			vars   map[string]any
			status int
		}{
			{"unknown state", map[string]any{"f": map[string]any{"state": "lost"}}, http.StatusOK},
			{"to before from", map[string]any{"f": map[string]any{"from": t0.Format(time.RFC3339), "to": t0.Add(-time.Hour).Format(time.RFC3339)}}, http.StatusOK},
			{"a cursor of another list", map[string]any{"after": "bDF8Y2hhdHwxfDE"}, http.StatusOK},
			{"not a cursor", map[string]any{"after": "!!"}, http.StatusOK},
			{"first over the cap", map[string]any{"n": 1000}, http.StatusBadRequest},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e.fails(admin, recordingsQuery, tc.vars, tc.status, "invalid")
			})
		}
	})

	t.Run("one statement per page", func(t *testing.T) {
		before := e.queries.n.Load()
		e.ok(admin, recordingsQuery, map[string]any{"n": 10})
		if n := e.queries.n.Load() - before; n != 1 {
			t.Errorf("a page of recordings took %d statements, want 1", n)
		}
	})
}
