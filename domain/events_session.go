package domain

import (
	"encoding/hex"
	"net/url"

	"github.com/google/uuid"
)

// Session queues, the values of SessionCreated.Queue.
const (
	QueuePrivate = "private" // one technician's queue, reached by that technician's PIN
	QueueShared  = "shared"  // the group's shared queue, reached by a channel or a shared PIN
)

// Chat senders, the values of ChatMessage.From.
const (
	ChatFromTechnician = "technician"
	ChatFromCustomer   = "customer"
)

// DenyReason says why a technician's action was refused.
type DenyReason string

// The reasons an ActionDenied event records.
const (
	DenyPermission    DenyReason = "permission_denied"  // the group does not grant the action (or the technician is disabled)
	DenyConsent       DenyReason = "consent_required"   // the customer has not consented
	DenyRecording     DenyReason = "recording_required" // the group forces recording and none runs
	DenySessionClosed DenyReason = "session_closed"     // the session is closed
	DenyNotAssigned   DenyReason = "not_assigned"       // the technician does not hold the session
)

// ClosedBy says who or what ended a session.
type ClosedBy string

// The values of SessionClosed.ClosedBy.
const (
	ClosedByTechnician ClosedBy = "technician"
	ClosedByCustomer   ClosedBy = "customer"
	ClosedByInactivity ClosedBy = "inactivity"
	ClosedByRelay      ClosedBy = "relay"
	ClosedByAdmin      ClosedBy = "admin"
)

// Valid reports whether c is a known closer.
func (c ClosedBy) Valid() bool {
	switch c {
	case ClosedByTechnician, ClosedByCustomer, ClosedByInactivity, ClosedByRelay, ClosedByAdmin:
		return true
	}
	return false
}

// RelaySide names the end of a relay connection.
type RelaySide string

// The two sides of a relayed session.
const (
	RelaySideCustomer   RelaySide = "customer"
	RelaySideTechnician RelaySide = "technician"
)

// ActionPayload is the payload of a privileged action: an event that needs a
// group permission and, except where ActionRule says otherwise, the
// customer's consent. Session.Perform fills in the technician and the id of
// the consent event relied on. Only the catalogue's types implement it.
type ActionPayload interface {
	Payload
	// Action returns the session action the event records.
	Action() Action
	authorized(technicianID string, consentEventID uuid.UUID) ActionPayload
	validate() error
}

// SessionCreated records that a support session was opened and queued. It
// is the first event of every session stream.
type SessionCreated struct {
	// GUID is the session's 128-bit random identifier, the id of its stream.
	GUID string `json:"guid"`
	// PIN routes the customer to a queue; it is not authentication.
	PIN string `json:"pin"`
	// Queue is "private" (one technician's) or "shared" (the group's).
	Queue string `json:"queue"`
	// Channel names the entry channel of a channel session.
	Channel string `json:"channel,omitempty"`
	// GroupID is the technician group whose queue and policy govern the session until it is picked up.
	GroupID string `json:"group_id"`
	// TechnicianID owns a private-queue session; only they may pick it up.
	TechnicianID string `json:"technician_id,omitempty"`
	// TrackingID is an external reference such as a ticket number; it must not hold personal data.
	TrackingID string `json:"tracking_id,omitempty"`
	// CustomerName is the name the customer typed.
	CustomerName string `json:"customer_name,omitempty" vigil:"sealed"`
	// CustomerEmail is the e-mail address the customer typed.
	CustomerEmail string `json:"customer_email,omitempty" vigil:"sealed"`
	// CustomFields are the session's custom fields, by name.
	CustomFields map[string]string `json:"custom_fields,omitempty" vigil:"sealed"`
}

// EventType implements Payload.
func (SessionCreated) EventType() string { return "session.created" }

// CustomerConnected records that the customer's applet reached the service.
type CustomerConnected struct {
	// Platform is the customer's operating system, such as "windows".
	Platform string `json:"platform"`
	// AppletVersion is the version of the applet.
	AppletVersion string `json:"applet_version,omitempty"`
	// IP is the customer's address; left out when the group does not store customer IPs.
	IP string `json:"ip,omitempty" vigil:"sealed"`
}

// EventType implements Payload.
func (CustomerConnected) EventType() string { return "session.customer_connected" }

// SessionPickedUp records that a technician took the session from its queue.
type SessionPickedUp struct {
	// TechnicianID is the technician who now holds the session.
	TechnicianID string `json:"technician_id"`
	// GroupID is that technician's group.
	GroupID string `json:"group_id"`
}

