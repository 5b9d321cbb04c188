package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

// CustomerEmailPurpose is the blind-index purpose of customer e-mail
// addresses in rpt_sessions.customer_email_idx; readers compute the same
// index to search by address.
const CustomerEmailPurpose = "customer-email"

// Crypto is what the reporting projection needs of the ledger's keys: to
// open the customer's e-mail address for its blind index.
type Crypto interface {
	Open(ctx context.Context, e *domain.Event) error
	BlindIndex(ctx context.Context, purpose, value string) ([]byte, error)
}

// Reporting projects sessions, chat, notes, file transfers, consents,
// privileged actions, logins, technician performance and recordings into
// the rpt_* tables of migration 00003. Personal values are stored as sealed
// references (ledger.EncodeSealedRef), opened at read time.
type Reporting struct {
	crypto Crypto
}

// NewReporting returns the reporting projection.
func NewReporting(c Crypto) *Reporting { return &Reporting{crypto: c} }

// Name implements Projection.
func (*Reporting) Name() string { return "reporting" }

var reportingTables = []string{"rpt_sessions", "rpt_chat", "rpt_notes", "rpt_file_transfers", "rpt_consents",
	"rpt_actions", "rpt_logins", "rpt_technician_daily", "rpt_recordings", "rpt_lens_conferences"}

// Tables implements Tabled.
func (*Reporting) Tables() []string { return slices.Clone(reportingTables) }

// Reset implements Projection.
func (*Reporting) Reset(ctx context.Context, tx pgx.Tx) error {
	for _, t := range reportingTables {
		if _, err := tx.Exec(ctx, "DELETE FROM "+t); err != nil {
			return err
		}
	}
	return nil
}

type sessionRow struct {
	tenant, guid, status, queue, channel, groupID, technicianID, ownerID, platform, trackingID string
	createdAt                                                                                  time.Time
	connectedAt, pickedUpAt, closedAt                                                          *time.Time
	waitingS, pickupS, activeS, totalS                                                         *float64
	transfers                                                                                  int32
	tools                                                                                      []string
	closedBy, closeReason                                                                      string
	recorded                                                                                   bool
	nameRef, emailRef, fieldsRef, emailIdx                                                     []byte
	createdPosition, lastPosition                                                              int64
	// Issue 18 (migration 00018): the gateway the applet chose, the
	// transport, the time to P2P and why it failed, the Lens streaming.
	gatewayID, transport, p2pFailure string
	p2pMS                            *int64
	lensMS                           int64
}

type dailyKey struct {
	tenant, technician string
	day                time.Time
}

type daily struct {
	sessions, pickupN, durationN, transfers int32
	// pickupUS and durationUS are sums of microseconds: integers, so that
	// the sums do not depend on how the log was cut into batches (float
	// sums did, in their last bits, and a rebuild then differed).
	pickupUS, durationUS int64
}

type recordingRow struct {
	tenant, guid, id, technicianID, state string
	startedAt, stoppedAt, storedAt        *time.Time
	objectKey, contentType, md5, sha256   string
	size                                  *int64
	failure                               string
	views                                 int32
	durationMS                            *int64 // declared by the uploader; nil when not
}

// batch is the state one Apply accumulates before writing.
type batch struct {
	sessions   map[[2]string]*sessionRow
	daily      map[dailyKey]*daily
	recordings map[[3]string]*recordingRow
	chat       [][]any
	notes      [][]any
	files      [][]any
	consents   [][]any
	actions    [][]any
	logins     [][]any
	lens       []lensOp // lens.go
}

func ref(e *domain.Event, field string) []byte {
	for _, f := range e.Sealed {
		if f.Name == field {
			return ledger.EncodeSealedRef(e.ID, f)
		}
	}
	return nil
}

func seconds(from, to *time.Time) *float64 {
	if from == nil || to == nil {
		return nil
	}
	s := to.Sub(*from).Seconds()
	return &s
}

func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func nullUUID(id uuid.UUID) *uuid.UUID {
	if id == uuid.Nil {
		return nil
	}
	return &id
}

