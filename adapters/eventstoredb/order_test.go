package eventstoredb

import (
	"errors"
	"fmt"
	"testing"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

// hashStore is a tlog.HashReader over hashes kept in index order.
type hashStore []tlog.Hash

func (h hashStore) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x >= int64(len(h)) {
			return nil, fmt.Errorf("index %d not stored", x)
		}
		out[i] = h[x]
	}
	return out, nil
}

// synthAll returns a page of $all: n Vigil events of prefix "vigil" spread
// over tenants and streams, with events of other programs in between.
func synthAll(t *testing.T, n int) []*esdb.RecordedEvent {
	t.Helper()
	var out []*esdb.RecordedEvent
	pos := uint64(5000)
	revs := map[string]uint64{}
	add := func(ev *esdb.RecordedEvent) {
		pos += 137
		ev.Position = esdb.Position{Commit: pos, Prepare: pos}
		out = append(out, ev)
	}
	for i := 0; i < n; i++ {
		if i%4 == 1 {
			add(&esdb.RecordedEvent{EventID: uuid.New(), EventType: "order.placed", StreamID: "orders-1", Data: []byte("{}")})
			add(&esdb.RecordedEvent{EventID: uuid.New(), EventType: "$statsCollected", StreamID: "$stats-127.0.0.1:2113"})
		}
		if i%5 == 2 {
			add(&esdb.RecordedEvent{EventID: uuid.New(), EventType: orderType, StreamID: orderStream("vigil")})
		}
		e := sampleEvent(t)
		e.Tenant = []string{"a", "b-c", "a"}[i%3]
		e.Stream = domain.SessionStream(fmt.Sprintf("%032x", i%2))
		name := eventStream("vigil", e.Tenant, e.Stream)
		e.Version = int64(revs[name]) + 1
		e.Data = []byte(fmt.Sprintf(`{"i":%d}`, i))
		e.LeafHash = ledger.LeafHash(&e)
		d, err := toEventData(&e)
		if err != nil {
			t.Fatal(err)
		}
		add(recorded(name, revs[name], d))
		revs[name]++
	}
	return out
}

