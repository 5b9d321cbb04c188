package eventstoredb

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

// sampleEvent returns a sealed event as Commit gets it, with version and
// leaf hash set.
func sampleEvent(t testing.TB) domain.Event {
	t.Helper()
	e := domain.Event{
		ID: uuid.Must(uuid.NewV7()), Tenant: "acme-eu", Stream: "session-0123456789abcdef0123456789abcdef",
		Version: 3, Type: "session.chat_message", Schema: 2,
		OccurredAt: time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC),
		RecordedAt: time.Date(2026, 3, 1, 12, 0, 1, 999999000, time.UTC),
		Actor:      domain.Actor{Kind: domain.ActorCustomer, ID: "c-1"},
		Data:       json.RawMessage(`{"from":"customer","z":1}`),
		Sealed: []domain.SealedField{
			{Name: "text", Subject: "session:0123", KeyID: "k1", Nonce: []byte("123456789012"), Ciphertext: []byte{0, 1, 2, 255}},
			{Name: "ip", Subject: "session:0123", KeyID: "k1", Nonce: []byte("abcdefghijkl"), Ciphertext: []byte("x")},
		},
	}
	e.LeafHash = ledger.LeafHash(&e)
	return e
}

// recorded is what KurrentDB gives back for d appended as revision rev of
// stream.
func recorded(stream string, rev uint64, d esdb.EventData) *esdb.RecordedEvent {
	ct := "application/octet-stream"
	if d.ContentType == esdb.ContentTypeJson {
		ct = "application/json"
	}
	return &esdb.RecordedEvent{
		EventID: d.EventID, EventType: d.EventType, ContentType: ct, StreamID: stream,
		EventNumber: rev, Position: esdb.Position{Commit: 4242, Prepare: 4242},
		Data: d.Data, UserMetadata: d.Metadata,
	}
}

func TestEventRoundTrip(t *testing.T) {
	e := sampleEvent(t)
	d, err := toEventData(&e)
	if err != nil {
		t.Fatal(err)
	}
	if d.EventID != e.ID || d.EventType != e.Type || string(d.Data) != string(e.Data) || d.ContentType != esdb.ContentTypeJson {
		t.Fatalf("event data %+v", d)
	}
	ev := recorded(eventStream("vigil", e.Tenant, e.Stream), 2, d)
	for _, open := range []bool{true, false} {
		got, sealed, err := fromRecorded("vigil", ev, open)
		if err != nil {
			t.Fatal(err)
		}
		want := e
		if !open {
			want.Sealed = nil
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("open=%v (-sent +read):\n%s", open, diff)
		}
		if string(sealed) != string(ledger.EncodeSealed(e.Sealed)) {
			t.Error("sealed bytes changed")
		}
		// The event hashes as it did before the trip.
		if ledger.LeafHash(&got) != e.LeafHash && open {
			t.Error("leaf hash of the read event differs")
		}
		if tlog.RecordHash(ledger.AppendLeaf(nil, &got, sealed)) != e.LeafHash {
			t.Error("leaf of the stored bytes differs")
		}
	}
}

func TestEventTimesKeepMicroseconds(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(2026, 1, 2, 3, 4, 5, 999999000, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 1000, time.UTC), // before 1970
		time.UnixMicro(0).UTC(),
		time.Date(2026, 1, 2, 3, 4, 5, 6000, time.FixedZone("CET", 3600)),
	} {
		e := sampleEvent(t)
		e.OccurredAt, e.RecordedAt = ts, ts.Add(time.Microsecond)
		d, err := toEventData(&e)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := fromRecorded("vigil", recorded(eventStream("vigil", e.Tenant, e.Stream), 2, d), true)
		if err != nil {
			t.Fatal(err)
		}
		if !got.OccurredAt.Equal(ts) || !got.RecordedAt.Equal(ts.Add(time.Microsecond)) || got.OccurredAt.Location() != time.UTC {
			t.Errorf("%v came back as %v / %v", ts, got.OccurredAt, got.RecordedAt)
		}
	}
}