// EventType implements Payload.
func (SessionPickedUp) EventType() string { return "session.picked_up" }

// SessionTransferred records that the technician holding the session handed
// it to another. Every consent ends with the transfer: the customer consented
// to the previous technician.
type SessionTransferred struct {
	// FromTechnicianID is the technician who held the session.
	FromTechnicianID string `json:"from_technician_id"`
	// ToTechnicianID is the technician who holds it now.
	ToTechnicianID string `json:"to_technician_id"`
	// ToGroupID is the new technician's group.
	ToGroupID string `json:"to_group_id"`
	// Reason is a free comment; it must not hold personal data.
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (SessionTransferred) EventType() string { return "session.transferred" }

// ConsentRequested records that the technician asked the customer to allow
// an action, or all actions through the one-time prompt.
type ConsentRequested struct {
	// TechnicianID is the technician who asked.
	TechnicianID string `json:"technician_id"`
	// Action is the action asked for; "one_time_prompt" asks for all actions.
	Action Action `json:"action"`
}

// EventType implements Payload.
func (ConsentRequested) EventType() string { return "session.consent_requested" }

// ConsentGranted records the customer's yes to a pending request. The event's
// id is what privileged action events cite as consent_event_id.
type ConsentGranted struct {
	// Action is the action allowed; "one_time_prompt" allows all actions.
	Action Action `json:"action"`
	// RequestEventID is the id of the consent_requested event answered.
	RequestEventID uuid.UUID `json:"request_event_id"`
}

// EventType implements Payload.
func (ConsentGranted) EventType() string { return "session.consent_granted" }

// ConsentDenied records the customer's no to a pending request; it also ends
// any consent previously given to the same action.
type ConsentDenied struct {
	// Action is the action refused; "one_time_prompt" refuses the global consent.
	Action Action `json:"action"`
	// RequestEventID is the id of the consent_requested event answered.
	RequestEventID uuid.UUID `json:"request_event_id"`
}

// EventType implements Payload.
func (ConsentDenied) EventType() string { return "session.consent_denied" }

// ActionDenied records a refused attempt: refusals are audited like actions.
type ActionDenied struct {
	// TechnicianID is the technician who attempted the action.
	TechnicianID string `json:"technician_id"`
	// Action is the action attempted.
	Action Action `json:"action"`
	// Reason is permission_denied, consent_required, recording_required, session_closed or not_assigned.
	Reason DenyReason `json:"reason"`
}

// EventType implements Payload.
func (ActionDenied) EventType() string { return "session.action_denied" }

// RemoteControlStarted records that the technician took control of the customer's device.
type RemoteControlStarted struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
}

// EventType implements Payload.
func (RemoteControlStarted) EventType() string { return "session.remote_control_started" }

// Action implements ActionPayload.
func (RemoteControlStarted) Action() Action { return ActionRemoteControl }

func (p RemoteControlStarted) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (RemoteControlStarted) validate() error { return nil }

// RemoteControlEnded records the end of remote control, by either side.
type RemoteControlEnded struct {
	// Reason is a short code such as "technician", "customer" or "closed".
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (RemoteControlEnded) EventType() string { return "session.remote_control_ended" }

// DesktopViewStarted records that the technician began viewing the customer's screen without control.
type DesktopViewStarted struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
}

// EventType implements Payload.
func (DesktopViewStarted) EventType() string { return "session.desktop_view_started" }

// Action implements ActionPayload.
func (DesktopViewStarted) Action() Action { return ActionDesktopView }

func (p DesktopViewStarted) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (DesktopViewStarted) validate() error { return nil }

// DesktopViewEnded records the end of desktop viewing.
type DesktopViewEnded struct {
	// Reason is a short code such as "technician", "customer" or "closed".
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (DesktopViewEnded) EventType() string { return "session.desktop_view_ended" }

// FileSent records a file sent from the technician to the customer's device.
type FileSent struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
	// Name is the file's name.
	Name string `json:"name" vigil:"sealed"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// MD5 is the file's MD5 digest in lower-case hex, as the whitepaper records it.
	MD5 string `json:"md5"`
	// SHA256 is the file's SHA-256 digest in lower-case hex.
	SHA256 string `json:"sha256"`
}

// EventType implements Payload.
func (FileSent) EventType() string { return "session.file_sent" }

// Action implements ActionPayload.
func (FileSent) Action() Action { return ActionSendFile }

func (p FileSent) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (p FileSent) validate() error { return validateFile(p.Name, p.Size, p.MD5, p.SHA256) }

// FileReceived records a file the technician received from the customer's device.
type FileReceived struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
	// Name is the file's name.
	Name string `json:"name" vigil:"sealed"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// MD5 is the file's MD5 digest in lower-case hex, as the whitepaper records it.
	MD5 string `json:"md5"`
	// SHA256 is the file's SHA-256 digest in lower-case hex.
	SHA256 string `json:"sha256"`
}

