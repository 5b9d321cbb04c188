package eventstoredb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"strconv"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

// Event types of the store's own records. Vigil events keep their catalogue
// type (session.chat_message, ...).
const (
	genesisType    = "vigil.order.genesis"
	orderType      = "vigil.order"
	checkpointType = "vigil.checkpoint"
)

// Format versions of the JSON documents below. A decoder accepts only the
// versions it knows.
const (
	metaFormat       = 1
	orderFormat      = 1
	checkpointFormat = 1
)

// idSpace is the UUID namespace of the ids of the store's own records, which
// are derived from what they record so that a repeated write of the same
// record is an idempotent no-op in KurrentDB.
var idSpace = uuid.MustParse("6f0b1c7e-3a52-4d0c-9a57-5d1e0c8b9a41")

// orderEventID is the KurrentDB event id of the order record of position in
// prefix's namespace (position 0 is the genesis record).
func orderEventID(prefix string, position int64) uuid.UUID {
	return uuid.NewSHA1(idSpace, []byte(prefix+"\x00order\x00"+strconv.FormatInt(position, 10)))
}

// checkpointEventID is the KurrentDB event id of tenant's checkpoint of size.
func checkpointEventID(prefix, tenant string, size int64) uuid.UUID {
	return uuid.NewSHA1(idSpace, []byte(prefix+"\x00checkpoint\x00"+strconv.Itoa(len(tenant))+":"+tenant+"\x00"+strconv.FormatInt(size, 10)))
}

// errMalformed wraps ledger.ErrMalformed with what was being decoded.
func errMalformed(what string, err error) error {
	if err == nil {
		return fmt.Errorf("%s: %w", what, ledger.ErrMalformed)
	}
	return fmt.Errorf("%s: %v: %w", what, err, ledger.ErrMalformed)
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data.
func decodeStrict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data")
	}
	return nil
}

// eventMeta is the KurrentDB user metadata of a Vigil event: the envelope
// fields that are not the event's id, type and data. See docs/kurrentdb.md.
type eventMeta struct {
	Format     int    `json:"vigil"`
	Tenant     string `json:"tenant"`
	Stream     string `json:"stream"`
	Version    int64  `json:"version"`
	Schema     int    `json:"schema"`
	OccurredUS *int64 `json:"occurred_us"`
	RecordedUS *int64 `json:"recorded_us"`
	ActorKind  string `json:"actor_kind"`
	ActorID    string `json:"actor_id"`
	Sealed     []byte `json:"sealed"` // ledger.EncodeSealed, base64 in JSON
	Leaf       []byte `json:"leaf"`   // the RFC 6962 leaf hash, base64 in JSON
}

// toEventData returns the KurrentDB event for e, whose version and leaf hash
// are set. The data is e.Data byte for byte (content type JSON when it is
// valid JSON, so that KurrentDB's UI shows it, binary otherwise).
func toEventData(e *domain.Event) (esdb.EventData, error) {
	if e.ID == uuid.Nil || e.Version < 1 || e.Type == "" || e.LeafHash == [32]byte{} {
		return esdb.EventData{}, fmt.Errorf("event %s: id, version, type or leaf hash missing", e.ID)
	}
	occurred, recorded := e.OccurredAt.UnixMicro(), e.RecordedAt.UnixMicro()
	meta, err := json.Marshal(eventMeta{
		Format: metaFormat, Tenant: e.Tenant, Stream: e.Stream, Version: e.Version, Schema: e.Schema,
		OccurredUS: &occurred, RecordedUS: &recorded,
		ActorKind: string(e.Actor.Kind), ActorID: e.Actor.ID,
		Sealed: ledger.EncodeSealed(e.Sealed), Leaf: e.LeafHash[:],
	})
	if err != nil {
		return esdb.EventData{}, fmt.Errorf("event %s: metadata: %w", e.ID, err)
	}
	ct := esdb.ContentTypeBinary
	if len(e.Data) > 0 && json.Valid(e.Data) {
		ct = esdb.ContentTypeJson
	}
	return esdb.EventData{EventID: e.ID, EventType: e.Type, ContentType: ct, Data: e.Data, Metadata: meta}, nil
}

