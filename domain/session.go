package domain

import (
	"maps"
	"net/netip"
	"time"

	"github.com/google/uuid"
)

// SessionState is where a session stands in its lifecycle.
type SessionState string

// The lifecycle of a session: created → customer connected → picked up
// (possibly transferred) → closed.
const (
	SessionStateNone    SessionState = ""        // no session.created yet
	SessionStateWaiting SessionState = "waiting" // created, customer not connected
	SessionStateQueued  SessionState = "queued"  // customer connected, no technician yet
	SessionStateActive  SessionState = "active"  // a technician holds the session
	SessionStateClosed  SessionState = "closed"  // closed; only recording and compliance events follow
)

// recState is where one recording of a session stands.
type recState int

const (
	recordingRunning recState = iota + 1 // started, not stopped
	recordingStopped
	recordingStored
	recordingFailed
)

// Session is the support-session aggregate. It decides every technician
// action against the group's permissions and policy and the customer's
// consents, and records refusals as session.action_denied. It is not safe
// for concurrent use.
type Session struct {
	root
	guid         string
	created      bool
	groupID      string
	owner        string
	connected    bool
	technicianID string
	techGroupID  string
	closed       bool
	closedAt     time.Time
	erased       bool
	consents     map[Action]uuid.UUID
	global       uuid.UUID
	pending      map[Action]uuid.UUID
	active       map[Action]bool
	recordings   map[string]recState
	lastActivity time.Time
}

// NewSession returns the empty aggregate of the session with the given
// GUID in tenant, ready for Load or Create.
func NewSession(tenant, guid string) *Session {
	return &Session{
		root:       root{tenant: tenant, stream: SessionStream(guid)},
		guid:       guid,
		consents:   map[Action]uuid.UUID{},
		pending:    map[Action]uuid.UUID{},
		active:     map[Action]bool{},
		recordings: map[string]recState{},
	}
}

// Clone returns a copy of s that shares nothing s or the copy change
// later, without unappended changes: a snapshot to load newer events onto
// instead of replaying the whole stream.
func (s *Session) Clone() *Session {
	c := *s
	c.root.changes = nil
	c.consents = cloneOrNew(s.consents)
	c.pending = cloneOrNew(s.pending)
	c.active = cloneOrNew(s.active)
	c.recordings = cloneOrNew(s.recordings)
	return &c
}

func cloneOrNew[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return maps.Clone(m)
}

// Load applies the session's stored events in order. It returns an error
// of code invalid for events of another stream, out of order, or
// undecodable.
func (s *Session) Load(events []Event) error { return s.load(events, s.apply) }

// GUID returns the session's GUID.
func (s *Session) GUID() string { return s.guid }

// Exists reports whether the session was created.
func (s *Session) Exists() bool { return s.created }

// State returns the session's lifecycle state.
func (s *Session) State() SessionState {
	switch {
	case !s.created:
		return SessionStateNone
	case s.closed:
		return SessionStateClosed
	case s.technicianID != "":
		return SessionStateActive
	case s.connected:
		return SessionStateQueued
	}
	return SessionStateWaiting
}

// Closed reports whether the session is closed.
func (s *Session) Closed() bool { return s.closed }

// Erased reports whether the session's data key was destroyed.
func (s *Session) Erased() bool { return s.erased }

// CustomerConnected reports whether the customer's applet has connected.
func (s *Session) CustomerConnected() bool { return s.connected }

// TechnicianID returns the technician who holds the session, "" before
// pick-up.
func (s *Session) TechnicianID() string { return s.technicianID }

// GroupID returns the group whose policy governs the session: the holding
// technician's group once picked up, the queue's group before.
func (s *Session) GroupID() string {
	if s.techGroupID != "" {
		return s.techGroupID
	}
	return s.groupID
}

// Consent returns the id of the consent_granted event in force for action
// a itself (not through the one-time prompt), and false if there is none.
func (s *Session) Consent(a Action) (uuid.UUID, bool) {
	id, ok := s.consents[a]
	return id, ok
}

// GlobalConsent returns the id of the consent_granted event of a one-time
// prompt in force, and false if there is none.
func (s *Session) GlobalConsent() (uuid.UUID, bool) { return s.global, s.global != uuid.Nil }

// PendingConsent returns the id of the unanswered consent_requested event
// for a, and false if there is none.
func (s *Session) PendingConsent(a Action) (uuid.UUID, bool) {
	id, ok := s.pending[a]
	return id, ok
}

// Active reports whether continuous action a (such as remote control) is
// running.
func (s *Session) Active(a Action) bool { return s.active[a] }

