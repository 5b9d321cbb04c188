package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
)

// NewSession is a session to create.
type NewSession struct {
	Queue         string
	Channel       string
	GroupID       string // with an ingest key
	TechnicianID  string // private queue with an ingest key
	CustomerName  string
	CustomerEmail string
	CustomFields  map[string]string
	TrackingID    string
}

// CreatedSession is the answer to a session creation.
type CreatedSession struct {
	ID  string `json:"id"`
	PIN string `json:"pin"`
}

// CreateSession opens a session (technician token, or ingest key): a
// 128-bit random GUID, a 6-digit PIN, session.created with the customer's
// name, e-mail and custom fields sealed. A technician creates sessions in
// their own group (private ones for themselves); an ingest key names the
// group, and for a private queue the technician.
func (s *Service) CreateSession(ctx context.Context, p Principal, n NewSession, eventID [16]byte) (CreatedSession, error) {
	if err := requireFull(p); err != nil {
		return CreatedSession{}, err
	}
	if n.CustomFields != nil {
		if err := ValidateCustomFields(n.CustomFields); err != nil {
			return CreatedSession{}, err
		}
	}
	if len(n.TrackingID) > 128 || len(n.Channel) > 128 {
		return CreatedSession{}, domain.Errorf(domain.CodeInvalid, "tracking_id and channel take at most 128 characters")
	}
	if n.CustomerEmail != "" && !validEmail(normalizeEmail(n.CustomerEmail)) {
		return CreatedSession{}, domain.Errorf(domain.CodeInvalid, "customer email %q is not an e-mail address", n.CustomerEmail)
	}
	switch p.Role {
	case RoleTechnician:
		tech, err := s.loadTechnician(ctx, p.Tenant, p.TechnicianID)
		if err != nil {
			return CreatedSession{}, err
		}
		if n.GroupID != "" && n.GroupID != tech.GroupID() {
			return CreatedSession{}, errForbidden("a technician creates sessions in their own group")
		}
		if n.TechnicianID != "" && n.TechnicianID != tech.ID() {
			return CreatedSession{}, errForbidden("a technician creates private sessions for themselves")
		}
		n.GroupID = tech.GroupID()
		if n.Queue == domain.QueuePrivate {
			n.TechnicianID = tech.ID()
		}
	case RoleIngest:
		if n.GroupID == "" {
			return CreatedSession{}, domain.Errorf(domain.CodeInvalid, "group_id is required with an ingest key")
		}
		if n.Queue == domain.QueuePrivate {
			if n.TechnicianID == "" {
				return CreatedSession{}, domain.Errorf(domain.CodeInvalid, "a private-queue session needs technician_id")
			}
			if _, err := s.loadTechnician(ctx, p.Tenant, n.TechnicianID); err != nil {
				return CreatedSession{}, err
			}
		}
	default:
		return CreatedSession{}, errForbidden("sessions are created by technicians and ingest keys")
	}
	g, err := s.loadGroup(ctx, p.Tenant, n.GroupID)
	if err != nil {
		return CreatedSession{}, err
	}
	raw := make([]byte, 16)
	if _, err := rand.Read(raw); err != nil {
		return CreatedSession{}, err
	}
	guid := hex.EncodeToString(raw)
	pin, err := randomDigits(6)
	if err != nil {
		return CreatedSession{}, err
	}
	sess := domain.NewSession(p.Tenant, guid)
	cmd := s.cmd(p, eventID)
	events, err := sess.Create(cmd, domain.SessionCreated{
		PIN: pin, Queue: n.Queue, Channel: n.Channel, GroupID: g.ID(), TechnicianID: n.TechnicianID,
		TrackingID: n.TrackingID, CustomerName: n.CustomerName, CustomerEmail: n.CustomerEmail, CustomFields: n.CustomFields,
	})
	if err != nil {
		return CreatedSession{}, err
	}
	// Watch the session before it exists: a crash right after the append
	// must not leave a session the idle scheduler never sees.
	if err := s.activity.TouchSession(ctx, OpenSession{Tenant: p.Tenant, GUID: guid, LastActivity: cmd.At, IdleAfter: g.Policy().SessionInactivityTimeout.Duration()}); err != nil {
		return CreatedSession{}, err
	}
	if _, err := s.log.Append(ctx, sess.Stream(), 0, events...); err != nil {
		return CreatedSession{}, err
	}
	return CreatedSession{ID: guid, PIN: pin}, nil
}