// decodeMeta parses and checks an event's metadata on its own.
func decodeMeta(b []byte) (eventMeta, error) {
	var m eventMeta
	if err := decodeStrict(b, &m); err != nil {
		return m, errMalformed("event metadata", err)
	}
	switch {
	case m.Format != metaFormat:
		return m, errMalformed("event metadata", fmt.Errorf("format %d, want %d", m.Format, metaFormat))
	case m.Tenant == "" || m.Stream == "":
		return m, errMalformed("event metadata", errors.New("tenant or stream missing"))
	case m.Version < 1 || m.Schema < 1:
		return m, errMalformed("event metadata", fmt.Errorf("version %d, schema %d", m.Version, m.Schema))
	case m.OccurredUS == nil || m.RecordedUS == nil:
		return m, errMalformed("event metadata", errors.New("times missing"))
	case m.ActorKind == "":
		return m, errMalformed("event metadata", errors.New("actor missing"))
	case len(m.Leaf) != tlog.HashSize:
		return m, errMalformed("event metadata", fmt.Errorf("leaf hash of %d bytes", len(m.Leaf)))
	case len(m.Sealed) == 0:
		return m, errMalformed("event metadata", errors.New("sealed fields missing"))
	}
	return m, nil
}

// checkRecorded decodes the metadata of a recorded event of prefix's
// namespace and checks it against where KurrentDB holds the event: the
// stream name must encode the same tenant and stream, and the version must be
// the stream revision plus one.
func checkRecorded(prefix string, ev *esdb.RecordedEvent) (eventMeta, error) {
	tenant, stream, ok, err := parseEventStream(prefix, ev.StreamID)
	if err != nil {
		return eventMeta{}, errMalformed("event "+ev.EventID.String(), err)
	}
	if !ok {
		return eventMeta{}, fmt.Errorf("event %s: stream %q is not in the %q namespace", ev.EventID, ev.StreamID, prefix)
	}
	m, err := decodeMeta(ev.UserMetadata)
	if err != nil {
		return m, fmt.Errorf("event %s at revision %d of %s: %w", ev.EventID, ev.EventNumber, ev.StreamID, err)
	}
	if m.Tenant != tenant || m.Stream != stream {
		return m, errMalformed(fmt.Sprintf("event %s of %s", ev.EventID, ev.StreamID), fmt.Errorf("metadata names tenant %q stream %q", m.Tenant, m.Stream))
	}
	if ev.EventNumber >= 1<<62 || m.Version != int64(ev.EventNumber)+1 {
		return m, errMalformed(fmt.Sprintf("event %s of %s", ev.EventID, ev.StreamID), fmt.Errorf("version %d at revision %d", m.Version, ev.EventNumber))
	}
	if ev.EventType == "" || ev.EventID == uuid.Nil {
		return m, errMalformed(fmt.Sprintf("event at revision %d of %s", ev.EventNumber, ev.StreamID), errors.New("no type or id"))
	}
	return m, nil
}

// fromRecorded returns the Vigil event that ev holds, with its leaf hash as
// stored and without position and seq (which come from the order stream),
// and the sealed fields' stored bytes. With open, e.Sealed is decoded too,
// and a malformed sealed encoding is an error; without, e.Sealed is nil.
func fromRecorded(prefix string, ev *esdb.RecordedEvent, open bool) (domain.Event, []byte, error) {
	m, err := checkRecorded(prefix, ev)
	if err != nil {
		return domain.Event{}, nil, err
	}
	e := domain.Event{
		ID: ev.EventID, Tenant: m.Tenant, Stream: m.Stream, Version: m.Version,
		Type: ev.EventType, Schema: m.Schema,
		OccurredAt: time.UnixMicro(*m.OccurredUS).UTC(),
		RecordedAt: time.UnixMicro(*m.RecordedUS).UTC(),
		Actor:      domain.Actor{Kind: domain.ActorKind(m.ActorKind), ID: m.ActorID},
		Data:       ev.Data,
	}
	copy(e.LeafHash[:], m.Leaf)
	if open {
		if e.Sealed, err = ledger.DecodeSealed(m.Sealed); err != nil {
			return domain.Event{}, nil, fmt.Errorf("event %s of %s: %w", ev.EventID, ev.StreamID, err)
		}
	}
	return e, m.Sealed, nil
}

// appendSize is what one event counts against the append size limit:
// its data, metadata and type, and a margin for the id and framing.
func appendSize(d *esdb.EventData) int {
	return len(d.Data) + len(d.Metadata) + len(d.EventType) + 64
}

// orderRecord says where the event at one global position is and what it
// adds to its tenant's Merkle log. Record k of the order stream (revision k)
// is position k; revision 0 is the genesis record.
type orderRecord struct {
	Position int64
	All      esdb.Position // the event's position in $all
	Tenant   string
	Stream   string // the Vigil stream
	Revision uint64 // the event's revision in its KurrentDB stream (version - 1)
	ID       uuid.UUID
	Seq      int64
	// Hashes are tlog's stored hashes for the leaf, from index
	// tlog.StoredHashIndex(0, Seq) on; Hashes[0] is the leaf hash.
	Hashes []tlog.Hash
}

// key returns where the record's event is.
func (r *orderRecord) key(prefix string) eventKey {
	return eventKey{eventStream(prefix, r.Tenant, r.Stream), r.Revision}
}