// RecordingActive reports whether a recording is running.
func (s *Session) RecordingActive() bool {
	for _, st := range s.recordings {
		if st == recordingRunning {
			return true
		}
	}
	return false
}

// LastActivity returns when the technician or the customer last did
// something in the session.
func (s *Session) LastActivity() time.Time { return s.lastActivity }

// IdleSince reports whether the open session has seen no technician or
// customer activity for at least timeout at now. A timeout of zero or less
// disables idle detection. The scheduler closes idle sessions with
// ClosedByInactivity.
func (s *Session) IdleSince(now time.Time, timeout time.Duration) bool {
	return s.created && !s.closed && timeout > 0 && now.Sub(s.lastActivity) >= timeout
}

// Create records session.created. The GUID is the session's and the
// payload's GUID field is filled in; it must be a UUID (128 random bits). A
// private-queue session needs a PIN and the owning technician; every
// session needs its group. It returns an error of code conflict when the
// session exists and invalid for bad arguments.
func (s *Session) Create(cmd Cmd, p SessionCreated) ([]Event, error) {
	if s.created {
		return nil, coded(CodeConflict, ErrConflict, "session %s already exists", s.guid)
	}
	if _, err := uuid.Parse(s.guid); err != nil {
		return nil, Errorf(CodeInvalid, "session GUID %q is not a UUID", s.guid)
	}
	if p.GUID != "" && p.GUID != s.guid {
		return nil, Errorf(CodeInvalid, "session.created for %s on the stream of %s", p.GUID, s.guid)
	}
	p.GUID = s.guid
	switch {
	case p.GroupID == "":
		return nil, Errorf(CodeInvalid, "session without a group")
	case p.Queue == QueuePrivate && (p.PIN == "" || p.TechnicianID == ""):
		return nil, Errorf(CodeInvalid, "private-queue session needs a PIN and its technician")
	case p.Queue != QueuePrivate && p.Queue != QueueShared:
		return nil, Errorf(CodeInvalid, "queue %q: want private or shared", p.Queue)
	case p.Queue == QueueShared && p.TechnicianID != "":
		return nil, Errorf(CodeInvalid, "shared-queue session with an owning technician")
	}
	for i := 0; i < len(p.PIN); i++ {
		if p.PIN[i] < '0' || p.PIN[i] > '9' {
			return nil, Errorf(CodeInvalid, "PIN must be digits")
		}
	}
	return s.one(cmd, p)
}

// ConnectCustomer records session.customer_connected. g must be the group
// that governs the session (GroupID); when its policy does not store
// customer IPs, the address is left out. It returns an error of code
// not_found before creation, session_closed after closing, and invalid for
// another group or an empty platform.
func (s *Session) ConnectCustomer(cmd Cmd, platform, appletVersion string, ip netip.Addr, g *Group) ([]Event, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	if err := s.governing(g); err != nil {
		return nil, err
	}
	if platform == "" {
		return nil, Errorf(CodeInvalid, "customer connection without a platform")
	}
	p := CustomerConnected{Platform: platform, AppletVersion: appletVersion}
	if g.Policy().StoreCustomerIP {
		p.IP = addrString(ip)
	}
	return s.one(cmd, p)
}

// PickUp records session.picked_up by tech. A private-queue session can be
// picked up only by its owner, a shared-queue one only by a member of the
// queue's group, and only once the customer is connected. It returns an
// error of code not_found, session_closed, conflict (already held, or no
// customer yet), forbidden (another's session) or disabled.
func (s *Session) PickUp(cmd Cmd, tech *Technician) ([]Event, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	if err := techActor(cmd, tech); err != nil {
		return nil, err
	}
	switch {
	case s.technicianID != "":
		return nil, coded(CodeConflict, ErrConflict, "session %s is already held by a technician", s.guid)
	case !s.connected:
		return nil, coded(CodeConflict, ErrConflict, "session %s has no connected customer yet", s.guid)
	case tech.Disabled():
		return nil, coded(CodeDisabled, ErrDisabled, "technician %s is disabled", tech.ID())
	case s.owner != "" && tech.ID() != s.owner:
		return nil, coded(CodeForbidden, ErrForbidden, "session %s is in another technician's private queue", s.guid)
	case s.owner == "" && tech.GroupID() != s.groupID:
		return nil, coded(CodeForbidden, ErrForbidden, "session %s is queued for another group", s.guid)
	}
	return s.one(cmd, SessionPickedUp{TechnicianID: tech.ID(), GroupID: tech.GroupID()})
}