// Apply implements Projection.
func (r *Reporting) Apply(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
	b := &batch{sessions: map[[2]string]*sessionRow{}, daily: map[dailyKey]*daily{}, recordings: map[[3]string]*recordingRow{}}
	if err := b.loadSessions(ctx, tx, events); err != nil {
		return err
	}
	if err := b.loadRecordings(ctx, tx, events); err != nil {
		return err
	}
	for i := range events {
		if err := r.apply(ctx, b, &events[i]); err != nil {
			return err
		}
	}
	return b.write(ctx, tx)
}

// loadSessions reads the rows of the sessions the batch touches.
func (b *batch) loadSessions(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
	var tenants, guids []string
	seen := map[[2]string]bool{}
	for _, e := range events {
		if !strings.HasPrefix(e.Stream, domain.SessionStreamPrefix) {
			continue
		}
		k := [2]string{e.Tenant, strings.TrimPrefix(e.Stream, domain.SessionStreamPrefix)}
		if !seen[k] {
			seen[k] = true
			tenants, guids = append(tenants, k[0]), append(guids, k[1])
		}
	}
	if len(guids) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT s.tenant, s.guid, status, queue, channel, group_id, technician_id, owner_id, platform, tracking_id,
			created_at, connected_at, picked_up_at, closed_at, waiting_s, pickup_s, active_s, total_s, transfers, tools,
			closed_by, close_reason, recorded, customer_name_ref, customer_email_ref, custom_fields_ref, customer_email_idx,
			created_position, last_position, gateway_id, transport, p2p_ms, p2p_failure, lens_ms
		FROM rpt_sessions s JOIN unnest($1::text[], $2::text[]) AS u(tenant, guid) ON s.tenant = u.tenant AND s.guid = u.guid`, tenants, guids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		s := &sessionRow{}
		if err := rows.Scan(&s.tenant, &s.guid, &s.status, &s.queue, &s.channel, &s.groupID, &s.technicianID, &s.ownerID, &s.platform, &s.trackingID,
			&s.createdAt, &s.connectedAt, &s.pickedUpAt, &s.closedAt, &s.waitingS, &s.pickupS, &s.activeS, &s.totalS, &s.transfers, &s.tools,
			&s.closedBy, &s.closeReason, &s.recorded, &s.nameRef, &s.emailRef, &s.fieldsRef, &s.emailIdx,
			&s.createdPosition, &s.lastPosition, &s.gatewayID, &s.transport, &s.p2pMS, &s.p2pFailure, &s.lensMS); err != nil {
			return err
		}
		b.sessions[[2]string{s.tenant, s.guid}] = s
	}
	return rows.Err()
}

func (b *batch) loadRecordings(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
	var tenants, guids []string
	seen := map[[2]string]bool{}
	for _, e := range events {
		if !strings.HasPrefix(e.Type, "session.recording_") {
			continue
		}
		k := [2]string{e.Tenant, strings.TrimPrefix(e.Stream, domain.SessionStreamPrefix)}
		if !seen[k] {
			seen[k] = true
			tenants, guids = append(tenants, k[0]), append(guids, k[1])
		}
	}
	if len(guids) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT r.tenant, r.guid, recording_id, technician_id, state, started_at, stopped_at, stored_at,
			object_key, content_type, size, md5, sha256, failure, views, duration_ms
		FROM rpt_recordings r JOIN unnest($1::text[], $2::text[]) AS u(tenant, guid) ON r.tenant = u.tenant AND r.guid = u.guid`, tenants, guids)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		x := &recordingRow{}
		if err := rows.Scan(&x.tenant, &x.guid, &x.id, &x.technicianID, &x.state, &x.startedAt, &x.stoppedAt, &x.storedAt,
			&x.objectKey, &x.contentType, &x.size, &x.md5, &x.sha256, &x.failure, &x.views, &x.durationMS); err != nil {
			return err
		}
		b.recordings[[3]string{x.tenant, x.guid, x.id}] = x
	}
	return rows.Err()
}

