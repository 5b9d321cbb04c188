// Package domain holds Vigil's core vocabulary: the event envelope, the
// catalogue of events with their stable names and schema versions, the
// aggregates (tenant, group, technician, session) with the rules they
// enforce, and the typed errors that the boundary maps to codes.
//
// The package is pure: it performs no I/O and imports nothing else of Vigil.
// Personal fields are marked on the payload structs with the struct tag
// `vigil:"sealed"`; the ledger encrypts them under the event's data subject
// before anything is stored.
package domain

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// ActorKind says who caused an event.
type ActorKind string

// The kinds of actor an event may record.
const (
	ActorTechnician ActorKind = "technician"
	ActorCustomer   ActorKind = "customer"
	ActorAdmin      ActorKind = "admin"
	ActorSystem     ActorKind = "system"
	ActorRelay      ActorKind = "relay"
	ActorAPIKey     ActorKind = "api_key"
)

// Valid reports whether k is one of the known actor kinds.
func (k ActorKind) Valid() bool {
	switch k {
	case ActorTechnician, ActorCustomer, ActorAdmin, ActorSystem, ActorRelay, ActorAPIKey:
		return true
	}
	return false
}

// Actor identifies who caused an event.
type Actor struct {
	Kind ActorKind `json:"kind"`
	ID   string    `json:"id,omitempty"`
}

// Subject names a data subject: the owner of a data key under which personal
// fields are sealed. A technician is one subject; a session, which covers its
// customer, is another. The string forms are "technician:<id>" and
// "session:<guid>".
type Subject string

// TechnicianSubject returns the subject of technician id.
func TechnicianSubject(id string) Subject { return Subject("technician:" + id) }

// SessionSubject returns the subject of the session with the given GUID.
func SessionSubject(guid string) Subject { return Subject("session:" + guid) }

// ChatSubject returns the subject of a session's chat log. Chat text is
// sealed under its own key, apart from the rest of the session, so that the
// chat log alone can be erased (as the whitepaper's product offers); erasing
// the session erases both.
func ChatSubject(guid string) Subject { return Subject("session-chat:" + guid) }

// ChatSubjectOf returns the chat subject of a session stream.
func ChatSubjectOf(stream string) (Subject, bool) {
	if !strings.HasPrefix(stream, SessionStreamPrefix) {
		return "", false
	}
	return ChatSubject(strings.TrimPrefix(stream, SessionStreamPrefix)), true
}

// KeySubjects returns every subject whose data key erasing s destroys: a
// session's own key and its chat log's; a technician's key.
func KeySubjects(s Subject) []Subject {
	if guid, ok := strings.CutPrefix(string(s), "session:"); ok {
		return []Subject{s, ChatSubject(guid)}
	}
	return []Subject{s}
}

// ParseSubject checks that s has the form "technician:<id>" or
// "session:<guid>" and returns it; it returns an error of code invalid
// otherwise.
func ParseSubject(s string) (Subject, error) {
	kind, id, ok := strings.Cut(s, ":")
	if !ok || id == "" || (kind != "technician" && kind != "session") {
		return "", Errorf(CodeInvalid, "subject %q: want technician:<id> or session:<guid>", s)
	}
	return Subject(s), nil
}

// Stream name prefixes. A stream is "<prefix><id>".
const (
	SessionStreamPrefix    = "session-"
	TechnicianStreamPrefix = "technician-"
	GroupStreamPrefix      = "group-"
	TenantStreamPrefix     = "tenant-"
)

// SessionStream returns the stream name of a session.
func SessionStream(guid string) string { return SessionStreamPrefix + guid }

// TechnicianStream returns the stream name of a technician.
func TechnicianStream(id string) string { return TechnicianStreamPrefix + id }

// GroupStream returns the stream name of a technician group.
func GroupStream(id string) string { return GroupStreamPrefix + id }

// TenantStream returns the stream name of a tenant.
func TenantStream(id string) string { return TenantStreamPrefix + id }

// StreamSubject returns the data subject whose key seals the personal fields
// of events on stream, and false for streams that carry no personal data
// (groups and tenants).
func StreamSubject(stream string) (Subject, bool) {
	switch {
	case strings.HasPrefix(stream, SessionStreamPrefix):
		return SessionSubject(strings.TrimPrefix(stream, SessionStreamPrefix)), true
	case strings.HasPrefix(stream, TechnicianStreamPrefix):
		return TechnicianSubject(strings.TrimPrefix(stream, TechnicianStreamPrefix)), true
	}
	return "", false
}