// EventType implements Payload.
func (FileReceived) EventType() string { return "session.file_received" }

// Action implements ActionPayload.
func (FileReceived) Action() Action { return ActionReceiveFile }

func (p FileReceived) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (p FileReceived) validate() error { return validateFile(p.Name, p.Size, p.MD5, p.SHA256) }

func validateFile(name string, size int64, md5, sha256 string) error {
	switch {
	case name == "":
		return Errorf(CodeInvalid, "file without a name")
	case size < 0:
		return Errorf(CodeInvalid, "negative file size")
	case !isLowerHex(md5, 16):
		return Errorf(CodeInvalid, "md5 must be 32 lower-case hex digits")
	case !isLowerHex(sha256, 32):
		return Errorf(CodeInvalid, "sha256 must be 64 lower-case hex digits")
	}
	return nil
}

func isLowerHex(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	b, err := hex.DecodeString(s)
	return err == nil && hex.EncodeToString(b) == s
}

// FileManagerOpened records that the technician opened the file manager on the customer's device.
type FileManagerOpened struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
}

// EventType implements Payload.
func (FileManagerOpened) EventType() string { return "session.file_manager_opened" }

// Action implements ActionPayload.
func (FileManagerOpened) Action() Action { return ActionFileManager }

func (p FileManagerOpened) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (FileManagerOpened) validate() error { return nil }

// RebootRequested records that the technician rebooted the customer's device.
type RebootRequested struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
	// SafeMode reports a reboot into safe mode.
	SafeMode bool `json:"safe_mode"`
}

// EventType implements Payload.
func (RebootRequested) EventType() string { return "session.reboot_requested" }

// Action implements ActionPayload.
func (RebootRequested) Action() Action { return ActionReboot }

func (p RebootRequested) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (RebootRequested) validate() error { return nil }

// Reconnected records that the technician reconnected to the device after a
// reboot or a dropped connection; it relies on the consent given to reboot.
type Reconnected struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
}

// EventType implements Payload.
func (Reconnected) EventType() string { return "session.reconnected" }

// Action implements ActionPayload.
func (Reconnected) Action() Action { return ActionReconnect }

func (p Reconnected) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (Reconnected) validate() error { return nil }

// SystemInfoViewed records that the technician viewed the device's system information.
type SystemInfoViewed struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
}

// EventType implements Payload.
func (SystemInfoViewed) EventType() string { return "session.system_info_viewed" }

// Action implements ActionPayload.
func (SystemInfoViewed) Action() Action { return ActionSystemInfo }

func (p SystemInfoViewed) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (SystemInfoViewed) validate() error { return nil }

// ScriptDeployed records that the technician ran a script on the device.
type ScriptDeployed struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
	// ScriptName is the script's name; sealed because names often carry user or host names.
	ScriptName string `json:"script_name" vigil:"sealed"`
	// SHA256 is the script's SHA-256 digest in lower-case hex, when known.
	SHA256 string `json:"sha256,omitempty"`
}

// EventType implements Payload.
func (ScriptDeployed) EventType() string { return "session.script_deployed" }

// Action implements ActionPayload.
func (ScriptDeployed) Action() Action { return ActionDeployScript }

func (p ScriptDeployed) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (p ScriptDeployed) validate() error {
	if p.ScriptName == "" {
		return Errorf(CodeInvalid, "script without a name")
	}
	if p.SHA256 != "" && !isLowerHex(p.SHA256, 32) {
		return Errorf(CodeInvalid, "sha256 must be 64 lower-case hex digits")
	}
	return nil
}

// URLSent records that the technician opened a URL on the customer's device.
type URLSent struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
	// URL is the address sent.
	URL string `json:"url" vigil:"sealed"`
}

// EventType implements Payload.
func (URLSent) EventType() string { return "session.url_sent" }

// Action implements ActionPayload.
func (URLSent) Action() Action { return ActionSendURL }