func (b *batch) day(tenant, technician string, t time.Time) *daily {
	k := dailyKey{tenant, technician, day(t)}
	d, ok := b.daily[k]
	if !ok {
		d = &daily{}
		b.daily[k] = d
	}
	return d
}

func (b *batch) recording(e *domain.Event, id string) *recordingRow {
	guid := strings.TrimPrefix(e.Stream, domain.SessionStreamPrefix)
	k := [3]string{e.Tenant, guid, id}
	x, ok := b.recordings[k]
	if !ok {
		x = &recordingRow{tenant: e.Tenant, guid: guid, id: id, state: "recording"}
		b.recordings[k] = x
	}
	return x
}

func (r *Reporting) apply(ctx context.Context, b *batch, e *domain.Event) error {
	p, err := decode(e)
	if err != nil {
		why := "the payload does not decode"
		if _, known := domain.Catalogue.Spec(e.Type); !known {
			why = "an event type this version does not know"
		}
		return poison(why, fmt.Errorf("position %d: %w", e.Position, err))
	}
	at := e.OccurredAt.UTC()
	if strings.HasPrefix(e.Stream, domain.TechnicianStreamPrefix) || e.Type == "technician.login_failed" || e.Type == "technician.sso_login_failed" ||
		e.Type == "tenant.sso_configured" {
		b.login(e, p, at)
		return nil
	}
	if !strings.HasPrefix(e.Stream, domain.SessionStreamPrefix) {
		return nil
	}
	guid := strings.TrimPrefix(e.Stream, domain.SessionStreamPrefix)
	key := [2]string{e.Tenant, guid}
	s := b.sessions[key]
	if created, ok := p.(*domain.SessionCreated); ok {
		s = &sessionRow{
			tenant: e.Tenant, guid: guid, status: "waiting", queue: created.Queue, channel: created.Channel,
			groupID: created.GroupID, ownerID: created.TechnicianID, trackingID: created.TrackingID, createdAt: at,
			tools: []string{}, nameRef: ref(e, "customer_name"), emailRef: ref(e, "customer_email"),
			fieldsRef: ref(e, "custom_fields"), createdPosition: e.Position,
		}
		idx, err := r.emailIndex(ctx, e)
		if err != nil && !transient(err) {
			// A sealed field that does not open is the event's: set it
			// aside rather than stall on it.
			err = poison("a sealed field does not open", fmt.Errorf("position %d: customer e-mail index: %w", e.Position, err))
		}
		if err != nil {
			return err
		}
		s.emailIdx = idx
		b.sessions[key] = s
	}
	if s == nil {
		// An event of a session whose creation is not projected (cannot
		// happen on a complete log); nothing to attach it to.
		return nil
	}
	s.lastPosition = e.Position
	base := []any{e.Tenant, e.Position, guid, e.ID, at}
	applyTransport(s, p)
	b.applyLens(e, p, at, guid)
	switch v := p.(type) {
	case *domain.CustomerConnected:
		if s.connectedAt == nil {
			s.connectedAt = &at
		}
		s.platform = v.Platform
		if s.status == "waiting" {
			s.status = "queued"
		}
	case *domain.SessionPickedUp:
		if s.pickedUpAt == nil {
			s.pickedUpAt = &at
			s.waitingS = seconds(s.connectedAt, &at)
			s.pickupS = seconds(&s.createdAt, &at)
			d := b.day(e.Tenant, v.TechnicianID, at)
			d.sessions++
			if s.pickupS != nil {
				d.pickupUS += at.Sub(s.createdAt).Microseconds()
				d.pickupN++
			}
		}
		s.technicianID = v.TechnicianID
		s.status = "active"
	case *domain.SessionTransferred:
		s.transfers++
		s.technicianID = v.ToTechnicianID
		b.day(e.Tenant, v.FromTechnicianID, at).transfers++
		b.day(e.Tenant, v.ToTechnicianID, at).sessions++
	case *domain.SessionClosed:
		s.closedAt = &at
		s.status = "closed"
		s.closedBy, s.closeReason = string(v.ClosedBy), v.Reason
		s.activeS = seconds(s.pickedUpAt, &at)
		s.totalS = seconds(&s.createdAt, &at)
		if s.technicianID != "" && s.activeS != nil {
			d := b.day(e.Tenant, s.technicianID, at)
			d.durationUS += at.Sub(*s.pickedUpAt).Microseconds()
			d.durationN++
		}
	case *domain.CustomFieldsSet:
		s.fieldsRef = ref(e, "fields")
	case *domain.ChatMessage:
		b.chat = append(b.chat, append(base, v.From, v.SenderID, ref(e, "text")))
	case *domain.NoteAdded:
		b.notes = append(b.notes, append(base, v.TechnicianID, ref(e, "text")))
	case *domain.FileSent:
		b.files = append(b.files, append(base, "sent", v.TechnicianID, nullUUID(v.ConsentEventID), ref(e, "name"), v.Size, v.MD5, v.SHA256))
	case *domain.FileReceived:
		b.files = append(b.files, append(base, "received", v.TechnicianID, nullUUID(v.ConsentEventID), ref(e, "name"), v.Size, v.MD5, v.SHA256))
	case *domain.ConsentRequested:
		b.consents = append(b.consents, append(base, "requested", string(v.Action), v.TechnicianID, "", nil))
	case *domain.ConsentGranted:
		b.consents = append(b.consents, append(base, "granted", string(v.Action), "", "", nullUUID(v.RequestEventID)))
	case *domain.ConsentDenied:
		b.consents = append(b.consents, append(base, "denied", string(v.Action), "", "", nullUUID(v.RequestEventID)))
	case *domain.ActionDenied:
		b.consents = append(b.consents, append(base, "action_denied", string(v.Action), v.TechnicianID, string(v.Reason), nil))
	case *domain.RecordingStarted:
		s.recorded = true
		x := b.recording(e, v.RecordingID)
		x.technicianID, x.state, x.startedAt = v.TechnicianID, "recording", &at
	case *domain.RecordingStopped:
		x := b.recording(e, v.RecordingID)
		x.state, x.stoppedAt = "stopped", &at
	case *domain.RecordingStored:
		x := b.recording(e, v.RecordingID)
		size := v.Size
		x.state, x.storedAt, x.objectKey, x.size, x.md5, x.sha256 = "stored", &at, v.Object, &size, v.MD5, v.SHA256
		x.contentType = recordingContentType(e)
		if v.DurationMS > 0 {
			d := v.DurationMS
			x.durationMS = &d
		}
	case *domain.RecordingFailed:
		x := b.recording(e, v.RecordingID)
		x.state, x.failure = "failed", v.Reason
	case *domain.RecordingViewed:
		b.recording(e, v.RecordingID).views++
	}
	if a, ok := p.(domain.ActionPayload); ok {
		if !slices.Contains(s.tools, string(a.Action())) {
			s.tools = append(s.tools, string(a.Action()))
			slices.Sort(s.tools)
		}
		var d struct {
			TechnicianID   string    `json:"technician_id"`
			ConsentEventID uuid.UUID `json:"consent_event_id"`
		}
		_ = json.Unmarshal(e.Data, &d)
		b.actions = append(b.actions, append(base, e.Type, string(a.Action()), d.TechnicianID, nullUUID(d.ConsentEventID)))
	}
	return nil
}