func requireFull(p Principal) error {
	if p.Scope != ScopeFull {
		return errForbidden("this token may only enrol a second factor")
	}
	return nil
}

// techAccess says which technicians may send a command type.
type techAccess int

const (
	// techNever: only the customer's applet (an ingest key) sends it.
	techNever techAccess = iota
	// techHolder: the technician holding the session.
	techHolder
	// techPickUp: the owner of a private-queue session, or a member of the
	// group of a shared queue (the domain decides which).
	techPickUp
	// techCloser: the holder, or before pick-up the owner of a
	// private-queue session (the domain decides which).
	techCloser
)

// commandRule says who may send one command type.
type commandRule struct {
	technician techAccess
	// ingest: the customer's applet or the console's back end, through an
	// ingest key of the tenant (it may address any session of the tenant).
	ingest bool
	// audited: the domain itself refuses a technician who does not hold
	// the session, and records the refusal as session.action_denied. For
	// the other techHolder commands the service refuses before the domain
	// decides, and nothing is appended.
	audited bool
}

// commandRules is the one table of who may send each command type (every
// type of CommandTypes has a row; a test keeps it so). Whatever the row,
// a technician who cannot read the session (GET /v1/sessions/{id}/events
// answers not_found: he never created, owned, held or was handed it) gets
// the same not_found for every command and nothing is appended; pick_up
// also admits the members of a shared queue's group. A technician who can
// read it but does not hold it now gets forbidden.
var commandRules = map[string]commandRule{
	"connect_customer":    {ingest: true},
	"pick_up":             {technician: techPickUp},
	"request_consent":     {technician: techHolder, audited: true},
	"grant_consent":       {ingest: true},
	"deny_consent":        {ingest: true},
	"start":               {technician: techHolder, audited: true},
	"end":                 {technician: techHolder, ingest: true},
	"send_file":           {technician: techHolder, audited: true},
	"receive_file":        {technician: techHolder, audited: true},
	"reboot":              {technician: techHolder, audited: true},
	"reconnected":         {technician: techHolder, audited: true},
	"view_system_info":    {technician: techHolder, audited: true},
	"request_credentials": {technician: techHolder, audited: true},
	"deploy_script":       {technician: techHolder, audited: true},
	"send_url":            {technician: techHolder, audited: true},
	"chat":                {technician: techHolder, ingest: true, audited: true},
	"note":                {technician: techHolder, audited: true},
	"set_custom_fields":   {technician: techHolder, ingest: true},
	"transfer":            {technician: techHolder, audited: true},
	"start_recording":     {technician: techHolder, audited: true},
	"stop_recording":      {technician: techHolder},
	"close":               {technician: techCloser, ingest: true},
	"p2p":                 {technician: techHolder, ingest: true},
}

// technicianMay applies rule to technician tech for the session sess whose
// events are evs: not_found when he cannot see the session, forbidden when
// he sees it but the rule wants the holder (unless the domain audits the
// refusal itself).
func technicianMay(rule commandRule, sess *domain.Session, evs []domain.Event, tech *domain.Technician) error {
	visible := heldBy(evs, tech.ID())
	if !visible && rule.technician == techPickUp {
		queue, group := queueOf(evs)
		visible = queue == domain.QueueShared && group == tech.GroupID()
	}
	if !visible {
		return errNotFound("session %s does not exist", sess.GUID())
	}
	if rule.technician == techHolder && !rule.audited && sess.TechnicianID() != tech.ID() {
		return errForbidden("technician %s does not hold session %s", tech.ID(), sess.GUID())
	}
	return nil
}