func (p URLSent) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (p URLSent) validate() error {
	u, err := url.Parse(p.URL)
	if err != nil || u.Scheme == "" {
		return Errorf(CodeInvalid, "url must be absolute")
	}
	return nil
}

// ClipboardSyncStarted records that clipboard synchronisation with the device began.
type ClipboardSyncStarted struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
}

// EventType implements Payload.
func (ClipboardSyncStarted) EventType() string { return "session.clipboard_sync_started" }

// Action implements ActionPayload.
func (ClipboardSyncStarted) Action() Action { return ActionClipboardSync }

func (p ClipboardSyncStarted) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (ClipboardSyncStarted) validate() error { return nil }

// ClipboardSyncEnded records the end of clipboard synchronisation.
type ClipboardSyncEnded struct {
	// Reason is a short code such as "technician", "customer" or "closed".
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (ClipboardSyncEnded) EventType() string { return "session.clipboard_sync_ended" }

// CredentialsRequested records that the technician asked the customer for
// Windows credentials. The credentials themselves never reach Vigil.
type CredentialsRequested struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
}

// EventType implements Payload.
func (CredentialsRequested) EventType() string { return "session.credentials_requested" }

// Action implements ActionPayload.
func (CredentialsRequested) Action() Action { return ActionRequestCredentials }

func (p CredentialsRequested) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (CredentialsRequested) validate() error { return nil }

// PrivateSessionStarted records that the technician started a private session.
type PrivateSessionStarted struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
}

// EventType implements Payload.
func (PrivateSessionStarted) EventType() string { return "session.private_session_started" }

// Action implements ActionPayload.
func (PrivateSessionStarted) Action() Action { return ActionPrivateSession }

func (p PrivateSessionStarted) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (PrivateSessionStarted) validate() error { return nil }

// PrivateSessionEnded records the end of a private session.
type PrivateSessionEnded struct {
	// Reason is a short code such as "technician", "customer" or "closed".
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (PrivateSessionEnded) EventType() string { return "session.private_session_ended" }

// ScreenSharedWithCustomer records that the technician began showing their own screen to the customer.
type ScreenSharedWithCustomer struct {
	// TechnicianID is the technician acting.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
}

// EventType implements Payload.
func (ScreenSharedWithCustomer) EventType() string { return "session.screen_shared_with_customer" }

// Action implements ActionPayload.
func (ScreenSharedWithCustomer) Action() Action { return ActionScreenShare }

func (p ScreenSharedWithCustomer) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID = t, c
	return p
}

func (ScreenSharedWithCustomer) validate() error { return nil }

