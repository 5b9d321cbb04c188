package relay

import (
	"context"
	"time"
)

// Grant is the backend's answer to an accepted side.
type Grant struct {
	// Tenant owns the session.
	Tenant string
	// TechnicianID is the technician of an accepted technician side.
	TechnicianID string
}

// SessionRef names a session the relay holds sides of.
type SessionRef struct {
	Tenant string `json:"tenant"`
	GUID   string `json:"session"`
}

// Backend is what the relay asks of Vigil. Errors matching
// domain.ErrNotFound, domain.ErrSessionClosed, domain.ErrConflict,
// domain.ErrForbidden or domain.ErrUnauthenticated refuse the side with the
// matching reason; any other error refuses it as unavailable.
// Implementations must be safe for concurrent use.
type Backend interface {
	// AuthorizeCustomer accepts the customer side of session guid: it must
	// exist and be open, waiting for its relay connection.
	AuthorizeCustomer(ctx context.Context, guid string) (Grant, error)
	// AuthorizeTechnician accepts the technician side: token must be a
	// live technician token of the technician holding session guid.
	AuthorizeTechnician(ctx context.Context, guid, token string) (Grant, error)
	// ClosedSessions returns those of sessions that are closed (or gone).
	ClosedSessions(ctx context.Context, sessions []SessionRef) ([]SessionRef, error)
}

// Event types on the bus.
const (
	EventConnected = "relay_connected"
	EventPaired    = "relay_paired"
	EventClosed    = "relay_closed"
)

// Event is what the relay publishes; its JSON form is the bus message
// (docs/relay-protocol.md). ID is a UUIDv7 that the backend uses as the
// ledger event id, so a redelivered message appends nothing new.
type Event struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Tenant  string    `json:"tenant"`
	Session string    `json:"session"`
	RelayID string    `json:"relay_id"`
	At      time.Time `json:"at"`
	// relay_connected
	Side     string `json:"side,omitempty"`
	SourceIP string `json:"source_ip,omitempty"`
	// relay_paired: how long the first side waited for the second.
	PairingMS int64 `json:"pairing_ms,omitempty"`
	// relay_closed
	BytesFromCustomer   int64  `json:"bytes_from_customer,omitempty"`
	BytesFromTechnician int64  `json:"bytes_from_technician,omitempty"`
	DurationMS          int64  `json:"duration_ms,omitempty"`
	Reason              string `json:"reason,omitempty"`
}

// Publisher carries the relay's events to the backend. Implementations
// must be safe for concurrent use; Publish returns once the event is
// durably accepted by the transport.
type Publisher interface {
	Publish(ctx context.Context, e Event) error
}