// continuous maps the actions of start and end to their payloads.
var startPayloads = map[domain.Action]func() domain.ActionPayload{
	domain.ActionRemoteControl:  func() domain.ActionPayload { return domain.RemoteControlStarted{} },
	domain.ActionDesktopView:    func() domain.ActionPayload { return domain.DesktopViewStarted{} },
	domain.ActionFileManager:    func() domain.ActionPayload { return domain.FileManagerOpened{} },
	domain.ActionPrivateSession: func() domain.ActionPayload { return domain.PrivateSessionStarted{} },
	domain.ActionScreenShare:    func() domain.ActionPayload { return domain.ScreenSharedWithCustomer{} },
	domain.ActionClipboardSync:  func() domain.ActionPayload { return domain.ClipboardSyncStarted{} },
}

var barePayloads = map[string]func() domain.ActionPayload{
	"reboot":              func() domain.ActionPayload { return domain.RebootRequested{} },
	"reconnected":         func() domain.ActionPayload { return domain.Reconnected{} },
	"view_system_info":    func() domain.ActionPayload { return domain.SystemInfoViewed{} },
	"request_credentials": func() domain.ActionPayload { return domain.CredentialsRequested{} },
}

// parseAction reads the action of a consent command: an action name, or
// "all" for the one-time prompt. A permission name (PermissionSet) is
// accepted for the one action it covers when its name differs
// (record_sessions, transfer_session); one that covers several
// (file_transfer: send_file, receive_file) is refused with those actions
// named. Refusals list the valid actions.
func parseAction(s string) (domain.Action, error) {
	if s == "all" {
		return domain.ActionOneTimePrompt, nil
	}
	a := domain.Action(s)
	if _, ok := a.Rule(); ok {
		return a, nil
	}
	var covered, valid []string
	for _, act := range domain.Actions() {
		valid = append(valid, string(act))
		if r, _ := act.Rule(); string(r.Permission) == s {
			covered = append(covered, string(act))
		}
	}
	if len(covered) == 1 {
		return domain.Action(covered[0]), nil
	}
	if len(covered) > 1 {
		return "", domain.Errorf(domain.CodeInvalid, "unknown action %q: it is the permission of the actions %s; valid actions: all, %s", s, strings.Join(covered, ", "), strings.Join(valid, ", "))
	}
	return "", domain.Errorf(domain.CodeInvalid, "unknown action %q; valid actions: all, %s", s, strings.Join(valid, ", "))
}