// ScreenShareEnded records the end of screen sharing with the customer.
type ScreenShareEnded struct {
	// Reason is a short code such as "technician", "customer" or "closed".
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (ScreenShareEnded) EventType() string { return "session.screen_share_ended" }

// ChatMessage records one chat message. It is not recorded at all when the
// group's policy does not store chat.
type ChatMessage struct {
	// From is "technician" or "customer".
	From string `json:"from"`
	// SenderID is the technician's id when From is "technician".
	SenderID string `json:"sender_id,omitempty"`
	// Text is the message.
	Text string `json:"text" vigil:"sealed,chat"`
}

// EventType implements Payload.
func (ChatMessage) EventType() string { return "session.chat_message" }

// NoteAdded records a technician's note on the session; it needs neither
// permission nor consent.
type NoteAdded struct {
	// TechnicianID is the technician writing.
	TechnicianID string `json:"technician_id"`
	// Text is the note.
	Text string `json:"text" vigil:"sealed"`
}

// EventType implements Payload.
func (NoteAdded) EventType() string { return "session.note_added" }

// CustomFieldsSet records new values of the session's custom fields.
type CustomFieldsSet struct {
	// Fields are the values set, by field name.
	Fields map[string]string `json:"fields" vigil:"sealed"`
}

// EventType implements Payload.
func (CustomFieldsSet) EventType() string { return "session.custom_fields_set" }

// RecordingStarted records that the technician's console began recording the session screen.
type RecordingStarted struct {
	// TechnicianID is the technician recording.
	TechnicianID string `json:"technician_id"`
	// RecordingID identifies the recording within the session.
	RecordingID string `json:"recording_id"`
}

// EventType implements Payload.
func (RecordingStarted) EventType() string { return "session.recording_started" }

// RecordingStopped records the end of a recording.
type RecordingStopped struct {
	// RecordingID identifies the recording.
	RecordingID string `json:"recording_id"`
	// Reason is a short code such as "technician" or "closed".
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (RecordingStopped) EventType() string { return "session.recording_stopped" }

// RecordingStored records that a recording was encrypted and stored.
type RecordingStored struct {
	// RecordingID identifies the recording.
	RecordingID string `json:"recording_id"`
	// Object is the storage key of the encrypted recording.
	Object string `json:"object"`
	// Size is the plaintext size in bytes.
	Size int64 `json:"size"`
	// MD5 is the plaintext's MD5 digest in lower-case hex.
	MD5 string `json:"md5"`
	// SHA256 is the plaintext's SHA-256 digest in lower-case hex.
	SHA256 string `json:"sha256"`
	// ContentType is the recording's media type as uploaded.
	ContentType string `json:"content_type,omitempty"`
	// ChunkRoot is the RFC 6962 Merkle root over the plaintext chunks, in lower-case hex.
	ChunkRoot string `json:"chunk_root,omitempty"`
	// ChunkSize is the plaintext size of each encrypted chunk but the last.
	ChunkSize int `json:"chunk_size,omitempty"`
	// KeyID names the session data key the chunks are sealed with.
	KeyID string `json:"key_id,omitempty"`
	// DurationMS is the duration the uploader declared, in milliseconds.
	DurationMS int64 `json:"duration_ms,omitempty"`
}

// EventType implements Payload.
func (RecordingStored) EventType() string { return "session.recording_stored" }

// RecordingFailed records that storing a recording failed for good after bounded retries.
type RecordingFailed struct {
	// RecordingID identifies the recording.
	RecordingID string `json:"recording_id"`
	// Reason is a short, non-personal description of the failure.
	Reason string `json:"reason"`
	// Attempts is the number of upload attempts made.
	Attempts int `json:"attempts"`
}

// EventType implements Payload.
func (RecordingFailed) EventType() string { return "session.recording_failed" }

// RecordingViewed records one playback of a recording; the viewer is the event's actor.
type RecordingViewed struct {
	// RecordingID identifies the recording.
	RecordingID string `json:"recording_id"`
	// Range is the plaintext byte range served, as "bytes=first-last"; empty for an empty recording.
	Range string `json:"range,omitempty"`
}

// EventType implements Payload.
func (RecordingViewed) EventType() string { return "session.recording_viewed" }

// RelayConnected records that one side reached the gateway relay.
type RelayConnected struct {
	// Side is "customer" or "technician".
	Side RelaySide `json:"side"`
	// RelayID names the relay node.
	RelayID string `json:"relay_id"`
	// SourceIP is the connecting address; left out for the customer side when the group does not store customer IPs.
	SourceIP string `json:"source_ip,omitempty" vigil:"sealed"`
}

// EventType implements Payload.
func (RelayConnected) EventType() string { return "session.relay_connected" }

// RelayPaired records that the relay joined the two sides and began copying bytes.
type RelayPaired struct {
	// RelayID names the relay node.
	RelayID string `json:"relay_id"`
	// PairingMS is how long the first side waited for the second, in milliseconds.
	PairingMS int64 `json:"pairing_ms,omitempty"`
}

// EventType implements Payload.
func (RelayPaired) EventType() string { return "session.relay_paired" }

// RelayClosed records the end of the relayed connection. It may follow the
// session's closed event, since the relay sees the sockets close last.
type RelayClosed struct {
	// RelayID names the relay node.
	RelayID string `json:"relay_id"`
	// BytesFromCustomer counts bytes copied from the customer to the technician.
	BytesFromCustomer int64 `json:"bytes_from_customer"`
	// BytesFromTechnician counts bytes copied from the technician to the customer.
	BytesFromTechnician int64 `json:"bytes_from_technician"`
	// DurationMS is how long the pair was connected, in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// Reason is a short code such as "customer_closed", "technician_closed", "timeout" or "error".
	Reason string `json:"reason"`
}

// EventType implements Payload.
func (RelayClosed) EventType() string { return "session.relay_closed" }

// SessionClosed records the end of the session. Every consent ends here and
// only recording, relay_closed, action_denied and compliance events may
// follow.
type SessionClosed struct {
	// ClosedBy is technician, customer, inactivity, relay or admin.
	ClosedBy ClosedBy `json:"closed_by"`
	// Reason is a short, non-personal comment.
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (SessionClosed) EventType() string { return "session.closed" }