func TestNonJSONDataIsBinary(t *testing.T) {
	e := sampleEvent(t)
	e.Data = []byte("not json")
	e.LeafHash = ledger.LeafHash(&e)
	d, err := toEventData(&e)
	if err != nil {
		t.Fatal(err)
	}
	if d.ContentType != esdb.ContentTypeBinary {
		t.Error("non-JSON data sent as JSON")
	}
	got, _, err := fromRecorded("vigil", recorded(eventStream("vigil", e.Tenant, e.Stream), 2, d), true)
	if err != nil || string(got.Data) != "not json" {
		t.Fatalf("%q, %v", got.Data, err)
	}
}

func TestToEventDataRefusesIncomplete(t *testing.T) {
	for name, mut := range map[string]func(*domain.Event){
		"NoID":      func(e *domain.Event) { e.ID = uuid.Nil },
		"NoVersion": func(e *domain.Event) { e.Version = 0 },
		"NoType":    func(e *domain.Event) { e.Type = "" },
		"NoLeaf":    func(e *domain.Event) { e.LeafHash = [32]byte{} },
	} {
		t.Run(name, func(t *testing.T) {
			e := sampleEvent(t)
			mut(&e)
			if _, err := toEventData(&e); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// metaJSON returns the metadata of sampleEvent as a map, for mutation.
func metaJSON(t *testing.T) map[string]any {
	t.Helper()
	e := sampleEvent(t)
	d, err := toEventData(&e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(d.Metadata, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMalformedMetadataRefused(t *testing.T) {
	e := sampleEvent(t)
	stream := eventStream("vigil", e.Tenant, e.Stream)
	mutate := func(f func(m map[string]any)) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			m := metaJSON(t)
			f(m)
			b, _ := json.Marshal(m)
			return b
		}
	}
	raw := func(s string) func(*testing.T) []byte { return func(*testing.T) []byte { return []byte(s) } }
	cases := map[string]func(*testing.T) []byte{
		"Empty":          raw(""),
		"NotJSON":        raw("{"),
		"Array":          raw("[]"),
		"Trailing":       func(t *testing.T) []byte { b, _ := json.Marshal(metaJSON(t)); return append(b, "{}"...) },
		"UnknownField":   mutate(func(m map[string]any) { m["extra"] = 1 }),
		"Format2":        mutate(func(m map[string]any) { m["vigil"] = 2 }),
		"NoTenant":       mutate(func(m map[string]any) { delete(m, "tenant") }),
		"OtherTenant":    mutate(func(m map[string]any) { m["tenant"] = "globex" }),
		"OtherStream":    mutate(func(m map[string]any) { m["stream"] = "session-x" }),
		"VersionOff":     mutate(func(m map[string]any) { m["version"] = 4 }),
		"NoSchema":       mutate(func(m map[string]any) { delete(m, "schema") }),
		"NoOccurred":     mutate(func(m map[string]any) { delete(m, "occurred_us") }),
		"TimeNotNumber":  mutate(func(m map[string]any) { m["recorded_us"] = "soon" }),
		"NoActor":        mutate(func(m map[string]any) { m["actor_kind"] = "" }),
		"ShortLeaf":      mutate(func(m map[string]any) { m["leaf"] = "AAAA" }),
		"LeafNotBase64":  mutate(func(m map[string]any) { m["leaf"] = "!!" }),
		"NoSealed":       mutate(func(m map[string]any) { delete(m, "sealed") }),
		"SealedNotValid": mutate(func(m map[string]any) { m["sealed"] = "AAAA" }), // decodes, but not the sealed encoding
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			d, _ := toEventData(&e)
			d.Metadata = mk(t)
			_, _, err := fromRecorded("vigil", recorded(stream, 2, d), true)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ledger.ErrMalformed) {
				t.Errorf("%v does not wrap ledger.ErrMalformed", err)
			}
		})
	}
	// A malformed sealed encoding does not stop a scan (open=false): the
	// verifier hashes the bytes and names the event.
	d, _ := toEventData(&e)
	d.Metadata = mutate(func(m map[string]any) { m["sealed"] = "AAAA" })(t)
	if _, sealed, err := fromRecorded("vigil", recorded(stream, 2, d), false); err != nil || len(sealed) != 3 {
		t.Errorf("scan of a bad sealed encoding: %v", err)
	}
}

func TestRecordedOutsideNamespace(t *testing.T) {
	e := sampleEvent(t)
	d, _ := toEventData(&e)
	for _, stream := range []string{"other-acme-session-1", "vigil-a%2db-x", "vigil_order"} {
		if _, _, err := fromRecorded("vigil", recorded(stream, 2, d), true); err == nil {
			t.Errorf("event of %q accepted", stream)
		}
	}
}

func TestOrderRecordRoundTrip(t *testing.T) {
	for _, seq := range []int64{0, 1, 2, 3, 6, 7, 1023, 1 << 40} {
		r := orderRecord{
			Position: 77, All: esdb.Position{Commit: 1 << 40, Prepare: 1<<40 - 5},
			Tenant: "a-b", Stream: "session-1", Revision: 9, ID: uuid.New(), Seq: seq,
		}
		for i := 0; i < storedHashCount(seq); i++ {
			r.Hashes = append(r.Hashes, tlog.Hash{byte(i + 1), 2, 3})
		}
		d, err := encodeOrderRecord("vigil", &r)
		if err != nil {
			t.Fatal(err)
		}
		if d.EventType != orderType || d.EventID != orderEventID("vigil", 77) {
			t.Fatalf("event %+v", d)
		}
		got, err := decodeOrderEvent(&esdb.RecordedEvent{EventType: d.EventType, Data: d.Data, EventNumber: 77})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(r, got); diff != "" {
			t.Errorf("seq %d (-want +got):\n%s", seq, diff)
		}
	}
}

func TestStoredHashCountMatchesTlog(t *testing.T) {
	var f ledger.Frontier
	for seq := int64(0); seq < 300; seq++ {
		hs := f.Append(nil, tlog.Hash{byte(seq)})
		if len(hs) != storedHashCount(seq) {
			t.Fatalf("seq %d: frontier stores %d hashes, storedHashCount says %d", seq, len(hs), storedHashCount(seq))
		}
		if tlog.StoredHashIndex(0, seq)+int64(len(hs)) != tlog.StoredHashIndex(0, seq+1) {
			t.Fatalf("seq %d: hashes do not reach the next leaf's index", seq)
		}
	}
}

func TestMalformedOrderRecordRefused(t *testing.T) {
	r := orderRecord{Position: 5, Tenant: "t", Stream: "s", ID: uuid.New(), Seq: 1, Hashes: []tlog.Hash{{1}, {2}}}
	good, err := encodeOrderRecord("vigil", &r)
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(m map[string]any)) []byte {
		var m map[string]any
		_ = json.Unmarshal(good.Data, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	cases := map[string][]byte{
		"NotJSON":       []byte("x"),
		"Unknown":       mutate(func(m map[string]any) { m["x"] = 1 }),
		"Format":        mutate(func(m map[string]any) { m["vigil_order"] = 9 }),
		"Position0":     mutate(func(m map[string]any) { m["position"] = 0 }),
		"NegativeSeq":   mutate(func(m map[string]any) { m["seq"] = -1 }),
		"NoTenant":      mutate(func(m map[string]any) { m["tenant"] = "" }),
		"NilID":         mutate(func(m map[string]any) { m["id"] = uuid.Nil.String() }),
		"BadID":         mutate(func(m map[string]any) { m["id"] = "x" }),
		"TooFewHashes":  mutate(func(m map[string]any) { m["hashes"] = m["hashes"].([]any)[:1] }),
		"TooManyHashes": mutate(func(m map[string]any) { m["hashes"] = append(m["hashes"].([]any), m["hashes"].([]any)[0]) }),
		"ShortHash":     mutate(func(m map[string]any) { m["hashes"].([]any)[1] = "AAAA" }),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeOrderEvent(&esdb.RecordedEvent{EventType: orderType, Data: data, EventNumber: 5}); !errors.Is(err, ledger.ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
	if _, err := decodeOrderEvent(&esdb.RecordedEvent{EventType: "other", Data: good.Data}); err == nil {
		t.Error("order record of another type accepted")
	}
}

func TestGenesis(t *testing.T) {
	d := encodeGenesis("vigil", time.Now())
	ev := &esdb.RecordedEvent{EventType: d.EventType, Data: d.Data}
	if err := checkGenesis("vigil", ev); err != nil {
		t.Fatal(err)
	}
	if err := checkGenesis("other", ev); err == nil {
		t.Error("genesis of another prefix accepted")
	}
	ev.EventNumber = 1
	if err := checkGenesis("vigil", ev); err == nil {
		t.Error("genesis at revision 1 accepted")
	}
	if orderEventID("vigil", 0) != d.EventID || orderEventID("vigil", 0) == orderEventID("vigil2", 0) || orderEventID("vigil", 1) == orderEventID("vigil", 2) {
		t.Error("order event ids are not one per prefix and position")
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	c := ledger.Checkpoint{Tenant: "a-b", Size: 37, Root: tlog.Hash{9, 8, 7}, Note: []byte("vigil.test/a-b\n37\nroot\n\n— sig\n"), CreatedAt: time.Date(2026, 5, 4, 3, 2, 1, 123456000, time.UTC)}
	d, err := encodeCheckpoint("vigil", &c)
	if err != nil {
		t.Fatal(err)
	}
	ev := &esdb.RecordedEvent{EventType: d.EventType, Data: d.Data, StreamID: checkpointStream("vigil", "a-b")}
	got, err := decodeCheckpoint("a-b", ev)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := decodeCheckpoint("other", ev); err == nil {
		t.Error("checkpoint of another tenant accepted")
	}
	ev.Data = []byte(strings.Replace(string(d.Data), `"size":37`, `"size":-1`, 1))
	if _, err := decodeCheckpoint("a-b", ev); err == nil {
		t.Error("negative size accepted")
	}
	if checkpointEventID("vigil", "a", 1) == checkpointEventID("vigil", "a", 2) || checkpointEventID("vigil", "a\x001", 2) == checkpointEventID("vigil", "a", 12) {
		t.Error("checkpoint event ids collide")
	}
}

func TestExpectedRevision(t *testing.T) {
	cases := []struct {
		version int64
		want    esdb.ExpectedRevision
		err     bool
	}{
		{ledger.AnyVersion, esdb.Any{}, false},
		{ledger.NoStream, esdb.NoStream{}, false},
		{1, esdb.Revision(0), false},
		{2, esdb.Revision(1), false},
		{1 << 40, esdb.Revision(1<<40 - 1), false},
		{-2, nil, true},
	}
	for _, c := range cases {
		got, err := expectedRevision(c.version)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("expectedRevision(%d) = %#v, %v; want %#v", c.version, got, err, c.want)
		}
	}
}

func TestPositions(t *testing.T) {
	a := esdb.Position{Commit: 10, Prepare: 5}
	for _, c := range []struct {
		b    esdb.Position
		less bool
	}{
		{esdb.Position{Commit: 10, Prepare: 6}, true},
		{esdb.Position{Commit: 11, Prepare: 0}, true},
		{esdb.Position{Commit: 10, Prepare: 5}, false},
		{esdb.Position{Commit: 9, Prepare: 100}, false},
	} {
		if posLess(a, c.b) != c.less {
			t.Errorf("posLess(%v, %v) = %v", a, c.b, !c.less)
		}
	}
	if r, err := orderRevision(1); err != nil || r != 1 {
		t.Errorf("orderRevision(1) = %d, %v", r, err)
	}
	if _, err := orderRevision(0); err == nil {
		t.Error("position 0 has a revision")
	}
}

func TestGenesisStart(t *testing.T) {
	known := esdb.Position{Commit: 42, Prepare: 42}
	if genesisStart(known) != known {
		t.Error("a known position was changed")
	}
	for _, p := range []esdb.Position{{Commit: math.MaxUint64, Prepare: math.MaxUint64}, {Commit: math.MaxUint64, Prepare: 7}} {
		if genesisStart(p) != (esdb.Position{}) {
			t.Errorf("unknown position %v kept", p)
		}
	}
}