// Authorize decides whether tech, a member of g, may perform action a now,
// without recording anything. It returns the id of the consent_granted
// event the action relies on (uuid.Nil for actions that need no consent)
// or an error, checked in this order: not_found (no session or
// technician), invalid (g is not tech's group, unknown action),
// session_closed, forbidden (tech does not hold the session), disabled,
// permission_denied (the group lacks the permission; for the one-time
// prompt, also when the policy does not allow it), recording_required
// (forced recording and no recording running, for remote control and
// desktop view), consent_required (neither a consent for the action nor a
// one-time-prompt consent usable by the group). Coded errors match their
// sentinels (ErrSessionClosed, ErrForbidden, ErrDisabled,
// ErrPermissionDenied, ErrRecordingRequired, ErrConsentRequired).
func (s *Session) Authorize(a Action, tech *Technician, g *Group) (uuid.UUID, error) {
	id, _, err := s.authorize(a, tech, g, true)
	return id, err
}

// authorize implements Authorize and also returns the reason to audit in
// action_denied, "" when the refusal is a caller error not worth auditing.
// With full false it stops after the permission checks, as when asking for
// consent.
func (s *Session) authorize(a Action, tech *Technician, g *Group, full bool) (uuid.UUID, DenyReason, error) {
	rule, ok := actionRules[a]
	if !ok {
		return uuid.Nil, "", Errorf(CodeInvalid, "unknown action %q", a)
	}
	if err := s.mustExist(); err != nil {
		return uuid.Nil, "", err
	}
	if tech == nil || !tech.Exists() {
		return uuid.Nil, "", coded(CodeNotFound, ErrNotFound, "technician does not exist")
	}
	if g == nil || !g.Exists() || g.ID() != tech.GroupID() {
		return uuid.Nil, "", Errorf(CodeInvalid, "technician %s authorized against a group that is not theirs", tech.ID())
	}
	if s.closed {
		return uuid.Nil, DenySessionClosed, coded(CodeSessionClosed, ErrSessionClosed, "session %s is closed", s.guid)
	}
	if s.technicianID == "" || tech.ID() != s.technicianID {
		return uuid.Nil, DenyNotAssigned, coded(CodeForbidden, ErrForbidden, "technician %s does not hold session %s", tech.ID(), s.guid)
	}
	if tech.Disabled() {
		return uuid.Nil, DenyPermission, coded(CodeDisabled, ErrDisabled, "technician %s is disabled", tech.ID())
	}
	if rule.Permission != "" && !g.Has(rule.Permission) {
		return uuid.Nil, DenyPermission, coded(CodePermissionDenied, ErrPermissionDenied, "group %s does not grant %s", g.ID(), rule.Permission)
	}
	if a == ActionOneTimePrompt && !g.Policy().OneTimePromptAllowed {
		return uuid.Nil, DenyPermission, coded(CodePermissionDenied, ErrPermissionDenied, "group %s does not allow the one-time prompt", g.ID())
	}
	if !full {
		return uuid.Nil, "", nil
	}
	if rule.ForcedRecording && g.Policy().ForcedRecording && !s.RecordingActive() {
		return uuid.Nil, DenyRecording, coded(CodeRecordingRequired, ErrRecordingRequired, "group %s forces recording before %s", g.ID(), a)
	}
	if !rule.Consent {
		return uuid.Nil, "", nil
	}
	if id, ok := s.consents[rule.ConsentAction]; ok {
		return id, "", nil
	}
	if s.global != uuid.Nil && g.OneTimePromptEnabled() {
		return s.global, "", nil
	}
	return uuid.Nil, DenyConsent, coded(CodeConsentRequired, ErrConsentRequired, "the customer has not consented to %s", a)
}

