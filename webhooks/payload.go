package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

// envelope is the Standard Webhooks payload form.
type envelope struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      any    `json:"data"`
}

func encodePayload(typ string, at time.Time, data any) ([]byte, error) {
	return json.Marshal(envelope{Type: typ, Timestamp: at.UTC().Format(time.RFC3339Nano), Data: data})
}

// PublicEvent is an event's public face: envelope and public data, never a
// sealed field. It is the data of every webhook payload other than the
// summaries and the body of every bus message.
type PublicEvent struct {
	ID         string          `json:"id"`
	Tenant     string          `json:"tenant"`
	Stream     string          `json:"stream"`
	Version    int64           `json:"version"`
	Position   int64           `json:"position"`
	Type       string          `json:"type"`
	Schema     int             `json:"schema"`
	OccurredAt time.Time       `json:"occurred_at"`
	RecordedAt time.Time       `json:"recorded_at"`
	Actor      domain.Actor    `json:"actor"`
	Data       json.RawMessage `json:"data"`
}

// Public returns e's public face.
func Public(e domain.Event) PublicEvent {
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	return PublicEvent{ID: e.ID.String(), Tenant: e.Tenant, Stream: e.Stream, Version: e.Version, Position: e.Position,
		Type: e.Type, Schema: e.Schema, OccurredAt: e.OccurredAt.UTC(), RecordedAt: e.RecordedAt.UTC(), Actor: e.Actor, Data: data}
}

// SessionStarted is the data of a session.started payload.
type SessionStarted struct {
	SessionID    string            `json:"session_id"`
	Queue        string            `json:"queue"`
	Channel      string            `json:"channel,omitempty"`
	GroupID      string            `json:"group_id"`
	TechnicianID string            `json:"technician_id,omitempty"`
	TrackingID   string            `json:"tracking_id,omitempty"`
	CustomFields map[string]string `json:"custom_fields,omitempty"`
	CreatedAt    time.Time         `json:"created_at"`
}

// SessionEnded is the data of a session.ended payload: what a CRM needs.
type SessionEnded struct {
	SessionID       string            `json:"session_id"`
	GroupID         string            `json:"group_id"`
	Queue           string            `json:"queue"`
	TechnicianID    string            `json:"technician_id,omitempty"`
	TechnicianName  string            `json:"technician_name,omitempty"`
	TechnicianEmail string            `json:"technician_email,omitempty"`
	CustomFields    map[string]string `json:"custom_fields,omitempty"`
	TrackingID      string            `json:"tracking_id,omitempty"`
	CreatedAt       time.Time         `json:"created_at"`
	PickedUpAt      *time.Time        `json:"picked_up_at,omitempty"`
	ClosedAt        time.Time         `json:"closed_at"`
	// WaitingSeconds runs from the customer's connection to the pick-up,
	// PickupSeconds from the session's creation to the pick-up.
	WaitingSeconds  *float64   `json:"waiting_seconds,omitempty"`
	PickupSeconds   *float64   `json:"pickup_seconds,omitempty"`
	DurationSeconds float64    `json:"duration_seconds"`
	ClosedBy        string     `json:"closed_by"`
	FilesSent       []FileSent `json:"files_sent"`
	Notes           []Note     `json:"notes"`
	// Chat is absent when the subscription or the group's policy excludes
	// the chat log.
	Chat []ChatLine `json:"chat,omitempty"`
}

// FileSent is a file the technician sent to the customer.
type FileSent struct {
	Name   string    `json:"name"`
	Size   int64     `json:"size"`
	SHA256 string    `json:"sha256"`
	At     time.Time `json:"at"`
}

// Note is a technician's note.
type Note struct {
	TechnicianID string    `json:"technician_id"`
	Text         string    `json:"text"`
	At           time.Time `json:"at"`
}

// ChatLine is one chat message.
type ChatLine struct {
	From     string    `json:"from"`
	SenderID string    `json:"sender_id,omitempty"`
	Text     string    `json:"text"`
	At       time.Time `json:"at"`
}

// summary is a built payload variant with the subjects it carries.
type summary struct {
	body     []byte
	subjects []domain.Subject
}

func personal(e *domain.Event, name string) (json.RawMessage, bool) {
	for _, p := range e.Personal {
		if p.Name == name && !p.Erased {
			return p.Value, true
		}
	}
	return nil, false
}

func personalString(e *domain.Event, name string) string {
	for _, p := range e.Personal {
		if p.Name == name {
			if p.Erased {
				return ledger.ErasedText
			}
			var s string
			_ = json.Unmarshal(p.Value, &s)
			return s
		}
	}
	return ""
}

func personalMap(e *domain.Event, name string) map[string]string {
	v, ok := personal(e, name)
	if !ok {
		return nil
	}
	var m map[string]string
	_ = json.Unmarshal(v, &m)
	return m
}

func decodePublic(e domain.Event, v any) error {
	if len(e.Data) == 0 {
		return nil
	}
	return json.Unmarshal(e.Data, v)
}

func secondsBetween(a, b *time.Time) *float64 {
	if a == nil || b == nil {
		return nil
	}
	s := b.Sub(*a).Seconds()
	return &s
}

// buildStarted builds the session.started data from the opened
// session.created event.
func buildStarted(e domain.Event) (SessionStarted, error) {
	var c domain.SessionCreated
	if err := decodePublic(e, &c); err != nil {
		return SessionStarted{}, err
	}
	return SessionStarted{SessionID: c.GUID, Queue: c.Queue, Channel: c.Channel, GroupID: c.GroupID, TechnicianID: c.TechnicianID,
		TrackingID: c.TrackingID, CustomFields: personalMap(&e, "custom_fields"), CreatedAt: e.OccurredAt.UTC()}, nil
}