// SessionCommand runs command c on session guid for p and returns the
// events it appended. Who may send what is commandRules. Refusals of
// actions (permission_denied, consent_required, recording_required,
// forbidden for a technician not holding the session) are appended as
// session.action_denied and returned with the error. Errors: not_found
// for a session not in p's tenant, and for a technician who cannot read
// the session (nothing appended); forbidden for a command p's role may not
// send; session_closed after close; invalid for a bad command.
func (s *Service) SessionCommand(ctx context.Context, p Principal, guid string, c Command, eventID [16]byte) ([]domain.Event, error) {
	if err := requireFull(p); err != nil {
		return nil, err
	}
	name := c.CommandType()
	rule, ok := commandRules[name]
	if !ok {
		return nil, domain.Errorf(domain.CodeInvalid, "unknown command %q", name)
	}
	switch p.Role {
	case RoleTechnician:
		if rule.technician == techNever {
			return nil, errForbidden("%s is sent by the customer's applet (ingest key)", name)
		}
	case RoleIngest:
		if !rule.ingest {
			return nil, errForbidden("%s is sent by the technician's console", name)
		}
	default:
		return nil, errForbidden("session commands come from technicians and ingest keys")
	}
	if chat, ok := c.(ChatCmd); ok {
		want := "technician"
		if p.Role == RoleIngest {
			want = "customer"
		}
		if chat.From != want {
			return nil, domain.Errorf(domain.CodeInvalid, "chat from %q with this credential: want from %q", chat.From, want)
		}
	}
	if _, err := uuid.Parse(guid); err != nil || len(guid) != 32 {
		return nil, errNotFound("session %s does not exist", guid)
	}
	actor := p.Actor()
	if p.Role == RoleIngest {
		actor = domain.Actor{Kind: domain.ActorCustomer, ID: p.CredentialID}
	}
	var sess *domain.Session
	deferred, _ := ctx.Value(deferredKey{}).(*deferredAuth)
	out, err := retry(ctx, func() ([]domain.Event, error) {
		techID := ""
		if p.Role == RoleTechnician {
			techID = p.TechnicianID
		}
		// One read for the session's, technician's and group's new events,
		// and for the row of a credential authenticated from memory
		// (AuthenticateDeferred), which is confirmed before anything else.
		stream := domain.SessionStream(guid)
		pctx := ctx
		if deferred != nil && !deferred.confirmed {
			pctx = context.WithValue(ctx, probeKey{}, &deferred.probe)
		}
		ctx := s.prefetch(pctx, p.Tenant, stream, techID)
		if err := s.confirmDeferred(ctx, deferred); err != nil {
			return nil, err
		}
		evs, err := s.events(ctx, p.Tenant, stream)
		if err != nil {
			return nil, err
		}
		if sess, err = s.sessionState(p.Tenant, guid, evs); err != nil {
			return nil, err
		}
		if !sess.Exists() {
			return nil, errNotFound("session %s does not exist", guid)
		}
		var tech *domain.Technician
		var techGroup *domain.Group
		if p.Role == RoleTechnician {
			if tech, err = s.loadTechnician(ctx, p.Tenant, p.TechnicianID); err != nil {
				return nil, err
			}
			if err := technicianMay(rule, sess, evs, tech); err != nil {
				return nil, err
			}
			if techGroup, err = s.loadGroup(ctx, p.Tenant, tech.GroupID()); err != nil {
				return nil, err
			}
		}
		governing := func() (*domain.Group, error) {
			if techGroup != nil && techGroup.ID() == sess.GroupID() {
				return techGroup, nil
			}
			return s.loadGroup(ctx, p.Tenant, sess.GroupID())
		}
		cmd := domain.Cmd{Actor: actor, At: s.Now(), EventID: eventID}
		events, decided := s.decide(ctx, sess, tech, techGroup, governing, cmd, c)
		if decided != nil && len(events) == 0 {
			return nil, decided
		}
		return s.commit(ctx, sess, events, decided)
	})
	if err == nil && sess != nil {
		s.track(ctx, sess)
	}
	return out, err
}