// eventKey names one event by its KurrentDB stream and revision.
type eventKey struct {
	stream   string
	revision uint64
}

// storedHashCount returns how many stored hashes tlog keeps for leaf seq: the
// leaf hash, and one per complete subtree that the leaf completes.
func storedHashCount(seq int64) int { return 1 + bits.TrailingZeros64(^uint64(seq)) }

type orderJSON struct {
	Format   int       `json:"vigil_order"`
	Position int64     `json:"position"`
	Commit   uint64    `json:"commit"`
	Prepare  uint64    `json:"prepare"`
	Tenant   string    `json:"tenant"`
	Stream   string    `json:"stream"`
	Revision uint64    `json:"revision"`
	ID       uuid.UUID `json:"id"`
	Seq      int64     `json:"seq"`
	Hashes   [][]byte  `json:"hashes"`
}

// encodeOrderRecord returns the KurrentDB event of r in prefix's order stream.
func encodeOrderRecord(prefix string, r *orderRecord) (esdb.EventData, error) {
	hs := make([][]byte, len(r.Hashes))
	for i := range r.Hashes {
		hs[i] = r.Hashes[i][:]
	}
	b, err := json.Marshal(orderJSON{
		Format: orderFormat, Position: r.Position, Commit: r.All.Commit, Prepare: r.All.Prepare,
		Tenant: r.Tenant, Stream: r.Stream, Revision: r.Revision, ID: r.ID, Seq: r.Seq, Hashes: hs,
	})
	if err != nil {
		return esdb.EventData{}, fmt.Errorf("order record %d: %w", r.Position, err)
	}
	return esdb.EventData{EventID: orderEventID(prefix, r.Position), EventType: orderType, ContentType: esdb.ContentTypeJson, Data: b}, nil
}

// decodeOrderRecord parses the data of an order record and checks its shape
// (not its place in the stream, nor its hashes against the tree).
func decodeOrderRecord(b []byte) (orderRecord, error) {
	var j orderJSON
	if err := decodeStrict(b, &j); err != nil {
		return orderRecord{}, errMalformed("order record", err)
	}
	switch {
	case j.Format != orderFormat:
		return orderRecord{}, errMalformed("order record", fmt.Errorf("format %d, want %d", j.Format, orderFormat))
	case j.Position < 1 || j.Seq < 0:
		return orderRecord{}, errMalformed("order record", fmt.Errorf("position %d, seq %d", j.Position, j.Seq))
	case j.Tenant == "" || j.Stream == "" || j.ID == uuid.Nil:
		return orderRecord{}, errMalformed(fmt.Sprintf("order record %d", j.Position), errors.New("tenant, stream or id missing"))
	case len(j.Hashes) != storedHashCount(j.Seq):
		return orderRecord{}, errMalformed(fmt.Sprintf("order record %d", j.Position), fmt.Errorf("%d hashes for seq %d, want %d", len(j.Hashes), j.Seq, storedHashCount(j.Seq)))
	}
	r := orderRecord{
		Position: j.Position, All: esdb.Position{Commit: j.Commit, Prepare: j.Prepare},
		Tenant: j.Tenant, Stream: j.Stream, Revision: j.Revision, ID: j.ID, Seq: j.Seq,
		Hashes: make([]tlog.Hash, len(j.Hashes)),
	}
	for i, h := range j.Hashes {
		if len(h) != tlog.HashSize {
			return orderRecord{}, errMalformed(fmt.Sprintf("order record %d", j.Position), fmt.Errorf("hash %d of %d bytes", i, len(h)))
		}
		copy(r.Hashes[i][:], h)
	}
	return r, nil
}

// decodeOrderEvent decodes event revision of the order stream, which must be
// an order record of position revision.
func decodeOrderEvent(ev *esdb.RecordedEvent) (orderRecord, error) {
	if ev.EventType != orderType {
		return orderRecord{}, errMalformed(fmt.Sprintf("order stream revision %d", ev.EventNumber), fmt.Errorf("event type %q", ev.EventType))
	}
	r, err := decodeOrderRecord(ev.Data)
	if err != nil {
		return r, fmt.Errorf("order stream revision %d: %w", ev.EventNumber, err)
	}
	return r, nil
}

type genesisJSON struct {
	Format    int    `json:"vigil_order"`
	Prefix    string `json:"prefix"`
	CreatedAt string `json:"created_at"`
}

