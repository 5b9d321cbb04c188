package domain

import (
	"reflect"
	"time"

	"github.com/google/uuid"
)

// Cmd carries what every command needs besides its own arguments: who acts,
// when, and optionally the event id the producer chose (so that a retried
// request is an idempotent no-op in the ledger). Rules never read the clock:
// At is the time they judge by.
type Cmd struct {
	// Actor causes the events.
	Actor Actor
	// At is when the command happens; it must not be zero.
	At time.Time
	// EventID, when not zero, is the id of the first event the command
	// records; later events of the same command get new UUIDv7s.
	EventID uuid.UUID
}

// root is the bookkeeping shared by the aggregates: identity, version and
// the events recorded but not yet appended. State changes only in each
// aggregate's apply, which root calls for loaded and new events alike.
type root struct {
	tenant  string
	stream  string
	version int64
	stored  int64
	changes []Event
}

// Tenant returns the tenant the aggregate belongs to.
func (r *root) Tenant() string { return r.tenant }

// Stream returns the aggregate's stream name.
func (r *root) Stream() string { return r.stream }

// Version returns the version of the last event applied, recorded changes
// included; 0 for an aggregate without events.
func (r *root) Version() int64 { return r.version }

// StoredVersion returns the version the aggregate had when loaded, the
// expected version to pass to EventStore.Append with Changes.
func (r *root) StoredVersion() int64 { return r.stored }

// Changes returns the events recorded by commands since the aggregate was
// loaded or ClearChanges was called, in order, including action_denied
// events recorded by refused commands.
func (r *root) Changes() []Event { return append([]Event(nil), r.changes...) }

// ClearChanges forgets the recorded events after the caller appended them,
// so that StoredVersion becomes Version.
func (r *root) ClearChanges() {
	r.changes = nil
	r.stored = r.version
}

// load applies stored events in order through apply. It returns an error of
// code invalid when an event belongs to another tenant or stream, is out of
// order, or does not decode; events before it stay applied.
func (r *root) load(events []Event, apply func(Event, Payload)) error {
	if len(r.changes) > 0 {
		return Errorf(CodeInvalid, "load %s: aggregate has unappended changes", r.stream)
	}
	for _, e := range events {
		if e.Tenant != r.tenant || e.Stream != r.stream {
			return Errorf(CodeInvalid, "load %s: event %s belongs to %s/%s", r.stream, e.ID, e.Tenant, e.Stream)
		}
		if e.Version != 0 && e.Version != r.version+1 {
			return Errorf(CodeInvalid, "load %s: event version %d after %d", r.stream, e.Version, r.version)
		}
		p, err := Catalogue.Decode(e)
		if err != nil {
			return err
		}
		apply(e, deref(p))
		r.version++
		r.stored = r.version
	}
	return nil
}

// record builds the event of p for cmd, applies it and keeps it as a
// change. It returns an error of code invalid for a zero time or an event
// the catalogue refuses.
func (r *root) record(cmd Cmd, p Payload, apply func(Event, Payload)) (Event, error) {
	if cmd.At.IsZero() {
		return Event{}, Errorf(CodeInvalid, "command without a time")
	}
	e, err := Catalogue.NewEvent(Meta{
		Tenant:     r.tenant,
		Stream:     r.stream,
		Actor:      cmd.Actor,
		OccurredAt: cmd.At,
		ID:         cmd.EventID,
	}, p)
	if err != nil {
		return Event{}, err
	}
	e.Version = r.version + 1
	apply(e, p)
	r.version++
	r.changes = append(r.changes, e)
	return e, nil
}

// deref turns the pointer payloads Decode returns into the values commands
// record, so that apply switches on one form only.
func deref(p Payload) Payload {
	v := reflect.ValueOf(p)
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		if d, ok := v.Elem().Interface().(Payload); ok {
			return d
		}
	}
	return p
}