// Perform decides privileged action p by tech, a member of g, and records
// it with the technician and the id of the consent relied on filled in.
// When Authorize refuses, Perform records session.action_denied and
// returns it together with the error, so that the refusal is appended too;
// caller errors (invalid payload, wrong group, unknown session or
// technician) record nothing. Starting a continuous action that already
// runs returns an error of code conflict.
func (s *Session) Perform(cmd Cmd, tech *Technician, g *Group, p ActionPayload) ([]Event, error) {
	if p == nil {
		return nil, Errorf(CodeInvalid, "no action")
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	a := p.Action()
	consent, err := s.check(cmd, tech, g, a, true)
	if err != nil {
		return s.refused(cmd, tech, a, err)
	}
	if actionRules[a].Continuous && s.active[a] {
		return nil, coded(CodeConflict, ErrConflict, "%s is already running", a)
	}
	return s.one(cmd, p.authorized(tech.ID(), consent))
}

// EndAction records the end of continuous action a (remote control,
// desktop view, clipboard sync, private session, screen share). The
// customer, the holding technician or the system may end it. It returns an
// error of code invalid for an action that does not run continuously,
// conflict when it is not running, forbidden for another technician and
// session_closed after closing (closing ends everything).
func (s *Session) EndAction(cmd Cmd, a Action, reason string) ([]Event, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	end, ok := endEvents[a]
	if !ok {
		return nil, Errorf(CodeInvalid, "%s does not run continuously", a)
	}
	if cmd.Actor.Kind == ActorTechnician && cmd.Actor.ID != s.technicianID {
		return nil, coded(CodeForbidden, ErrForbidden, "technician %s does not hold session %s", cmd.Actor.ID, s.guid)
	}
	if !s.active[a] {
		return nil, coded(CodeConflict, ErrConflict, "%s is not running", a)
	}
	return s.one(cmd, end(reason))
}

var endEvents = map[Action]func(reason string) Payload{
	ActionRemoteControl:  func(r string) Payload { return RemoteControlEnded{Reason: r} },
	ActionDesktopView:    func(r string) Payload { return DesktopViewEnded{Reason: r} },
	ActionClipboardSync:  func(r string) Payload { return ClipboardSyncEnded{Reason: r} },
	ActionPrivateSession: func(r string) Payload { return PrivateSessionEnded{Reason: r} },
	ActionScreenShare:    func(r string) Payload { return ScreenShareEnded{Reason: r} },
	ActionLensCamera:     func(r string) Payload { return LensStreamStopped{Reason: r} },
}

// RequestConsent records session.consent_requested: tech asks the customer
// to allow action a, or all actions when a is ActionOneTimePrompt. The
// technician must hold the session and the group must grant the action
// (for the one-time prompt: the one_time_prompt permission and a policy
// that allows it); refusals are recorded as action_denied and returned with
// the error, as in Perform. It returns an error of code invalid for an
// action that takes no consent of its own (reconnect relies on reboot's;
// transfer, recording, chat and notes need none).
func (s *Session) RequestConsent(cmd Cmd, tech *Technician, g *Group, a Action) ([]Event, error) {
	if !a.consentable() {
		return nil, Errorf(CodeInvalid, "%q takes no consent of its own", a)
	}
	if _, err := s.check(cmd, tech, g, a, false); err != nil {
		return s.refused(cmd, tech, a, err)
	}
	return s.one(cmd, ConsentRequested{TechnicianID: tech.ID(), Action: a})
}

// GrantConsent records session.consent_granted: the customer allows action
// a (all actions for ActionOneTimePrompt), answering the pending request.
// Its event id is what privileged actions will cite. It returns an error of
// code forbidden unless the actor is the customer, conflict when no request
// for a is pending and session_closed after closing.
func (s *Session) GrantConsent(cmd Cmd, a Action) ([]Event, error) {
	req, err := s.answerable(cmd, a)
	if err != nil {
		return nil, err
	}
	return s.one(cmd, ConsentGranted{Action: a, RequestEventID: req})
}

// DenyConsent records session.consent_denied: the customer refuses action
// a, answering the pending request; any consent previously given to a ends.
// Errors are those of GrantConsent.
func (s *Session) DenyConsent(cmd Cmd, a Action) ([]Event, error) {
	req, err := s.answerable(cmd, a)
	if err != nil {
		return nil, err
	}
	return s.one(cmd, ConsentDenied{Action: a, RequestEventID: req})
}

func (s *Session) answerable(cmd Cmd, a Action) (uuid.UUID, error) {
	if err := s.open(); err != nil {
		return uuid.Nil, err
	}
	if cmd.Actor.Kind != ActorCustomer {
		return uuid.Nil, coded(CodeForbidden, ErrForbidden, "only the customer answers a consent request")
	}
	req, ok := s.pending[a]
	if !ok {
		return uuid.Nil, coded(CodeConflict, ErrConflict, "no pending consent request for %s", a)
	}
	return req, nil
}

// Transfer records session.transferred from from (a member of fromGroup,
// holding the session) to to. It needs the transfer_session permission but
// no consent; refusals are recorded as action_denied and returned with the
// error. Every consent ends with the transfer and running actions stop: the
// customer consented to the previous technician. It returns an error of
// code not_found for an unknown target, disabled for a disabled target and
// invalid for a transfer to oneself.
func (s *Session) Transfer(cmd Cmd, from *Technician, fromGroup *Group, to *Technician, reason string) ([]Event, error) {
	if to == nil || !to.Exists() || to.Tenant() != s.tenant {
		return nil, coded(CodeNotFound, ErrNotFound, "transfer target does not exist")
	}
	if from != nil && to.ID() == from.ID() {
		return nil, Errorf(CodeInvalid, "transfer to the technician who holds the session")
	}
	if to.Disabled() {
		return nil, coded(CodeDisabled, ErrDisabled, "technician %s is disabled", to.ID())
	}
	if _, err := s.check(cmd, from, fromGroup, ActionTransfer, true); err != nil {
		return s.refused(cmd, from, ActionTransfer, err)
	}
	return s.one(cmd, SessionTransferred{FromTechnicianID: from.ID(), ToTechnicianID: to.ID(), ToGroupID: to.GroupID(), Reason: reason})
}

// Chat records session.chat_message from the actor (the holding technician
// or the customer). Chat needs no permission or consent. When g, the group
// governing the session, does not store chat, Chat records nothing and
// returns no events and no error. A technician who does not hold the
// session, or who chats after closing, is refused with action_denied as in
// Perform; a customer after closing gets session_closed.
func (s *Session) Chat(cmd Cmd, text string, g *Group) ([]Event, error) {
	if err := s.mustExist(); err != nil {
		return nil, err
	}
	if err := s.governing(g); err != nil {
		return nil, err
	}
	if text == "" {
		return nil, Errorf(CodeInvalid, "empty chat message")
	}
	msg := ChatMessage{Text: text}
	switch cmd.Actor.Kind {
	case ActorTechnician:
		if reason, err := s.holds(cmd.Actor.ID); err != nil {
			return s.deny(cmd, cmd.Actor.ID, ActionChat, reason, err)
		}
		msg.From, msg.SenderID = ChatFromTechnician, cmd.Actor.ID
	case ActorCustomer:
		if s.closed {
			return nil, coded(CodeSessionClosed, ErrSessionClosed, "session %s is closed", s.guid)
		}
		msg.From = ChatFromCustomer
	default:
		return nil, coded(CodeForbidden, ErrForbidden, "only the technician and the customer chat")
	}
	if !g.Policy().StoreChat {
		return nil, nil
	}
	return s.one(cmd, msg)
}

// AddNote records session.note_added by tech, who must hold the session;
// notes need neither permission nor consent. Refusals are recorded as
// action_denied and returned with the error.
func (s *Session) AddNote(cmd Cmd, tech *Technician, text string) ([]Event, error) {
	if err := s.mustExist(); err != nil {
		return nil, err
	}
	if err := techActor(cmd, tech); err != nil {
		return nil, err
	}
	if text == "" {
		return nil, Errorf(CodeInvalid, "empty note")
	}
	if reason, err := s.holds(tech.ID()); err != nil {
		return s.deny(cmd, tech.ID(), ActionNote, reason, err)
	}
	return s.one(cmd, NoteAdded{TechnicianID: tech.ID(), Text: text})
}

// SetCustomFields records session.custom_fields_set. It returns an error of
// code invalid for no fields and session_closed after closing.
func (s *Session) SetCustomFields(cmd Cmd, fields map[string]string) ([]Event, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	if len(fields) == 0 {
		return nil, Errorf(CodeInvalid, "no custom fields")
	}
	return s.one(cmd, CustomFieldsSet{Fields: maps.Clone(fields)})
}

// StartRecording records session.recording_started by tech, a member of g.
// It needs the record_sessions permission and no consent; refusals are
// recorded as action_denied and returned with the error. It returns an
// error of code conflict for a recording id already used.
func (s *Session) StartRecording(cmd Cmd, tech *Technician, g *Group, recordingID string) ([]Event, error) {
	if recordingID == "" {
		return nil, Errorf(CodeInvalid, "recording without an id")
	}
	if _, used := s.recordings[recordingID]; used {
		return nil, coded(CodeConflict, ErrConflict, "recording %s already exists", recordingID)
	}
	if _, err := s.check(cmd, tech, g, ActionRecord, true); err != nil {
		return s.refused(cmd, tech, ActionRecord, err)
	}
	return s.one(cmd, RecordingStarted{TechnicianID: tech.ID(), RecordingID: recordingID})
}

// StopRecording records session.recording_stopped; it is accepted after
// closing. It returns an error of code not_found for an unknown recording
// and conflict for one not running.
func (s *Session) StopRecording(cmd Cmd, recordingID, reason string) ([]Event, error) {
	if err := s.recordingIs(recordingID, recordingRunning); err != nil {
		return nil, err
	}
	return s.one(cmd, RecordingStopped{RecordingID: recordingID, Reason: reason})
}

// StoreRecording records session.recording_stored for a running or stopped
// recording; it is accepted after closing. It returns an error of code
// not_found for an unknown recording, conflict for one already stored or
// failed and invalid for a missing object or malformed digests.
func (s *Session) StoreRecording(cmd Cmd, p RecordingStored) ([]Event, error) {
	if err := s.recordingIs(p.RecordingID, recordingRunning, recordingStopped); err != nil {
		return nil, err
	}
	if p.Object == "" || p.Size < 0 || !isLowerHex(p.MD5, 16) || !isLowerHex(p.SHA256, 32) {
		return nil, Errorf(CodeInvalid, "stored recording needs an object, a size and lower-case hex md5 and sha256")
	}
	return s.one(cmd, p)
}

// FailRecording records session.recording_failed for a running or stopped
// recording whose upload gave up; it is accepted after closing. Errors are
// those of StoreRecording.
func (s *Session) FailRecording(cmd Cmd, p RecordingFailed) ([]Event, error) {
	if err := s.recordingIs(p.RecordingID, recordingRunning, recordingStopped); err != nil {
		return nil, err
	}
	if p.Reason == "" || p.Attempts < 1 {
		return nil, Errorf(CodeInvalid, "failed recording needs a reason and at least one attempt")
	}
	return s.one(cmd, p)
}

// ViewRecording records session.recording_viewed: the actor played a
// stored recording back. It returns an error of code not_found unless the
// recording is stored.
func (s *Session) ViewRecording(cmd Cmd, recordingID string) ([]Event, error) {
	if err := s.mustExist(); err != nil {
		return nil, err
	}
	if s.recordings[recordingID] != recordingStored {
		return nil, coded(CodeNotFound, ErrNotFound, "recording %s is not stored", recordingID)
	}
	return s.one(cmd, RecordingViewed{RecordingID: recordingID})
}

func (s *Session) recordingIs(id string, want ...recState) error {
	if err := s.mustExist(); err != nil {
		return err
	}
	st, ok := s.recordings[id]
	if !ok {
		return coded(CodeNotFound, ErrNotFound, "recording %q does not exist", id)
	}
	for _, w := range want {
		if st == w {
			return nil
		}
	}
	return coded(CodeConflict, ErrConflict, "recording %s is not in a state for this", id)
}

// ConnectRelay records session.relay_connected for one side. g must be the
// group governing the session; the customer side's address is left out
// when its policy does not store customer IPs. It returns an error of code
// invalid for an unknown side or relay and session_closed after closing.
func (s *Session) ConnectRelay(cmd Cmd, side RelaySide, relayID string, ip netip.Addr, g *Group) ([]Event, error) {
	if err := s.openAt(cmd.At); err != nil {
		return nil, err
	}
	if err := s.governing(g); err != nil {
		return nil, err
	}
	if side != RelaySideCustomer && side != RelaySideTechnician {
		return nil, Errorf(CodeInvalid, "relay side %q", side)
	}
	if relayID == "" {
		return nil, Errorf(CodeInvalid, "relay without an id")
	}
	p := RelayConnected{Side: side, RelayID: relayID, SourceIP: addrString(ip)}
	if side == RelaySideCustomer && !g.Policy().StoreCustomerIP {
		p.SourceIP = ""
	}
	return s.one(cmd, p)
}

// PairRelay records session.relay_paired. It returns an error of code
// session_closed after closing and invalid without a relay id or with a
// negative pairing time.
func (s *Session) PairRelay(cmd Cmd, p RelayPaired) ([]Event, error) {
	if err := s.openAt(cmd.At); err != nil {
		return nil, err
	}
	if p.RelayID == "" || p.PairingMS < 0 {
		return nil, Errorf(CodeInvalid, "relay pairing needs a relay id and a non-negative pairing time")
	}
	return s.one(cmd, p)
}

// CloseRelay records session.relay_closed; it is accepted after the
// session closed, since the relay sees its sockets close last. It returns
// an error of code invalid for negative counts.
func (s *Session) CloseRelay(cmd Cmd, p RelayClosed) ([]Event, error) {
	if err := s.mustExist(); err != nil {
		return nil, err
	}
	if p.RelayID == "" || p.BytesFromCustomer < 0 || p.BytesFromTechnician < 0 || p.DurationMS < 0 {
		return nil, Errorf(CodeInvalid, "relay close needs a relay id and non-negative counts")
	}
	return s.one(cmd, p)
}

// Close records session.closed, which ends every consent and every running
// action. The customer may close at any time; a technician only a session
// they hold. It returns an error of code invalid for an unknown closer,
// forbidden when the actor does not match by (technician: the holder;
// customer: the customer) and session_closed when already closed.
func (s *Session) Close(cmd Cmd, by ClosedBy, reason string) ([]Event, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	if !by.Valid() {
		return nil, Errorf(CodeInvalid, "closed_by %q", by)
	}
	switch by {
	case ClosedByTechnician:
		holder := s.technicianID
		if holder == "" {
			holder = s.owner
		}
		if cmd.Actor.Kind != ActorTechnician || holder == "" || cmd.Actor.ID != holder {
			return nil, coded(CodeForbidden, ErrForbidden, "only the technician holding session %s closes it as technician", s.guid)
		}
	case ClosedByCustomer:
		if cmd.Actor.Kind != ActorCustomer {
			return nil, coded(CodeForbidden, ErrForbidden, "closed_by customer from a %s actor", cmd.Actor.Kind)
		}
	}
	return s.one(cmd, SessionClosed{ClosedBy: by, Reason: reason})
}

// RecordCompliance records a compliance.* event on the session's stream;
// it is accepted after closing. It returns an error of code invalid for any
// other event type.
func (s *Session) RecordCompliance(cmd Cmd, p Payload) ([]Event, error) {
	if err := s.mustExist(); err != nil {
		return nil, err
	}
	if p == nil || !IsComplianceEvent(p.EventType()) {
		return nil, Errorf(CodeInvalid, "not a compliance event")
	}
	return s.one(cmd, p)
}

// check runs authorize for a command by tech, after checking that the
// command's actor is tech.
func (s *Session) check(cmd Cmd, tech *Technician, g *Group, a Action, full bool) (uuid.UUID, error) {
	if err := techActor(cmd, tech); err != nil {
		return uuid.Nil, err
	}
	id, reason, err := s.authorize(a, tech, g, full)
	if err != nil {
		return uuid.Nil, denial{reason: reason, err: err}
	}
	return id, nil
}

// denial carries the reason to audit from check to refused.
type denial struct {
	reason DenyReason
	err    error
}

func (d denial) Error() string { return d.err.Error() }

// refused turns an error from check into its result: an audited refusal
// records action_denied, anything else records nothing.
func (s *Session) refused(cmd Cmd, tech *Technician, a Action, err error) ([]Event, error) {
	d, ok := err.(denial)
	if !ok {
		return nil, err
	}
	if d.reason == "" {
		return nil, d.err
	}
	return s.deny(cmd, tech.ID(), a, d.reason, d.err)
}

// deny records session.action_denied and returns it with err.
func (s *Session) deny(cmd Cmd, technicianID string, a Action, reason DenyReason, err error) ([]Event, error) {
	events, rerr := s.one(cmd, ActionDenied{TechnicianID: technicianID, Action: a, Reason: reason})
	if rerr != nil {
		return nil, rerr
	}
	return events, err
}

// holds checks that the technician may act in the open session at all.
func (s *Session) holds(technicianID string) (DenyReason, error) {
	if s.closed {
		return DenySessionClosed, coded(CodeSessionClosed, ErrSessionClosed, "session %s is closed", s.guid)
	}
	if s.technicianID == "" || technicianID != s.technicianID {
		return DenyNotAssigned, coded(CodeForbidden, ErrForbidden, "technician %s does not hold session %s", technicianID, s.guid)
	}
	return "", nil
}

func techActor(cmd Cmd, tech *Technician) error {
	if tech == nil || !tech.Exists() {
		return coded(CodeNotFound, ErrNotFound, "technician does not exist")
	}
	if cmd.Actor.Kind != ActorTechnician || cmd.Actor.ID != tech.ID() {
		return Errorf(CodeInvalid, "command by %s %q for technician %s", cmd.Actor.Kind, cmd.Actor.ID, tech.ID())
	}
	return nil
}

func (s *Session) governing(g *Group) error {
	if g == nil || !g.Exists() || g.ID() != s.GroupID() {
		return Errorf(CodeInvalid, "session %s is governed by group %s", s.guid, s.GroupID())
	}
	return nil
}

func (s *Session) mustExist() error {
	if !s.created {
		return coded(CodeNotFound, ErrNotFound, "session %s does not exist", s.guid)
	}
	return nil
}

func (s *Session) open() error {
	if err := s.mustExist(); err != nil {
		return err
	}
	if s.closed {
		return coded(CodeSessionClosed, ErrSessionClosed, "session %s is closed", s.guid)
	}
	return nil
}

// openAt is open for the relay's reports, which travel through the bus and
// may arrive after the session closed: a report of something that happened
// at or before the close is still accepted, so that no relay event is lost
// to the race; anything later is refused.
func (s *Session) openAt(at time.Time) error {
	if err := s.mustExist(); err != nil {
		return err
	}
	if s.closed && at.After(s.closedAt) {
		return coded(CodeSessionClosed, ErrSessionClosed, "session %s is closed", s.guid)
	}
	return nil
}

// lateRelayReport reports whether an event of type typ recorded at at is a
// relay report of something that happened before the close.
func (s *Session) lateRelayReport(typ string, at time.Time) bool {
	return (typ == "session.relay_connected" || typ == "session.relay_paired") && !at.After(s.closedAt)
}

// AllowedAfterClose reports whether an event of type typ may be appended to
// a closed session's stream: the recording pipeline (recording_stopped,
// recording_stored, recording_failed, recording_viewed), the relay's own
// end (relay_closed), audited refusals (action_denied) and compliance
// events.
func AllowedAfterClose(typ string) bool {
	switch typ {
	case "session.recording_stopped", "session.recording_stored", "session.recording_failed",
		"session.recording_viewed", "session.relay_closed", "session.action_denied":
		return true
	}
	return IsComplianceEvent(typ)
}

func (s *Session) one(cmd Cmd, p Payload) ([]Event, error) {
	if s.closed && !AllowedAfterClose(p.EventType()) && !s.lateRelayReport(p.EventType(), cmd.At) {
		return nil, coded(CodeSessionClosed, ErrSessionClosed, "session %s is closed", s.guid)
	}
	e, err := s.record(cmd, p, s.apply)
	if err != nil {
		return nil, err
	}
	return []Event{e}, nil
}

func (s *Session) revokeAll() {
	clear(s.consents)
	clear(s.pending)
	clear(s.active)
	s.global = uuid.Nil
}

func (s *Session) apply(e Event, p Payload) {
	if e.Actor.Kind == ActorTechnician || e.Actor.Kind == ActorCustomer || p.EventType() == "session.created" {
		if e.OccurredAt.After(s.lastActivity) {
			s.lastActivity = e.OccurredAt
		}
	}
	switch p := p.(type) {
	case SessionCreated:
		s.created = true
		s.groupID = p.GroupID
		s.owner = p.TechnicianID
	case CustomerConnected:
		s.connected = true
	case SessionPickedUp:
		s.technicianID = p.TechnicianID
		s.techGroupID = p.GroupID
	case SessionTransferred:
		s.technicianID = p.ToTechnicianID
		s.techGroupID = p.ToGroupID
		s.revokeAll()
	case ConsentRequested:
		s.pending[p.Action] = e.ID
	case ConsentGranted:
		delete(s.pending, p.Action)
		if p.Action == ActionOneTimePrompt {
			s.global = e.ID
		} else {
			s.consents[p.Action] = e.ID
		}
	case ConsentDenied:
		delete(s.pending, p.Action)
		if p.Action == ActionOneTimePrompt {
			s.global = uuid.Nil
		} else {
			delete(s.consents, p.Action)
		}
	case ActionPayload:
		if actionRules[p.Action()].Continuous {
			s.active[p.Action()] = true
		}
	case RemoteControlEnded:
		delete(s.active, ActionRemoteControl)
	case DesktopViewEnded:
		delete(s.active, ActionDesktopView)
	case ClipboardSyncEnded:
		delete(s.active, ActionClipboardSync)
	case PrivateSessionEnded:
		delete(s.active, ActionPrivateSession)
	case ScreenShareEnded:
		delete(s.active, ActionScreenShare)
	case LensStreamStopped:
		delete(s.active, ActionLensCamera)
	case RecordingStarted:
		s.recordings[p.RecordingID] = recordingRunning
	case RecordingStopped:
		s.recordings[p.RecordingID] = recordingStopped
	case RecordingStored:
		s.recordings[p.RecordingID] = recordingStored
	case RecordingFailed:
		s.recordings[p.RecordingID] = recordingFailed
	case SessionClosed:
		s.closed = true
		s.closedAt = e.OccurredAt
		s.revokeAll()
	case SubjectErased:
		s.erased = true
	}
}
