// Package gql serves Vigil's reporting API: GraphQL at /graphql (with a
// minimal query page outside production) and CSV downloads at
// /v1/reports/{name}.csv. It reads the reporting tables that the projections
// fill through the Reports port, opens sealed personal values at read time
// through an Opener (so that an erased subject reads as "[erased]" at once),
// and scopes every read to the caller's tenant and role. It never imports
// adapters; cmd/vigil wires the PostgreSQL implementation in.
package gql

import (
	"context"
	"encoding/json"
	"time"

	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/projections"
)

// Reports is the read port over the reporting tables. Every method reads
// one tenant's rows only. Implementations are safe for concurrent use and
// return domain.ErrNotFound from LatestCheckpoint when the tenant has no
// checkpoint yet; anything else unexpected is an internal error.
type Reports interface {
	// Sessions returns up to p.Limit sessions matching f, newest first
	// (created_at DESC, id ASC), after p.After when set.
	Sessions(ctx context.Context, tenant string, f SessionFilter, p SessionPage) ([]Session, error)
	// CountSessions counts the sessions matching f.
	CountSessions(ctx context.Context, tenant string, f SessionFilter) (int, error)
	// SessionsByIDs returns the sessions among ids (in any order; unknown
	// ids are left out).
	SessionsByIDs(ctx context.Context, tenant string, ids []string) ([]Session, error)

	// ChatBySessions, NotesBySessions, FileTransfersBySessions,
	// ConsentsBySessions and ActionsBySessions return, for each session of
	// ids, its first p.Limit rows after position p.After, in position order:
	// one query for any number of sessions.
	ChatBySessions(ctx context.Context, tenant string, ids []string, p TimelinePage) ([]ChatMessage, error)
	NotesBySessions(ctx context.Context, tenant string, ids []string, p TimelinePage) ([]Note, error)
	FileTransfersBySessions(ctx context.Context, tenant string, ids []string, p TimelinePage) ([]FileTransfer, error)
	ConsentsBySessions(ctx context.Context, tenant string, ids []string, p TimelinePage) ([]Consent, error)
	ActionsBySessions(ctx context.Context, tenant string, ids []string, p TimelinePage) ([]Action, error)
	// RecordingsBySessions returns every recording of the sessions of ids.
	RecordingsBySessions(ctx context.Context, tenant string, ids []string) ([]Recording, error)
	// Recordings returns up to p.Limit recordings matching f in
	// (At, SessionID, RecordingID) order, after p.After when set, erased
	// ones included (state erased).
	Recordings(ctx context.Context, tenant string, f RecordingFilter, p RecordingPage) ([]Recording, error)

	// ChatLog, FileTransfers, Consents and Logins return up to p.Limit rows
	// matching f in (occurred_at, position) order, after p.After when set.
	ChatLog(ctx context.Context, tenant string, f LogFilter, p LogPage) ([]ChatMessage, error)
	FileTransfers(ctx context.Context, tenant string, f LogFilter, p LogPage) ([]FileTransfer, error)
	Consents(ctx context.Context, tenant string, f LogFilter, p LogPage) ([]Consent, error)
	Logins(ctx context.Context, tenant string, f LoginFilter, p LogPage) ([]Login, error)
	// CountChatLog, CountFileTransfers, CountConsents, CountLogins and
	// CountRecordings count the rows their list returns over every page.
	CountChatLog(ctx context.Context, tenant string, f LogFilter) (int, error)
	CountFileTransfers(ctx context.Context, tenant string, f LogFilter) (int, error)
	CountConsents(ctx context.Context, tenant string, f LogFilter) (int, error)
	CountLogins(ctx context.Context, tenant string, f LoginFilter) (int, error)
	CountRecordings(ctx context.Context, tenant string, f RecordingFilter) (int, error)

	// TechnicianPerformance returns the per technician and UTC day rows
	// with from <= day <= to (dates), by day then technician; only
	// technicianID's when it is set.
	TechnicianPerformance(ctx context.Context, tenant string, from, to time.Time, technicianID string) ([]TechnicianDay, error)
	// SessionTimes returns, per UTC day of creation with from <= day <= to
	// (dates) that has sessions, the average waiting time (customer
	// connected → picked up) and pickup time (created → picked up), by day.
	SessionTimes(ctx context.Context, tenant string, from, to time.Time) ([]SessionDay, error)
	// ProjectionStatus returns every projection's position and the ledger
	// head. It is not scoped to a tenant: positions are global.
	ProjectionStatus(ctx context.Context) ([]ProjectionState, error)
	// LatestCheckpoint returns the tenant's latest signed checkpoint, or
	// domain.ErrNotFound.
	LatestCheckpoint(ctx context.Context, tenant string) (ledger.Checkpoint, error)
	WebhookReports
}