func TestDeriveMatchesTlog(t *testing.T) {
	evs := synthAll(t, 200)
	genesis := esdb.Position{Commit: 100, Prepare: 100}
	st := newOrderState(genesis)
	recs, err := st.derive("vigil", genesis, evs)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 200 {
		t.Fatalf("%d records for 200 Vigil events", len(recs))
	}
	stores := map[string]hashStore{}
	seqs := map[string]int64{}
	for i, r := range recs {
		if r.Position != int64(i+1) {
			t.Fatalf("record %d has position %d", i, r.Position)
		}
		if r.Seq != seqs[r.Tenant] {
			t.Fatalf("position %d: seq %d, want %d", r.Position, r.Seq, seqs[r.Tenant])
		}
		seqs[r.Tenant]++
		want, err := tlog.StoredHashesForRecordHash(r.Seq, r.Hashes[0], stores[r.Tenant])
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, r.Hashes); diff != "" {
			t.Fatalf("position %d: hashes differ from tlog's:\n%s", r.Position, diff)
		}
		stores[r.Tenant] = append(stores[r.Tenant], want...)
		if err := st.apply("vigil", &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(map[string]int64{"a": 133, "b-c": 67}, seqs); diff != "" {
		t.Error(diff)
	}
	// The tree of each tenant is tlog's.
	for tenant, hs := range stores {
		root, err := tlog.TreeHash(seqs[tenant], hs)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.tenants[tenant].f.Root(); got != root {
			t.Errorf("tenant %s: root %x, tlog says %x", tenant, got, root)
		}
	}
	if st.head != 200 || st.last != recs[199].All || len(st.ids) != 200 || len(st.dups) != 0 {
		t.Errorf("state after apply: head %d, %d ids, %d dups", st.head, len(st.ids), len(st.dups))
	}
}

// Whoever derives, in whatever pages, derives the same records: that is
// what lets processes race to extend the order stream.
func TestDeriveIsDeterministic(t *testing.T) {
	evs := synthAll(t, 60)
	genesis := esdb.Position{Commit: 100, Prepare: 100}
	once, err := newOrderState(genesis).derive("vigil", genesis, evs)
	if err != nil {
		t.Fatal(err)
	}
	for page := 1; page <= len(evs); page += 7 {
		st := newOrderState(genesis)
		var all []orderRecord
		for start := 0; start < len(evs); start += page {
			end := min(start+page, len(evs))
			// Each page starts at the last ordered position, inclusive,
			// as a $all read from it does.
			from := st.last
			in := evs[start:end]
			if start > 0 {
				in = append([]*esdb.RecordedEvent{evs[start-1]}, in...)
			}
			recs, err := st.derive("vigil", from, in)
			if err != nil {
				t.Fatal(err)
			}
			for i := range recs {
				if err := st.apply("vigil", &recs[i]); err != nil {
					t.Fatal(err)
				}
			}
			all = append(all, recs...)
		}
		if diff := cmp.Diff(once, all); diff != "" {
			t.Fatalf("pages of %d derive differently:\n%s", page, diff)
		}
	}
}

func TestDeriveSkipsWhatIsOrdered(t *testing.T) {
	evs := synthAll(t, 10)
	recs, err := newOrderState(esdb.Position{}).derive("vigil", evs[len(evs)-1].Position, evs)
	if err != nil || len(recs) != 0 {
		t.Fatalf("events at or before from ordered: %d, %v", len(recs), err)
	}
}

func TestDeriveRefusesForeignEventsInNamespace(t *testing.T) {
	evs := synthAll(t, 3)
	evs = append(evs, &esdb.RecordedEvent{
		EventID: uuid.New(), EventType: "x", StreamID: "vigil-a-session-1",
		Position: esdb.Position{Commit: 1 << 30, Prepare: 1 << 30}, UserMetadata: []byte(`{}`),
	})
	_, err := newOrderState(esdb.Position{}).derive("vigil", esdb.Position{}, evs)
	if !errors.Is(err, ErrInconsistent) {
		t.Fatalf("err = %v, want ErrInconsistent", err)
	}
}

// The same id appended twice (two processes racing with AnyVersion) gets two
// positions; lookups by place find each.
func TestDeriveKeepsRepeatedIDs(t *testing.T) {
	evs := synthAll(t, 4)
	dup := *evs[len(evs)-1]
	dup.EventNumber++
	e, _, err := fromRecorded("vigil", evs[len(evs)-1], true)
	if err != nil {
		t.Fatal(err)
	}
	e.Version++
	e.LeafHash = ledger.LeafHash(&e)
	d, _ := toEventData(&e)
	dup.UserMetadata = d.Metadata
	dup.Position = esdb.Position{Commit: 1 << 30, Prepare: 1 << 30}
	evs = append(evs, &dup)
	st := newOrderState(esdb.Position{})
	recs, err := st.derive("vigil", esdb.Position{}, evs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if err := st.apply("vigil", &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if len(recs) != 5 || len(st.dups) != 1 {
		t.Fatalf("%d records, %d dups", len(recs), len(st.dups))
	}
	first, _ := st.lookup(dup.EventID, eventKey{dup.StreamID, dup.EventNumber - 1})
	second, _ := st.lookup(dup.EventID, eventKey{dup.StreamID, dup.EventNumber})
	if first.pos != 4 || second.pos != 5 {
		t.Errorf("lookups give %d and %d, want 4 and 5", first.pos, second.pos)
	}
}

func TestApplyRefusesInconsistentRecords(t *testing.T) {
	evs := synthAll(t, 3)
	base, err := newOrderState(esdb.Position{}).derive("vigil", esdb.Position{}, evs)
	if err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(r []orderRecord){
		"PositionGap":   func(r []orderRecord) { r[1].Position = 3 },
		"SeqGap":        func(r []orderRecord) { r[2].Seq = 5 },
		"OtherTenant":   func(r []orderRecord) { r[2].Tenant = "zz" }, // seq 1 for a new tenant
		"TamperedLeaf":  func(r []orderRecord) { r[2].Hashes[0][0] ^= 1 },
		"TamperedNode":  func(r []orderRecord) { r[2].Hashes[1][0] ^= 1 },
		"AllBackwards":  func(r []orderRecord) { r[1].All = r[0].All },
		"HashesMissing": func(r []orderRecord) { r[2].Hashes = r[2].Hashes[:1] },
	} {
		t.Run(name, func(t *testing.T) {
			recs := make([]orderRecord, len(base))
			for i, r := range base {
				r.Hashes = append([]tlog.Hash(nil), r.Hashes...)
				recs[i] = r
			}
			mut(recs)
			st := newOrderState(esdb.Position{})
			var err error
			for i := range recs {
				if err = st.apply("vigil", &recs[i]); err != nil {
					break
				}
			}
			if !errors.Is(err, ErrInconsistent) {
				t.Fatalf("err = %v, want ErrInconsistent", err)
			}
		})
	}
}
