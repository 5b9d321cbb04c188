package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

// EventSpec describes one registered event type.
type EventSpec struct {
	// Type is the stable name, such as "session.file_sent".
	Type string
	// Schema is the current schema version written for new events.
	Schema int
	// Sealed lists the JSON names of the personal fields, sorted.
	Sealed []string
	// ChatFields lists the sealed fields kept under the session's chat
	// subject (tag `vigil:"sealed,chat"`), so that a session's chat log can
	// be erased alone.
	ChatFields []string
	goType     reflect.Type
}

// Registry maps stable event type names to payload types. It is built once
// and then only read, so it is safe for concurrent use after construction.
type Registry struct {
	specs map[string]EventSpec
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{specs: map[string]EventSpec{}} }

// Register adds payload prototype p under its EventType with schema version
// schema. It panics on a duplicate name, on a payload that is not a struct,
// or on a sealed field without a JSON name, since those are programming
// errors that must never reach the log.
func (r *Registry) Register(schema int, p Payload) {
	name := p.EventType()
	if _, dup := r.specs[name]; dup {
		panic("domain: event type registered twice: " + name)
	}
	t := reflect.TypeOf(p)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		panic("domain: payload of " + name + " is not a struct")
	}
	spec := EventSpec{Type: name, Schema: schema, goType: t}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("vigil")
		if tag != "sealed" && tag != "sealed,chat" {
			if tag != "" {
				panic("domain: field " + f.Name + " of " + name + " has an unknown vigil tag " + tag)
			}
			continue
		}
		jn := jsonName(f)
		if jn == "" || jn == "-" {
			panic("domain: sealed field " + f.Name + " of " + name + " needs a json name")
		}
		spec.Sealed = append(spec.Sealed, jn)
		if tag == "sealed,chat" {
			spec.ChatFields = append(spec.ChatFields, jn)
		}
	}
	sort.Strings(spec.Sealed)
	r.specs[name] = spec
}

func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	n, _, _ := strings.Cut(tag, ",")
	if n == "" {
		return f.Name
	}
	return n
}

// Spec returns the spec of event type name.
func (r *Registry) Spec(name string) (EventSpec, bool) {
	s, ok := r.specs[name]
	return s, ok
}

// Types returns every registered type name, sorted.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.specs))
	for n := range r.specs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New returns a new zero payload of type name, as a pointer to its struct.
func (r *Registry) New(name string) (Payload, bool) {
	s, ok := r.specs[name]
	if !ok {
		return nil, false
	}
	return reflect.New(s.goType).Interface().(Payload), true
}

// Encode splits payload p into its public JSON (compact, keys sorted) and its
// personal fields, each as the JSON encoding of the field's value. Personal
// fields left empty by omitempty are not returned.
func (r *Registry) Encode(p Payload) (data json.RawMessage, personal map[string]json.RawMessage, err error) {
	spec, ok := r.specs[p.EventType()]
	if !ok {
		return nil, nil, Errorf(CodeInvalid, "unknown event type %q", p.EventType())
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s: %w", spec.Type, err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, nil, fmt.Errorf("encode %s: %w", spec.Type, err)
	}
	for _, name := range spec.Sealed {
		v, ok := fields[name]
		if !ok {
			continue
		}
		delete(fields, name)
		if personal == nil {
			personal = map[string]json.RawMessage{}
		}
		personal[name] = v
	}
	// json.Marshal sorts map keys, which gives the canonical form hashed
	// into the log.
	data, err = json.Marshal(fields)
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s: %w", spec.Type, err)
	}
	return data, personal, nil
}

// NewEvent implements the package-level NewEvent against this registry.
func (r *Registry) NewEvent(m Meta, p Payload) (Event, error) {
	if m.Tenant == "" {
		return Event{}, Errorf(CodeInvalid, "event without tenant")
	}
	if !ValidStream(m.Stream) {
		return Event{}, Errorf(CodeInvalid, "malformed stream %q", m.Stream)
	}
	if !m.Actor.Kind.Valid() {
		return Event{}, Errorf(CodeInvalid, "unknown actor kind %q", m.Actor.Kind)
	}
	spec, ok := r.specs[p.EventType()]
	if !ok {
		return Event{}, Errorf(CodeInvalid, "unknown event type %q", p.EventType())
	}
	data, personal, err := r.Encode(p)
	if err != nil {
		return Event{}, err
	}
	e := Event{
		ID:         m.ID,
		Tenant:     m.Tenant,
		Stream:     m.Stream,
		Type:       spec.Type,
		Schema:     spec.Schema,
		OccurredAt: m.OccurredAt,
		Actor:      m.Actor,
		Data:       data,
	}
	if e.ID == [16]byte{} {
		e.ID = NewEventID()
	}
	if e.OccurredAt.IsZero() {
		e.OccurredAt = time.Now()
	}
	if len(personal) > 0 {
		subj, ok := StreamSubject(m.Stream)
		if !ok {
			return Event{}, Errorf(CodeInvalid, "%s on %s carries personal fields but the stream has no data subject", spec.Type, m.Stream)
		}
		names := make([]string, 0, len(personal))
		for n := range personal {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fs := subj
			if slices.Contains(spec.ChatFields, n) {
				chat, ok := ChatSubjectOf(m.Stream)
				if !ok {
					return Event{}, Errorf(CodeInvalid, "%s carries chat on %s, which is not a session", spec.Type, m.Stream)
				}
				fs = chat
			}
			e.Personal = append(e.Personal, PersonalField{Name: n, Subject: fs, Value: personal[n]})
		}
	}
	return e, nil
}

// Decode returns the typed payload of e: its public Data merged with the
// personal fields in e.Personal that are present and not erased. Erased or
// still-sealed fields are left at their zero value; callers that must show
// them use e.Personal's Erased flag. It returns an error of code invalid for
// an unknown type or malformed JSON.
func (r *Registry) Decode(e Event) (Payload, error) {
	p, ok := r.New(e.Type)
	if !ok {
		return nil, Errorf(CodeInvalid, "unknown event type %q", e.Type)
	}
	if len(e.Personal) == 0 {
		if len(e.Data) > 0 {
			if err := strictUnmarshal(e.Data, p); err != nil {
				return nil, Errorf(CodeInvalid, "decode %s: %v", e.Type, err)
			}
		}
		return p, nil
	}
	fields := map[string]json.RawMessage{}
	if len(e.Data) > 0 {
		if err := json.Unmarshal(e.Data, &fields); err != nil {
			return nil, Errorf(CodeInvalid, "decode %s: %v", e.Type, err)
		}
		if fields == nil { // Data was JSON null
			fields = map[string]json.RawMessage{}
		}
	}
	spec := r.specs[e.Type]
	for _, pf := range e.Personal {
		// A personal value must never stand in for a public field.
		if _, sealed := slices.BinarySearch(spec.Sealed, pf.Name); !sealed {
			return nil, Errorf(CodeInvalid, "decode %s: %q is not a personal field", e.Type, pf.Name)
		}
		if pf.Erased || pf.Value == nil {
			continue
		}
		fields[pf.Name] = pf.Value
	}
	merged, err := json.Marshal(fields)
	if err != nil {
		return nil, Errorf(CodeInvalid, "decode %s: %v", e.Type, err)
	}
	if err := strictUnmarshal(merged, p); err != nil {
		return nil, Errorf(CodeInvalid, "decode %s: %v", e.Type, err)
	}
	return p, nil
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after JSON value")
	}
	return nil
}

// Decode returns the typed payload of e using the Vigil catalogue.
func Decode(e Event) (Payload, error) { return Catalogue.Decode(e) }