// ValidStream reports whether stream has one of the four known prefixes and
// a non-empty id of printable ASCII without spaces.
func ValidStream(stream string) bool {
	var id string
	switch {
	case strings.HasPrefix(stream, SessionStreamPrefix):
		id = strings.TrimPrefix(stream, SessionStreamPrefix)
	case strings.HasPrefix(stream, TechnicianStreamPrefix):
		id = strings.TrimPrefix(stream, TechnicianStreamPrefix)
	case strings.HasPrefix(stream, GroupStreamPrefix):
		id = strings.TrimPrefix(stream, GroupStreamPrefix)
	case strings.HasPrefix(stream, TenantStreamPrefix):
		id = strings.TrimPrefix(stream, TenantStreamPrefix)
	default:
		return false
	}
	if id == "" || len(id) > 200 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

// PersonalField is one personal field of an event in clear: before sealing
// on the way in, or after opening on the way out. Value is the field's JSON
// encoding. Erased is set when the subject's key was destroyed, in which case
// Value is nil.
type PersonalField struct {
	Name    string
	Subject Subject
	Value   json.RawMessage
	Erased  bool
}

// SealedField is one personal field as stored: AES-256-GCM ciphertext under
// the data key KeyID of Subject.
type SealedField struct {
	Name       string
	Subject    Subject
	KeyID      string
	Nonce      []byte
	Ciphertext []byte
}

// Event is the envelope of every fact Vigil records. The fields up to Sealed
// are set by the producer and the ledger before append; Position, Seq and
// LeafHash are assigned by the ledger at append.
type Event struct {
	// ID is a UUIDv7 chosen by the producer or by NewEvent; appending an event
	// whose ID is already stored is an idempotent no-op.
	ID uuid.UUID
	// Tenant owns the event; each tenant has its own Merkle log.
	Tenant string
	// Stream is the aggregate the event belongs to, such as session-<guid>.
	Stream string
	// Version is the event's 1-based index in its stream.
	Version int64
	// Type is the stable catalogue name, such as session.consent_granted.
	Type string
	// Schema is the version of the payload's shape under Type.
	Schema int
	// OccurredAt is when the fact happened, as told by the producer.
	OccurredAt time.Time
	// RecordedAt is when the ledger accepted the event.
	RecordedAt time.Time
	// Actor caused the event.
	Actor Actor
	// Data holds the public, non-personal fields as compact JSON with sorted
	// keys. It is stored and hashed byte for byte.
	Data json.RawMessage
	// Personal holds the personal fields in clear (before sealing, or after
	// opening). It is never stored.
	Personal []PersonalField
	// Sealed holds the personal fields as stored ciphertext.
	Sealed []SealedField

	// Position is the event's place in the global log (1-based, gapless).
	Position int64
	// Seq is the event's 0-based index in its tenant's Merkle log.
	Seq int64
	// LeafHash is the RFC 6962 leaf hash of the event's canonical encoding.
	LeafHash [32]byte
}

// Subject returns the data subject of the event's stream, if it has one.
func (e *Event) Subject() (Subject, bool) { return StreamSubject(e.Stream) }

// Erased reports whether any personal field of the event could not be opened
// because its subject's key was destroyed.
func (e *Event) Erased() bool {
	for _, p := range e.Personal {
		if p.Erased {
			return true
		}
	}
	return false
}

// Payload is the typed body of an event. Every payload type is registered in
// the catalogue under an explicit, stable name; the name is never derived
// from the Go type.
type Payload interface {
	// EventType returns the catalogue name, such as "session.created".
	EventType() string
}

// NewEventID returns a new UUIDv7.
func NewEventID() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		// uuid.NewV7 fails only when the system's random source fails, and
		// nothing about the log can be trusted then.
		panic(fmt.Sprintf("domain: generating event id: %v", err))
	}
	return id
}

// Meta carries the envelope fields a producer chooses for a new event.
type Meta struct {
	Tenant     string
	Stream     string
	Actor      Actor
	OccurredAt time.Time // zero means now
	ID         uuid.UUID // zero means a new UUIDv7
}

// NewEvent builds the envelope of payload p for the stream in m: it looks up
// the type and schema in the catalogue, splits the payload into public Data
// and Personal fields (those tagged `vigil:"sealed"`, owned by the stream's
// subject), and leaves Version, position and hashes for the ledger. It
// returns an error of code invalid when p is not in the catalogue, the
// stream is malformed, or p has personal fields on a stream without a data
// subject.
func NewEvent(m Meta, p Payload) (Event, error) {
	return Catalogue.NewEvent(m, p)
}