// encodeGenesis returns the first event of prefix's order stream. Its $all
// position is where the derivation of positions starts reading $all: every
// event of the namespace is appended after it.
func encodeGenesis(prefix string, now time.Time) esdb.EventData {
	b, _ := json.Marshal(genesisJSON{Format: orderFormat, Prefix: prefix, CreatedAt: now.UTC().Format(time.RFC3339Nano)})
	return esdb.EventData{EventID: orderEventID(prefix, 0), EventType: genesisType, ContentType: esdb.ContentTypeJson, Data: b}
}

// checkGenesis checks that ev is the genesis record of prefix's order stream.
func checkGenesis(prefix string, ev *esdb.RecordedEvent) error {
	var g genesisJSON
	if ev.EventNumber != 0 || ev.EventType != genesisType {
		return errMalformed("order stream genesis", fmt.Errorf("revision %d of type %q", ev.EventNumber, ev.EventType))
	}
	if err := decodeStrict(ev.Data, &g); err != nil {
		return errMalformed("order stream genesis", err)
	}
	if g.Format != orderFormat || g.Prefix != prefix {
		return errMalformed("order stream genesis", fmt.Errorf("format %d for prefix %q, want %d for %q", g.Format, g.Prefix, orderFormat, prefix))
	}
	return nil
}

type checkpointJSON struct {
	Format    int    `json:"vigil_checkpoint"`
	Tenant    string `json:"tenant"`
	Size      int64  `json:"size"`
	Root      []byte `json:"root"`
	Note      string `json:"note"`
	CreatedUS int64  `json:"created_us"`
}

// encodeCheckpoint returns the KurrentDB event of c.
func encodeCheckpoint(prefix string, c *ledger.Checkpoint) (esdb.EventData, error) {
	b, err := json.Marshal(checkpointJSON{
		Format: checkpointFormat, Tenant: c.Tenant, Size: c.Size, Root: c.Root[:],
		Note: string(c.Note), CreatedUS: c.CreatedAt.UnixMicro(),
	})
	if err != nil {
		return esdb.EventData{}, fmt.Errorf("checkpoint %s/%d: %w", c.Tenant, c.Size, err)
	}
	return esdb.EventData{EventID: checkpointEventID(prefix, c.Tenant, c.Size), EventType: checkpointType, ContentType: esdb.ContentTypeJson, Data: b}, nil
}

// decodeCheckpoint parses a checkpoint event of tenant's checkpoint stream.
func decodeCheckpoint(tenant string, ev *esdb.RecordedEvent) (ledger.Checkpoint, error) {
	var j checkpointJSON
	what := fmt.Sprintf("checkpoint at revision %d of %s", ev.EventNumber, ev.StreamID)
	if ev.EventType != checkpointType {
		return ledger.Checkpoint{}, errMalformed(what, fmt.Errorf("event type %q", ev.EventType))
	}
	if err := decodeStrict(ev.Data, &j); err != nil {
		return ledger.Checkpoint{}, errMalformed(what, err)
	}
	if j.Format != checkpointFormat || j.Tenant != tenant || j.Size < 0 || len(j.Root) != tlog.HashSize || j.Note == "" {
		return ledger.Checkpoint{}, errMalformed(what, fmt.Errorf("format %d, tenant %q, size %d, root of %d bytes", j.Format, j.Tenant, j.Size, len(j.Root)))
	}
	c := ledger.Checkpoint{Tenant: j.Tenant, Size: j.Size, Note: []byte(j.Note), CreatedAt: time.UnixMicro(j.CreatedUS).UTC()}
	copy(c.Root[:], j.Root)
	return c, nil
}

// posLess reports whether $all position a comes before b. $all is ordered by
// commit position, then prepare position.
func posLess(a, b esdb.Position) bool {
	return a.Commit < b.Commit || a.Commit == b.Commit && a.Prepare < b.Prepare
}

// orderRevision returns the revision of the order stream that records global
// position pos (1-based): the same number, as KurrentDB's unsigned revision.
func orderRevision(pos int64) (uint64, error) {
	if pos < 1 {
		return 0, fmt.Errorf("position %d: positions start at 1", pos)
	}
	return uint64(pos), nil
}

// expectedRevision maps an AppendRequest's ExpectedVersion (the number of
// events the stream must hold) to KurrentDB's expected revision (the
// 0-based revision of the stream's last event): ledger.NoStream to
// esdb.NoStream, version v > 0 to revision v-1, and ledger.AnyVersion to
// esdb.Any (which Commit never sends: it resolves AnyVersion to the stream's
// current version first, see docs/kurrentdb.md).
func expectedRevision(v int64) (esdb.ExpectedRevision, error) {
	switch {
	case v == ledger.AnyVersion:
		return esdb.Any{}, nil
	case v == ledger.NoStream:
		return esdb.NoStream{}, nil
	case v > 0:
		return esdb.Revision(uint64(v - 1)), nil
	}
	return nil, fmt.Errorf("expected version %d", v)
}