// decode decodes e's payload. An event that the strict decoding refuses for
// fields this version does not know (an event of a newer writer) is
// decoded leniently, keeping the fields it knows: projected in a safe form
// rather than set aside. An unknown type or a payload of the wrong shape is
// an error.
func decode(e *domain.Event) (domain.Payload, error) {
	p, err := domain.Decode(*e)
	if err == nil {
		return p, nil
	}
	lenient, ok := domain.Catalogue.New(e.Type)
	if !ok || len(e.Personal) > 0 || json.Unmarshal(e.Data, lenient) != nil {
		return nil, err
	}
	return lenient, nil
}

// recordingContentType reads the optional content type of recording_stored
// without depending on the payload having the field.
func recordingContentType(e *domain.Event) string {
	var d struct {
		ContentType string `json:"content_type"`
	}
	_ = json.Unmarshal(e.Data, &d)
	return d.ContentType
}

func (b *batch) login(e *domain.Event, p domain.Payload, at time.Time) {
	tech := strings.TrimPrefix(e.Stream, domain.TechnicianStreamPrefix)
	if !strings.HasPrefix(e.Stream, domain.TechnicianStreamPrefix) {
		tech = ""
	}
	method := "password"
	row := func(outcome, reason string) {
		b.logins = append(b.logins, []any{e.Tenant, e.Position, tech, e.ID, at, outcome, reason, ref(e, "ip"), method})
	}
	switch v := p.(type) {
	case *domain.SSOLoginSucceeded:
		method = "saml"
		row("succeeded", "")
	case *domain.SSOLoginFailed:
		method = "saml"
		row("failed", string(v.Reason))
	case *domain.SSOConfigured:
		// The tenant's IdP set or changed: reason configured or changed.
		method = "saml"
		row("sso_configured", v.Change)
	case *domain.SSODisabled:
		method = "saml"
		row("sso_disabled", "")
	case *domain.SSOEnabled:
		method = "saml"
		row("sso_enabled", "")
	case *domain.LoginSucceeded:
		row("succeeded", "")
	case *domain.LoginFailed:
		row("failed", string(v.Reason))
	case *domain.LockedOut:
		row("locked_out", "")
	case *domain.Unlocked:
		row("unlocked", "")
	case *domain.LoggedOut:
		row("logged_out", string(v.Reason))
	}
}

