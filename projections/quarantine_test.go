package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/projections"
)

// appendRaw appends e to its stream as it is, bypassing the service's
// checks: the log may hold anything (old events, another writer's).
func (w *world) appendRaw(e domain.Event) domain.Event {
	w.t.Helper()
	out, err := w.ledger.Append(context.Background(), e.Stream, ledger.AnyVersion, e)
	w.must(err)
	return out[0]
}

func sessionCreated(t *testing.T, tenant, guid, channel string) domain.Event {
	t.Helper()
	e, err := domain.NewEvent(domain.Meta{Tenant: tenant, Stream: domain.SessionStream(guid), Actor: domain.Actor{Kind: domain.ActorSystem}},
		&domain.SessionCreated{GUID: guid, PIN: "123456", Queue: "shared", Channel: channel, GroupID: "g1", CustomerName: "Grace"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// rawEvent is an event of type typ whose public data is data, whatever
// that holds.
func rawEvent(tenant, guid, typ, data string) domain.Event {
	return domain.Event{Tenant: tenant, Stream: domain.SessionStream(guid), Type: typ, Schema: 1,
		Actor: domain.Actor{Kind: domain.ActorSystem}, Data: json.RawMessage(data)}
}

// Issue 13, 3(b): one tenant's unprojectable event never stops another
// tenant's reports. A NUL byte in a channel is projected in a safe form; a
// payload that does not decode is set aside in the quarantine, visible in
// the status, and the projection goes on with the rest.
func TestPoisonEventNeverStallsOtherTenants(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	b, _, err := w.svc.CreateTenant(ctx, "Beta", "eu")
	w.must(err)
	guid := func(i int) string { return fmt.Sprintf("%032x", i) }

	nul := w.appendRaw(sessionCreated(t, w.tenant, guid(1), "a\x00b"))
	garbage := w.appendRaw(rawEvent(w.tenant, guid(2), "session.created", `{"queue": 5, "guid": ["x"]}`))
	unknown := w.appendRaw(rawEvent(w.tenant, guid(3), "session.teleported", `{"to":"mars"}`))
	// A newer writer's field this version does not know: projected with
	// the fields it knows.
	newer := w.appendRaw(rawEvent(w.tenant, guid(4), "session.created",
		`{"guid":"`+guid(4)+`","pin":"1","queue":"shared","group_id":"g1","channel":"x\u0000y","hologram":true}`))
	other := w.appendRaw(sessionCreated(t, b.ID, guid(5), "web"))
	if other.Position <= garbage.Position {
		t.Fatalf("tenant B's event at %d is not after the poison at %d", other.Position, garbage.Position)
	}

	r := newRunner(w, 50)
	if err := r.CatchUp(ctx); err != nil {
		t.Fatalf("catch up stalls on a poison event: %v", err)
	}
	channels := func() map[string]string {
		rows, err := w.db.Pool.Query(ctx, `SELECT tenant || '/' || guid, channel FROM rpt_sessions`)
		w.must(err)
		out := map[string]string{}
		for rows.Next() {
			var k, ch string
			w.must(rows.Scan(&k, &ch))
			out[k] = ch
		}
		w.must(rows.Err())
		return out
	}
	want := map[string]string{
		w.tenant + "/" + guid(1): "a\uFFFDb", // the safe form of "a\x00b"
		w.tenant + "/" + guid(4): "x\uFFFDy",
		b.ID + "/" + guid(5):     "web",
	}
	if diff := cmp.Diff(want, channels()); diff != "" {
		t.Errorf("rpt_sessions channels (-want +got):\n%s", diff)
	}
	// The subject index took the sealed fields of the NUL session.
	if n := count(t, w, `SELECT count(*) FROM rpt_subject_index WHERE position = $1`, nul.Position); n != 1 {
		t.Errorf("subject index rows of the NUL session = %d, want 1", n)
	}

	type row struct {
		Projection string
		Position   int64
		Tenant     string
		Type       string
		Reason     string
	}
	quarantine := func() []row {
		q, err := r.Quarantine(ctx, 0)
		w.must(err)
		var out []row
		for _, x := range q {
			if x.Error == "" || x.EventID == [16]byte{} {
				t.Errorf("quarantined %d without reason or event id: %+v", x.Position, x)
			}
			out = append(out, row{x.Projection, x.Position, x.Tenant, x.Type, x.Reason})
		}
		return out
	}
	wantQ := []row{
		{"reporting", garbage.Position, w.tenant, "session.created", "the payload does not decode"},
		{"reporting", unknown.Position, w.tenant, "session.teleported", "an event type this version does not know"},
	}
	if diff := cmp.Diff(wantQ, quarantine()); diff != "" {
		t.Errorf("quarantine (-want +got):\n%s", diff)
	}
	st, err := r.Status(ctx)
	w.must(err)
	for _, s := range st {
		switch s.Name {
		case "reporting":
			if want := fmt.Sprintf("position %d (session.teleported): an event type this version does not know", unknown.Position); s.Quarantined != 2 || s.LastError != want || s.Lag != 0 {
				t.Errorf("reporting status = %+v, want 2 quarantined, the last about session.teleported, no lag", s)
			}
		case "subjects":
			if s.Quarantined != 0 || s.LastError != "" || s.Lag != 0 {
				t.Errorf("subjects status = %+v, want nothing quarantined, no lag", s)
			}
		}
	}
	_ = newer
	metrics := `
# HELP vigil_projection_quarantined_events Events the projection could not apply and set aside in projection_quarantine since its last rebuild; alert when above 0.
# TYPE vigil_projection_quarantined_events gauge
vigil_projection_quarantined_events{projection="reporting"} 2
vigil_projection_quarantined_events{projection="subjects"} 0
`
	if err := testutil.CollectAndCompare(r, strings.NewReader(metrics), "vigil_projection_quarantined_events"); err != nil {
		t.Error(err)
	}

	// A rebuild tries the quarantined events again (and sets them aside
	// again, as they still cannot be applied), with the same rows.
	before := dump(t, w)
	for _, p := range r.Projections() {
		if _, err := r.Rebuild(ctx, p, nil); err != nil {
			t.Fatalf("rebuild %s: %v", p.Name(), err)
		}
	}
	if diff := cmp.Diff(before, dump(t, w)); diff != "" {
		t.Errorf("rebuild changed the rows (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(wantQ, quarantine()); diff != "" {
		t.Errorf("quarantine after the rebuild (-want +got):\n%s", diff)
	}
}

// scripted is a projection that fails at given positions with given errors.
type scripted struct {
	name    string
	fail    map[int64]error
	applied []int64
}

func (s *scripted) Name() string { return s.name }

func (s *scripted) Reset(context.Context, pgx.Tx) error { s.applied = nil; return nil }

func (s *scripted) Apply(ctx context.Context, tx pgx.Tx, evs []domain.Event) error {
	for _, e := range evs {
		if err := s.fail[e.Position]; err != nil {
			return err
		}
	}
	for _, e := range evs {
		s.applied = append(s.applied, e.Position)
	}
	return nil
}

// An outage is retried, never quarantined: only errors that belong to the
// event set it aside.
func TestOutageIsRetriedNotQuarantined(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	var pos []int64
	for i := range 4 {
		pos = append(pos, w.appendRaw(sessionCreated(t, w.tenant, fmt.Sprintf("%032x", i+1), "web")).Position)
	}
	outage := &pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}
	for _, tc := range []struct {
		name       string
		err        error
		quarantine bool
	}{
		{"admin shutdown", outage, false},
		{"connection closed", fmt.Errorf("apply: %w", pgconn.ErrConnClosed), false},
		{"store unavailable", fmt.Errorf("open key: %w", domain.ErrUnavailable), false},
		{"unavailable poison", fmt.Errorf("%w: %w", projections.ErrPoison, domain.ErrUnavailable), false},
		{"unexpected error", errors.New("boom"), false},
		{"poison", fmt.Errorf("bad payload: %w", projections.ErrPoison), true},
		{"data exception", &pgconn.PgError{Code: "22021", Message: "invalid byte sequence"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &scripted{name: "scripted-" + strings.ReplaceAll(tc.name, " ", "-"), fail: map[int64]error{pos[1]: tc.err}}
			r := newRunner(w, 10, p)
			err := r.CatchUp(ctx)
			q, qerr := r.Quarantine(ctx, 0)
			w.must(qerr)
			st, serr := r.Status(ctx)
			w.must(serr)
			if !tc.quarantine {
				if !errors.Is(err, tc.err) {
					t.Errorf("catch up = %v, want %v", err, tc.err)
				}
				if len(q) != 0 || st[0].Position != 0 {
					t.Errorf("after %v: quarantine %v, position %d; want none, 0", tc.err, q, st[0].Position)
				}
				return
			}
			if err != nil {
				t.Fatalf("catch up: %v", err)
			}
			if len(q) != 1 || q[0].Position != pos[1] || !strings.Contains(q[0].Error, tc.err.Error()) {
				t.Errorf("quarantine = %+v, want position %d", q, pos[1])
			}
			var want []int64 // every event but the poison one (the tenant's creation came first)
			for i := int64(1); i <= pos[3]; i++ {
				if i != pos[1] {
					want = append(want, i)
				}
			}
			if diff := cmp.Diff(want, p.applied); diff != "" {
				t.Errorf("applied (-want +got):\n%s", diff)
			}
			if st[0].Quarantined != 1 || st[0].Lag != 0 {
				t.Errorf("status = %+v", st[0])
			}
		})
	}
}