// buildEnded folds the opened events of a session, up to and including
// its session.closed event, into the session.ended data (chat included).
func (f *Fanout) buildEnded(ctx context.Context, tenant string, evs []domain.Event) (SessionEnded, []domain.Subject, error) {
	var s SessionEnded
	var connectedAt, pickedUpAt *time.Time
	subjects := []domain.Subject{}
	for _, e := range evs {
		at := e.OccurredAt.UTC()
		switch e.Type {
		case "session.created":
			var c domain.SessionCreated
			if err := decodePublic(e, &c); err != nil {
				return s, nil, err
			}
			s.SessionID, s.GroupID, s.Queue, s.TechnicianID, s.TrackingID = c.GUID, c.GroupID, c.Queue, c.TechnicianID, c.TrackingID
			s.CustomFields = personalMap(&e, "custom_fields")
			s.CreatedAt = at
			if sub, ok := e.Subject(); ok {
				subjects = append(subjects, sub)
			}
		case "session.customer_connected":
			if connectedAt == nil {
				connectedAt = &at
			}
		case "session.picked_up":
			var v domain.SessionPickedUp
			if err := decodePublic(e, &v); err != nil {
				return s, nil, err
			}
			s.TechnicianID, s.GroupID = v.TechnicianID, v.GroupID
			if pickedUpAt == nil {
				pickedUpAt = &at
			}
		case "session.transferred":
			var v domain.SessionTransferred
			if err := decodePublic(e, &v); err != nil {
				return s, nil, err
			}
			s.TechnicianID, s.GroupID = v.ToTechnicianID, v.ToGroupID
		case "session.custom_fields_set":
			if m := personalMap(&e, "fields"); m != nil {
				if s.CustomFields == nil {
					s.CustomFields = map[string]string{}
				}
				maps.Copy(s.CustomFields, m)
			}
		case "session.file_sent":
			var v domain.FileSent
			if err := decodePublic(e, &v); err != nil {
				return s, nil, err
			}
			s.FilesSent = append(s.FilesSent, FileSent{Name: personalString(&e, "name"), Size: v.Size, SHA256: v.SHA256, At: at})
		case "session.note_added":
			var v domain.NoteAdded
			if err := decodePublic(e, &v); err != nil {
				return s, nil, err
			}
			s.Notes = append(s.Notes, Note{TechnicianID: v.TechnicianID, Text: personalString(&e, "text"), At: at})
		case "session.chat_message":
			var v domain.ChatMessage
			if err := decodePublic(e, &v); err != nil {
				return s, nil, err
			}
			s.Chat = append(s.Chat, ChatLine{From: v.From, SenderID: v.SenderID, Text: personalString(&e, "text"), At: at})
		case "session.closed":
			var v domain.SessionClosed
			if err := decodePublic(e, &v); err != nil {
				return s, nil, err
			}
			s.ClosedBy, s.ClosedAt = string(v.ClosedBy), at
			s.DurationSeconds = at.Sub(s.CreatedAt).Seconds()
		}
	}
	if pickedUpAt != nil {
		s.PickedUpAt = pickedUpAt
		s.WaitingSeconds = secondsBetween(connectedAt, pickedUpAt)
		s.PickupSeconds = secondsBetween(&s.CreatedAt, pickedUpAt)
	}
	if s.FilesSent == nil {
		s.FilesSent = []FileSent{}
	}
	if s.Notes == nil {
		s.Notes = []Note{}
	}
	if s.TechnicianID != "" {
		name, email, err := f.technician(ctx, tenant, s.TechnicianID)
		if err != nil {
			return s, nil, err
		}
		s.TechnicianName, s.TechnicianEmail = name, email
		subjects = append(subjects, domain.TechnicianSubject(s.TechnicianID))
	}
	return s, subjects, nil
}

// technician returns a technician's name and e-mail address, opened from
// the technician's technician.created event.
func (f *Fanout) technician(ctx context.Context, tenant, id string) (string, string, error) {
	evs, err := f.cfg.Ledger.ReadStream(ctx, tenant, domain.TechnicianStream(id), 0)
	if err != nil {
		return "", "", fmt.Errorf("technician %s: %w", id, err)
	}
	for _, e := range evs {
		if e.Type == "technician.created" {
			return personalString(&e, "name"), personalString(&e, "email"), nil
		}
	}
	return "", "", nil
}

// chatInCRM reports whether group's policy lets the chat log go to CRM
// webhooks.
func (f *Fanout) chatInCRM(ctx context.Context, tenant, groupID string) (bool, error) {
	if groupID == "" {
		return domain.DefaultGroupPolicy().ChatInCRM, nil
	}
	evs, err := f.cfg.Ledger.ReadSealed(ctx, tenant, domain.GroupStream(groupID), 0)
	if err != nil {
		return false, fmt.Errorf("group %s: %w", groupID, err)
	}
	if len(evs) == 0 {
		return domain.DefaultGroupPolicy().ChatInCRM, nil
	}
	g := domain.NewGroup(tenant, groupID)
	if err := g.Load(evs); err != nil {
		return false, fmt.Errorf("group %s: %w", groupID, err)
	}
	return g.Policy().ChatInCRM, nil
}