func (s *Service) decide(ctx context.Context, sess *domain.Session, tech *domain.Technician, g *domain.Group,
	governing func() (*domain.Group, error), cmd domain.Cmd, c Command) ([]domain.Event, error) {
	switch v := c.(type) {
	case ConnectCustomerCmd:
		ip, err := ParseIP(v.IP)
		if err != nil {
			return nil, err
		}
		gg, err := governing()
		if err != nil {
			return nil, err
		}
		return sess.ConnectCustomer(cmd, v.Platform, v.AppletVersion, ip, gg)
	case BareCmd:
		if v.Type == "pick_up" {
			return sess.PickUp(cmd, tech)
		}
		return sess.Perform(cmd, tech, g, barePayloads[v.Type]())
	case ActionCmd:
		a, err := parseAction(v.Action)
		if err != nil {
			return nil, err
		}
		switch v.Type {
		case "request_consent":
			return sess.RequestConsent(cmd, tech, g, a)
		case "grant_consent":
			return sess.GrantConsent(cmd, a)
		case "deny_consent":
			return sess.DenyConsent(cmd, a)
		case "start":
			mk, ok := startPayloads[a]
			if !ok {
				return nil, domain.Errorf(domain.CodeInvalid, "start takes remote_control, desktop_view, file_manager, private_session, screen_share or clipboard_sync, not %q", a)
			}
			return sess.Perform(cmd, tech, g, mk())
		default: // end
			return sess.EndAction(cmd, a, v.Reason)
		}
	case FileCmd:
		if v.Type == "send_file" {
			return sess.Perform(cmd, tech, g, domain.FileSent{Name: v.Name, Size: *v.Size, MD5: v.MD5, SHA256: v.SHA256})
		}
		return sess.Perform(cmd, tech, g, domain.FileReceived{Name: v.Name, Size: *v.Size, MD5: v.MD5, SHA256: v.SHA256})
	case DeployScriptCmd:
		return sess.Perform(cmd, tech, g, domain.ScriptDeployed{ScriptName: v.Name, SHA256: v.SHA256})
	case SendURLCmd:
		return sess.Perform(cmd, tech, g, domain.URLSent{URL: v.URL})
	case ChatCmd:
		gg, err := governing()
		if err != nil {
			return nil, err
		}
		return sess.Chat(cmd, v.Text, gg)
	case NoteCmd:
		return sess.AddNote(cmd, tech, v.Text)
	case *P2PCmd:
		return decideP2P(sess, cmd, v)
	case CustomFieldsCmd:
		return sess.SetCustomFields(cmd, v.CustomFields)
	case TransferCmd:
		to, err := s.loadTechnician(ctx, sess.Tenant(), v.ToTechnician)
		if err != nil {
			return nil, err
		}
		return sess.Transfer(cmd, tech, g, to, v.Reason)
	case RecordingCmd:
		if v.Type == "start_recording" {
			id := v.RecordingID
			if id == "" {
				id = domain.NewEventID().String()
			}
			return sess.StartRecording(cmd, tech, g, id)
		}
		return sess.StopRecording(cmd, v.RecordingID, v.Reason)
	case CloseCmd:
		by := domain.ClosedByTechnician
		if cmd.Actor.Kind == domain.ActorCustomer {
			by = domain.ClosedByCustomer
		}
		return sess.Close(cmd, by, v.Reason)
	}
	return nil, domain.Errorf(domain.CodeInvalid, "unknown command %q", c.CommandType())
}

// track tells the idle scheduler about a closed session. Open sessions are
// not touched on every command: the scheduler reloads a session before it
// closes it, sees the later activity, and moves the row forward itself, so
// an active session costs one reload per timeout instead of a write per
// command. A failure is logged, not returned: the command was appended.
func (s *Service) track(ctx context.Context, sess *domain.Session) {
	if !sess.Closed() {
		return
	}
	if err := s.activity.EndSession(ctx, sess.Tenant(), sess.GUID()); err != nil {
		s.logger.Warn("idle tracking of a session", "session", sess.GUID(), "err", err)
	}
}

// TimelineEvent is one event of a session's timeline as the API shows it.
type TimelineEvent struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Version    int64           `json:"version"`
	Position   int64           `json:"position"`
	Seq        int64           `json:"seq"`
	OccurredAt time.Time       `json:"occurred_at"`
	RecordedAt time.Time       `json:"recorded_at"`
	Actor      domain.Actor    `json:"actor"`
	Data       json.RawMessage `json:"data"`
	// Personal holds the sealed fields: opened, "[erased]" after erasure,
	// or "[sealed]" for a caller not allowed to read them.
	Personal map[string]json.RawMessage `json:"personal,omitempty"`
	LeafHash string                     `json:"leaf_hash"`
}

// Erased and Sealed are what a personal field reads as when it cannot be
// shown.
var (
	Erased = json.RawMessage(`"[erased]"`)
	Sealed = json.RawMessage(`"[sealed]"`)
)