// emailIndex computes the blind index of the customer's e-mail address of
// a session.created event, opening the sealed field to do so.
func (r *Reporting) emailIndex(ctx context.Context, e *domain.Event) ([]byte, error) {
	if r.crypto == nil || ref(e, "customer_email") == nil {
		return nil, nil
	}
	opened := domain.Event{ID: e.ID, Tenant: e.Tenant, Sealed: e.Sealed}
	if err := r.crypto.Open(ctx, &opened); err != nil {
		return nil, err
	}
	for _, f := range opened.Personal {
		if f.Name != "customer_email" || f.Erased {
			continue
		}
		var email string
		if err := json.Unmarshal(f.Value, &email); err != nil || email == "" {
			return nil, nil
		}
		return r.crypto.BlindIndex(ctx, CustomerEmailPurpose, strings.ToLower(strings.TrimSpace(email)))
	}
	return nil, nil
}

// columns turns rows into n column arrays, the arguments of an
// INSERT ... SELECT FROM unnest(...). Every string passes through clean:
// whatever an event's text holds, the row can be written.
func columns(rows [][]any, n int) []any {
	cols := make([]any, n)
	for i := range cols {
		col := make([]any, len(rows))
		for j, r := range rows {
			if s, ok := r[i].(string); ok {
				col[j] = clean(s)
				continue
			}
			col[j] = r[i]
		}
		cols[i] = col
	}
	return cols
}