// Opener opens sealed references (ledger.EncodeSealedRef) of a tenant;
// *ledger.Sealer satisfies it. OpenRefString returns "" for an empty
// reference and ledger.ErasedText for an erased subject; OpenRef returns the
// field's JSON value, or erased true.
type Opener interface {
	OpenRefString(ctx context.Context, tenant string, ref []byte) (string, error)
	OpenRef(ctx context.Context, tenant string, ref []byte) (json.RawMessage, bool, error)
}

// BlindIndexer computes the keyed blind index the projector stores for
// looking up values without storing them; *ledger.Sealer satisfies it.
type BlindIndexer interface {
	BlindIndex(ctx context.Context, purpose, value string) ([]byte, error)
}

// Authenticator resolves a bearer credential; *service.Service satisfies
// it.
type Authenticator interface {
	Authenticate(ctx context.Context, bearer string) (service.Principal, error)
}

// CustomerEmailPurpose is the blind-index purpose of rpt_sessions'
// customer_email_idx, computed over lower(trim(address)); the projector's
// constant, so that the two cannot drift apart.
const CustomerEmailPurpose = projections.CustomerEmailPurpose

// SessionFilter selects sessions. Zero fields do not filter.
type SessionFilter struct {
	// From and To bound created_at: From <= created_at < To.
	From, To     time.Time
	TechnicianID string
	GroupID      string
	Status       string
	Channel      string
	// CustomerEmailIndex is the blind index of the customer's address.
	CustomerEmailIndex []byte
	// VisibleTo restricts to the sessions a technician holds or owns.
	VisibleTo string
}

// SessionCursor is the keyset position of a session in the sessions order.
type SessionCursor struct {
	CreatedAt time.Time
	ID        string
}

// SessionPage is a page of sessions: Limit rows after After (nil: from the
// start).
type SessionPage struct {
	After *SessionCursor
	Limit int
}

// TimelinePage pages a session's rows by position: Limit rows per session
// with position > After.
type TimelinePage struct {
	After int64
	Limit int
}

// LogFilter selects rows of a log-like report. Zero fields do not filter;
// fields a report does not have are ignored.
type LogFilter struct {
	// From and To bound occurred_at: From <= occurred_at < To.
	From, To     time.Time
	SessionID    string
	TechnicianID string
	// Direction filters file transfers: sent or received.
	Direction string
	// Kind filters consents: requested, granted, denied, action_denied.
	Kind string
	// Action filters consents by action.
	Action string
	// VisibleTo restricts to the rows of sessions a technician holds or
	// owns.
	VisibleTo string
}

// LoginFilter selects login rows. Zero fields do not filter.
type LoginFilter struct {
	From, To     time.Time
	TechnicianID string
	// Outcome is succeeded, failed, locked_out, unlocked or logged_out.
	Outcome string
}

// LogCursor is the keyset position of a row of a log-like report.
type LogCursor struct {
	OccurredAt time.Time
	Position   int64
}

// LogPage is a page of a log-like report.
type LogPage struct {
	After *LogCursor
	Limit int
}

// Session is a row of rpt_sessions. The *Ref fields are sealed references.
type Session struct {
	ID, Status, Queue, Channel, GroupID         string
	TechnicianID, OwnerID, Platform, TrackingID string
	CreatedAt                                   time.Time
	ConnectedAt, PickedUpAt, ClosedAt           *time.Time
	WaitingSeconds, PickupSeconds               *float64
	ActiveSeconds, TotalSeconds                 *float64
	Transfers                                   int
	Tools                                       []string
	ClosedBy, CloseReason                       string
	Recorded                                    bool
	CustomerNameRef, CustomerEmailRef           []byte
	CustomFieldsRef                             []byte
	// Where its bytes went (issue 18): the gateway the applet chose, the
	// transport that carried the session (relayed, tcp, udp; "" before
	// the relay paired), the milliseconds to the P2P channel, why P2P
	// failed, and the milliseconds the customer's camera streamed (Lens).
	GatewayID, Transport, P2PFailure string
	TimeToP2PMS                      *int64
	LensMS                           int64
}

// ChatMessage is a row of rpt_chat.
type ChatMessage struct {
	Position   int64
	SessionID  string
	EventID    string
	OccurredAt time.Time
	Sender     string
	SenderID   string
	TextRef    []byte
}

// Note is a row of rpt_notes.
type Note struct {
	Position     int64
	SessionID    string
	EventID      string
	OccurredAt   time.Time
	TechnicianID string
	TextRef      []byte
}

// FileTransfer is a row of rpt_file_transfers.
type FileTransfer struct {
	Position       int64
	SessionID      string
	EventID        string
	OccurredAt     time.Time
	Direction      string
	TechnicianID   string
	ConsentEventID string
	NameRef        []byte
	Size           int64
	MD5, SHA256    string
}

// Consent is a row of rpt_consents.
type Consent struct {
	Position       int64
	SessionID      string
	EventID        string
	OccurredAt     time.Time
	Kind, Action   string
	TechnicianID   string
	Reason         string
	RequestEventID string
}

// Action is a row of rpt_actions.
type Action struct {
	Position       int64
	SessionID      string
	EventID        string
	OccurredAt     time.Time
	Type, Action   string
	TechnicianID   string
	ConsentEventID string
}