// ToTimeline converts stored events for the API; open says whether the
// personal fields may be shown.
func ToTimeline(evs []domain.Event, open bool) []TimelineEvent {
	out := make([]TimelineEvent, 0, len(evs))
	for _, e := range evs {
		t := TimelineEvent{
			ID: e.ID.String(), Type: e.Type, Version: e.Version, Position: e.Position, Seq: e.Seq,
			OccurredAt: e.OccurredAt, RecordedAt: e.RecordedAt, Actor: e.Actor, Data: e.Data,
			LeafHash: hex.EncodeToString(e.LeafHash[:]),
		}
		if len(e.Data) == 0 {
			t.Data = json.RawMessage(`{}`)
		}
		if len(e.Personal) > 0 || len(e.Sealed) > 0 {
			t.Personal = map[string]json.RawMessage{}
			for _, f := range e.Personal {
				switch {
				case f.Erased:
					t.Personal[f.Name] = Erased
				case !open:
					t.Personal[f.Name] = Sealed
				default:
					t.Personal[f.Name] = f.Value
				}
			}
			if len(e.Personal) == 0 {
				for _, f := range e.Sealed {
					t.Personal[f.Name] = Sealed
				}
			}
		}
		out = append(out, t)
	}
	return out
}

// SessionTimeline returns the events of session guid. Admins, auditors and
// the technicians who held the session see the personal fields; integration
// keys see them sealed; others are refused.
func (s *Service) SessionTimeline(ctx context.Context, p Principal, guid string) ([]TimelineEvent, error) {
	if err := requireFull(p); err != nil {
		return nil, err
	}
	if !p.Is(RoleAdmin, RoleAuditor, RoleTechnician, RoleIntegration) {
		return nil, errForbidden("this credential cannot read sessions")
	}
	if _, err := uuid.Parse(guid); err != nil || len(guid) != 32 {
		return nil, errNotFound("session %s does not exist", guid)
	}
	evs, err := s.log.Load(ctx, p.Tenant, domain.SessionStream(guid))
	if err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, errNotFound("session %s does not exist", guid)
	}
	open := p.Is(RoleAdmin, RoleAuditor)
	if p.Role == RoleTechnician {
		if !heldBy(evs, p.TechnicianID) {
			return nil, errNotFound("session %s does not exist", guid)
		}
		open = true
	}
	return ToTimeline(evs, open), nil
}

// heldBy reports whether technician id created, owned, picked up or
// received the session.
func heldBy(evs []domain.Event, id string) bool {
	for _, e := range evs {
		switch e.Type {
		case "session.created", "session.picked_up", "session.transferred":
		default:
			continue // decode only what can name a holder
		}
		p, err := domain.Decode(e)
		if err != nil {
			continue
		}
		switch v := p.(type) {
		case *domain.SessionCreated:
			if v.TechnicianID == id || (e.Actor.Kind == domain.ActorTechnician && e.Actor.ID == id) {
				return true
			}
		case *domain.SessionPickedUp:
			if v.TechnicianID == id {
				return true
			}
		case *domain.SessionTransferred:
			if v.ToTechnicianID == id || v.FromTechnicianID == id {
				return true
			}
		}
	}
	return false
}

// queueOf returns the queue and the queue's group of the session whose
// events are evs.
func queueOf(evs []domain.Event) (queue, group string) {
	for _, e := range evs {
		if e.Type != "session.created" {
			continue
		}
		if c, err := domain.Decode(e); err == nil {
			if v, ok := c.(*domain.SessionCreated); ok {
				return v.Queue, v.GroupID
			}
		}
		break
	}
	return "", ""
}

// EventIDFromKey derives the id of a request's first event from its
// Idempotency-Key, so that a repeat racing the first appends nothing twice:
// a name-based (SHA-1, version 5) UUID of the tenant, the credential and
// the key.
func EventIDFromKey(k IdempotencyKey) [16]byte {
	if k.Key == "" {
		return [16]byte{}
	}
	id := uuid.NewSHA1(uuid.NameSpaceURL, []byte(fmt.Sprintf("vigil:idempotency:%s:%s:%s", k.Tenant, k.Principal, k.Key)))
	return id
}