// write flushes the batch in a handful of multi-row statements.
func (b *batch) write(ctx context.Context, tx pgx.Tx) error {
	q := &pgx.Batch{}
	if len(b.sessions) > 0 {
		var rows [][]any
		for _, s := range b.sessions {
			rows = append(rows, []any{s.tenant, s.guid, s.status, s.queue, s.channel, s.groupID, s.technicianID, s.ownerID, s.platform, s.trackingID,
				s.createdAt, s.connectedAt, s.pickedUpAt, s.closedAt, s.waitingS, s.pickupS, s.activeS, s.totalS, s.transfers,
				strings.Join(s.tools, ","), s.closedBy, s.closeReason, s.recorded, s.nameRef, s.emailRef, s.fieldsRef, s.emailIdx,
				s.createdPosition, s.lastPosition, s.gatewayID, s.transport, s.p2pMS, s.p2pFailure, s.lensMS})
		}
		q.Queue(`INSERT INTO rpt_sessions (tenant, guid, status, queue, channel, group_id, technician_id, owner_id, platform, tracking_id,
				created_at, connected_at, picked_up_at, closed_at, waiting_s, pickup_s, active_s, total_s, transfers, tools,
				closed_by, close_reason, recorded, customer_name_ref, customer_email_ref, custom_fields_ref, customer_email_idx,
				created_position, last_position, gateway_id, transport, p2p_ms, p2p_failure, lens_ms)
			SELECT t, g, st, q, ch, gr, te, ow, pl, tr, ca, co, pu, cl, ws, ps, acs, ts, tf,
				CASE WHEN tl = '' THEN '{}'::text[] ELSE string_to_array(tl, ',') END, cb, cr, rc, nr, er, fr, ei, cp, lp, gw, tp, pm, pf, lm
			FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
				$11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::timestamptz[],
				$15::float8[], $16::float8[], $17::float8[], $18::float8[], $19::int[], $20::text[],
				$21::text[], $22::text[], $23::bool[], $24::bytea[], $25::bytea[], $26::bytea[], $27::bytea[], $28::bigint[], $29::bigint[],
				$30::text[], $31::text[], $32::bigint[], $33::text[], $34::bigint[])
				AS u(t, g, st, q, ch, gr, te, ow, pl, tr, ca, co, pu, cl, ws, ps, acs, ts, tf, tl, cb, cr, rc, nr, er, fr, ei, cp, lp, gw, tp, pm, pf, lm)
			ON CONFLICT (tenant, guid) DO UPDATE SET status = EXCLUDED.status, queue = EXCLUDED.queue, channel = EXCLUDED.channel,
				group_id = EXCLUDED.group_id, technician_id = EXCLUDED.technician_id, owner_id = EXCLUDED.owner_id,
				platform = EXCLUDED.platform, tracking_id = EXCLUDED.tracking_id, created_at = EXCLUDED.created_at,
				connected_at = EXCLUDED.connected_at, picked_up_at = EXCLUDED.picked_up_at, closed_at = EXCLUDED.closed_at,
				waiting_s = EXCLUDED.waiting_s, pickup_s = EXCLUDED.pickup_s, active_s = EXCLUDED.active_s, total_s = EXCLUDED.total_s,
				transfers = EXCLUDED.transfers, tools = EXCLUDED.tools, closed_by = EXCLUDED.closed_by, close_reason = EXCLUDED.close_reason,
				recorded = EXCLUDED.recorded, customer_name_ref = EXCLUDED.customer_name_ref, customer_email_ref = EXCLUDED.customer_email_ref,
				custom_fields_ref = EXCLUDED.custom_fields_ref, customer_email_idx = EXCLUDED.customer_email_idx,
				created_position = EXCLUDED.created_position, last_position = EXCLUDED.last_position,
				gateway_id = EXCLUDED.gateway_id, transport = EXCLUDED.transport, p2p_ms = EXCLUDED.p2p_ms,
				p2p_failure = EXCLUDED.p2p_failure, lens_ms = EXCLUDED.lens_ms`,
			columns(rows, 34)...)
	}
	insert := func(table, cols, types string, rows [][]any) {
		if len(rows) == 0 {
			return
		}
		n := len(strings.Split(cols, ","))
		ph := make([]string, n)
		for i, t := range strings.Split(types, ",") {
			ph[i] = fmt.Sprintf("$%d::%s[]", i+1, t)
		}
		q.Queue(`INSERT INTO `+table+` (`+cols+`) SELECT * FROM unnest(`+strings.Join(ph, ", ")+`) ON CONFLICT (position) DO NOTHING`,
			columns(rows, n)...)
	}
	insert("rpt_chat", "tenant, position, guid, event_id, occurred_at, sender, sender_id, text_ref",
		"text,bigint,text,uuid,timestamptz,text,text,bytea", b.chat)
	insert("rpt_notes", "tenant, position, guid, event_id, occurred_at, technician_id, text_ref",
		"text,bigint,text,uuid,timestamptz,text,bytea", b.notes)
	insert("rpt_file_transfers", "tenant, position, guid, event_id, occurred_at, direction, technician_id, consent_event_id, name_ref, size, md5, sha256",
		"text,bigint,text,uuid,timestamptz,text,text,uuid,bytea,bigint,text,text", b.files)
	insert("rpt_consents", "tenant, position, guid, event_id, occurred_at, kind, action, technician_id, reason, request_event_id",
		"text,bigint,text,uuid,timestamptz,text,text,text,text,uuid", b.consents)
	insert("rpt_actions", "tenant, position, guid, event_id, occurred_at, type, action, technician_id, consent_event_id",
		"text,bigint,text,uuid,timestamptz,text,text,text,uuid", b.actions)
	insert("rpt_logins", "tenant, position, technician_id, event_id, occurred_at, outcome, reason, ip_ref, method",
		"text,bigint,text,uuid,timestamptz,text,text,bytea,text", b.logins)
	if len(b.daily) > 0 {
		var rows [][]any
		for k, d := range b.daily {
			rows = append(rows, []any{k.tenant, k.technician, k.day, d.sessions, d.pickupUS, d.pickupN, d.durationUS, d.durationN, d.transfers})
		}
		q.Queue(`INSERT INTO rpt_technician_daily (tenant, technician_id, day, sessions, pickup_s_sum, pickup_n, duration_s_sum, duration_n, transfers)
			SELECT t, id, d, s, p * 0.000001, pn, du * 0.000001, dn, tr
			FROM unnest($1::text[], $2::text[], $3::date[], $4::int[], $5::bigint[], $6::int[], $7::bigint[], $8::int[], $9::int[]) AS u (t, id, d, s, p, pn, du, dn, tr)
			ON CONFLICT (tenant, technician_id, day) DO UPDATE SET
				sessions = rpt_technician_daily.sessions + EXCLUDED.sessions,
				pickup_s_sum = rpt_technician_daily.pickup_s_sum + EXCLUDED.pickup_s_sum,
				pickup_n = rpt_technician_daily.pickup_n + EXCLUDED.pickup_n,
				duration_s_sum = rpt_technician_daily.duration_s_sum + EXCLUDED.duration_s_sum,
				duration_n = rpt_technician_daily.duration_n + EXCLUDED.duration_n,
				transfers = rpt_technician_daily.transfers + EXCLUDED.transfers`, columns(rows, 9)...)
	}
	if len(b.recordings) > 0 {
		var rows [][]any
		for _, x := range b.recordings {
			rows = append(rows, []any{x.tenant, x.guid, x.id, x.technicianID, x.state, x.startedAt, x.stoppedAt, x.storedAt,
				x.objectKey, x.contentType, x.size, x.md5, x.sha256, x.failure, x.views, x.durationMS})
		}
		q.Queue(`INSERT INTO rpt_recordings (tenant, guid, recording_id, technician_id, state, started_at, stopped_at, stored_at,
				object_key, content_type, size, md5, sha256, failure, views, duration_ms)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::timestamptz[],
				$9::text[], $10::text[], $11::bigint[], $12::text[], $13::text[], $14::text[], $15::int[], $16::bigint[])
			ON CONFLICT (tenant, guid, recording_id) DO UPDATE SET technician_id = EXCLUDED.technician_id, state = EXCLUDED.state,
				started_at = EXCLUDED.started_at, stopped_at = EXCLUDED.stopped_at, stored_at = EXCLUDED.stored_at,
				object_key = EXCLUDED.object_key, content_type = EXCLUDED.content_type, size = EXCLUDED.size, md5 = EXCLUDED.md5,
				sha256 = EXCLUDED.sha256, failure = EXCLUDED.failure, views = EXCLUDED.views, duration_ms = EXCLUDED.duration_ms`, columns(rows, 16)...)
	}
	b.queueLens(q)
	if q.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, q).Close()
}