// Login is a row of rpt_logins.
type Login struct {
	Position     int64
	TechnicianID string
	EventID      string
	OccurredAt   time.Time
	Outcome      string
	Reason       string
	IPRef        []byte
	// Method is "password" or "saml" (single sign-on).
	Method string
}

// TechnicianDay is a technician's performance on one UTC day.
type TechnicianDay struct {
	TechnicianID string
	Day          time.Time
	Sessions     int
	// AvgPickupSeconds and AvgDurationSeconds are nil without samples.
	AvgPickupSeconds   *float64
	AvgDurationSeconds *float64
	Transfers          int
}

// SessionDay is one day of SessionTimes.
type SessionDay struct {
	Day      time.Time
	Sessions int
	// AvgWaitingSeconds and AvgPickupSeconds are nil without samples.
	AvgWaitingSeconds *float64
	AvgPickupSeconds  *float64
}

// Recording is a row of rpt_recordings, or of recording_objects for a
// recording whose reporting row erasure deleted.
type Recording struct {
	SessionID, RecordingID, TechnicianID string
	// State is recording, stopped, stored or failed (the projection's), or
	// erased: the session has a completed erasure of scope all, so its data
	// key is destroyed and the object deleted.
	State                          string
	StartedAt, StoppedAt, StoredAt *time.Time
	ContentType                    string
	Size                           *int64
	MD5, SHA256, Failure           string
	Views                          int
	// DurationMS is the duration the uploader declared; nil when none.
	DurationMS *int64
	// At orders the recordings list: started_at, else stored_at, else
	// when the object was first written.
	At time.Time
}

// RecordingFilter selects recordings. Zero fields do not filter.
type RecordingFilter struct {
	// From and To bound Recording.At: From <= At < To.
	From, To  time.Time
	SessionID string
	// State is recording, stopped, stored, failed, erased, or viewed
	// (stored and played back at least once).
	State string
	// VisibleTo restricts to the recordings of sessions a technician holds
	// or owns.
	VisibleTo string
}

// RecordingCursor is the keyset position of a recording in the
// recordings order.
type RecordingCursor struct {
	At                     time.Time
	SessionID, RecordingID string
}

// RecordingPage is a page of recordings.
type RecordingPage struct {
	After *RecordingCursor
	Limit int
}

// ProjectionState is a projection's progress.
type ProjectionState struct {
	Name      string
	Position  int64
	Head      int64
	Lag       int64
	UpdatedAt time.Time
	// Quarantined counts the events the projection set aside because it
	// could not apply them (projections.Runner); LastError is the reason
	// of the latest, "" for none.
	Quarantined int64
	LastError   string
}

// WebhookReports is the read port over the webhook tables (package
// webhooks): subscriptions and their delivery log, never a secret or a
// payload. Every method reads one tenant's rows only. Reports embeds it.
type WebhookReports interface {
	// WebhookSubscriptions returns the tenant's subscriptions (deleted ones
	// left out), oldest first.
	WebhookSubscriptions(ctx context.Context, tenant string) ([]WebhookSubscription, error)
	// WebhookDeliveries returns up to p.Limit deliveries matching f, newest
	// first (created_at DESC, id DESC), after p.After when set.
	WebhookDeliveries(ctx context.Context, tenant string, f WebhookDeliveryFilter, p WebhookDeliveryPage) ([]WebhookDelivery, error)
	// CountWebhookDeliveries counts the deliveries matching f.
	CountWebhookDeliveries(ctx context.Context, tenant string, f WebhookDeliveryFilter) (int, error)
}

// WebhookSubscription is a row of webhook_subscriptions without its secrets.
type WebhookSubscription struct {
	ID          string
	URL         string
	EventTypes  []string
	GroupID     string
	ExcludeChat bool
	Description string
	// Disabled is true when the subscription was disabled by a 410 answer
	// or by request.
	Disabled  bool
	CreatedAt time.Time
}

// WebhookDelivery is a row of webhook_deliveries without its payload.
type WebhookDelivery struct {
	ID, WebhookID, EventType string
	// Status is pending, delivered, dead or purged.
	Status         string
	Attempts       int
	LastStatusCode int
	LastLatencyMS  int
	// NextAttemptAt is set for pending deliveries only.
	NextAttemptAt *time.Time
	DeliveredAt   *time.Time
	CreatedAt     time.Time
}

// WebhookDeliveryFilter selects deliveries. Zero fields do not filter.
type WebhookDeliveryFilter struct {
	// From and To bound created_at: From <= created_at < To.
	From, To time.Time
	Status   string
	// WebhookID is a subscription id (a UUID).
	WebhookID string
}

// WebhookDeliveryCursor is the keyset position of a delivery.
type WebhookDeliveryCursor struct {
	CreatedAt time.Time
	ID        string
}

// WebhookDeliveryPage is a page of deliveries.
type WebhookDeliveryPage struct {
	After *WebhookDeliveryCursor
	Limit int
}
