package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	gql "github.com/vigilhq/vigil/api/graphql"
	"github.com/vigilhq/vigil/projections"
)

var _ gql.Reports = (*Store)(nil)

// where builds a conjunction of conditions with numbered arguments.
type where struct {
	conds []string
	args  []any
}

// arg adds v as an argument and returns its placeholder.
func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

func (w *where) add(cond string) { w.conds = append(w.conds, cond) }

func (w *where) String() string { return strings.Join(w.conds, " AND ") }

const sessionColumns = `guid, status, queue, channel, group_id, technician_id, owner_id, platform, tracking_id,
	created_at, connected_at, picked_up_at, closed_at, waiting_s, pickup_s, active_s, total_s, transfers, tools,
	closed_by, close_reason, recorded, customer_name_ref, customer_email_ref, custom_fields_ref,
	gateway_id, transport, p2p_ms, p2p_failure, lens_ms`

func toSession(row pgx.CollectableRow) (gql.Session, error) {
	var s gql.Session
	err := row.Scan(&s.ID, &s.Status, &s.Queue, &s.Channel, &s.GroupID, &s.TechnicianID, &s.OwnerID, &s.Platform,
		&s.TrackingID, &s.CreatedAt, &s.ConnectedAt, &s.PickedUpAt, &s.ClosedAt, &s.WaitingSeconds, &s.PickupSeconds,
		&s.ActiveSeconds, &s.TotalSeconds, &s.Transfers, &s.Tools, &s.ClosedBy, &s.CloseReason, &s.Recorded,
		&s.CustomerNameRef, &s.CustomerEmailRef, &s.CustomFieldsRef,
		&s.GatewayID, &s.Transport, &s.TimeToP2PMS, &s.P2PFailure, &s.LensMS)
	return s, err
}

func sessionWhere(tenant string, f gql.SessionFilter) *where {
	w := &where{}
	w.add("tenant = " + w.arg(tenant))
	if !f.From.IsZero() {
		w.add("created_at >= " + w.arg(f.From))
	}
	if !f.To.IsZero() {
		w.add("created_at < " + w.arg(f.To))
	}
	if f.TechnicianID != "" {
		w.add("technician_id = " + w.arg(f.TechnicianID))
	}
	if f.GroupID != "" {
		w.add("group_id = " + w.arg(f.GroupID))
	}
	if f.Status != "" {
		w.add("status = " + w.arg(f.Status))
	}
	if f.Channel != "" {
		w.add("channel = " + w.arg(f.Channel))
	}
	if f.CustomerEmailIndex != nil {
		w.add("customer_email_idx = " + w.arg(f.CustomerEmailIndex))
	}
	if f.VisibleTo != "" {
		p := w.arg(f.VisibleTo)
		w.add("(technician_id = " + p + " OR owner_id = " + p + ")")
	}
	return w
}

// Sessions implements gql.Reports. The order (created_at DESC, guid) is the
// one of rpt_sessions_created; the keyset condition is written so that its
// first term bounds the index scan.
func (s *Store) Sessions(ctx context.Context, tenant string, f gql.SessionFilter, p gql.SessionPage) ([]gql.Session, error) {
	w := sessionWhere(tenant, f)
	if p.After != nil {
		at, id := w.arg(p.After.CreatedAt), w.arg(p.After.ID)
		w.add("created_at <= " + at + " AND (created_at < " + at + " OR guid > " + id + ")")
	}
	sql := `SELECT ` + sessionColumns + ` FROM rpt_sessions WHERE ` + w.String() +
		` ORDER BY created_at DESC, guid LIMIT ` + w.arg(p.Limit)
	return query(ctx, s, "sessions", toSession, sql, w.args...)
}

// CountSessions implements gql.Reports.
func (s *Store) CountSessions(ctx context.Context, tenant string, f gql.SessionFilter) (int, error) {
	return s.count(ctx, "sessions", "rpt_sessions", sessionWhere(tenant, f))
}

// SessionsByIDs implements gql.Reports.
func (s *Store) SessionsByIDs(ctx context.Context, tenant string, ids []string) ([]gql.Session, error) {
	return query(ctx, s, "sessions by id", toSession,
		`SELECT `+sessionColumns+` FROM rpt_sessions WHERE tenant = $1 AND guid = ANY($2)`, tenant, ids)
}

func query[T any](ctx context.Context, s *Store, what string, scan pgx.RowToFunc[T], sql string, args ...any) ([]T, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, unavailable(err))
	}
	out, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, unavailable(err))
	}
	return out, nil
}

// bySessions reads the first p.Limit rows after p.After of each session of
// ids from table, with one LATERAL query that walks the (tenant, guid,
// position) index once per session.
func bySessions[T any](ctx context.Context, s *Store, table, columns string, scan pgx.RowToFunc[T], tenant string, ids []string, p gql.TimelinePage) ([]T, error) {
	sql := `SELECT ` + columns + ` FROM unnest($2::text[]) AS ids(id) CROSS JOIN LATERAL (
		SELECT * FROM ` + table + ` t WHERE t.tenant = $1 AND t.guid = ids.id AND t.position > $3
		ORDER BY t.position LIMIT $4) r ORDER BY r.guid, r.position`
	return query(ctx, s, table, scan, sql, tenant, ids, p.After, p.Limit)
}

const chatColumns = `r.position, r.guid, r.event_id::text, r.occurred_at, r.sender, r.sender_id, r.text_ref`

func toChat(row pgx.CollectableRow) (gql.ChatMessage, error) {
	var c gql.ChatMessage
	err := row.Scan(&c.Position, &c.SessionID, &c.EventID, &c.OccurredAt, &c.Sender, &c.SenderID, &c.TextRef)
	return c, err
}

const noteColumns = `r.position, r.guid, r.event_id::text, r.occurred_at, r.technician_id, r.text_ref`

func toNote(row pgx.CollectableRow) (gql.Note, error) {
	var n gql.Note
	err := row.Scan(&n.Position, &n.SessionID, &n.EventID, &n.OccurredAt, &n.TechnicianID, &n.TextRef)
	return n, err
}

const fileColumns = `r.position, r.guid, r.event_id::text, r.occurred_at, r.direction, r.technician_id,
	coalesce(r.consent_event_id::text, ''), r.name_ref, r.size, r.md5, r.sha256`

func toFileTransfer(row pgx.CollectableRow) (gql.FileTransfer, error) {
	var f gql.FileTransfer
	err := row.Scan(&f.Position, &f.SessionID, &f.EventID, &f.OccurredAt, &f.Direction, &f.TechnicianID,
		&f.ConsentEventID, &f.NameRef, &f.Size, &f.MD5, &f.SHA256)
	return f, err
}

const consentColumns = `r.position, r.guid, r.event_id::text, r.occurred_at, r.kind, r.action, r.technician_id,
	r.reason, coalesce(r.request_event_id::text, '')`

func toConsent(row pgx.CollectableRow) (gql.Consent, error) {
	var c gql.Consent
	err := row.Scan(&c.Position, &c.SessionID, &c.EventID, &c.OccurredAt, &c.Kind, &c.Action, &c.TechnicianID,
		&c.Reason, &c.RequestEventID)
	return c, err
}

const actionColumns = `r.position, r.guid, r.event_id::text, r.occurred_at, r.type, r.action, r.technician_id,
	coalesce(r.consent_event_id::text, '')`

func toAction(row pgx.CollectableRow) (gql.Action, error) {
	var a gql.Action
	err := row.Scan(&a.Position, &a.SessionID, &a.EventID, &a.OccurredAt, &a.Type, &a.Action, &a.TechnicianID,
		&a.ConsentEventID)
	return a, err
}

const loginColumns = `r.position, r.technician_id, r.event_id::text, r.occurred_at, r.outcome, r.reason, r.ip_ref, r.method`

func toLogin(row pgx.CollectableRow) (gql.Login, error) {
	var l gql.Login
	err := row.Scan(&l.Position, &l.TechnicianID, &l.EventID, &l.OccurredAt, &l.Outcome, &l.Reason, &l.IPRef, &l.Method)
	return l, err
}

// ChatBySessions implements gql.Reports.
func (s *Store) ChatBySessions(ctx context.Context, tenant string, ids []string, p gql.TimelinePage) ([]gql.ChatMessage, error) {
	return bySessions(ctx, s, "rpt_chat", chatColumns, toChat, tenant, ids, p)
}

// NotesBySessions implements gql.Reports.
func (s *Store) NotesBySessions(ctx context.Context, tenant string, ids []string, p gql.TimelinePage) ([]gql.Note, error) {
	return bySessions(ctx, s, "rpt_notes", noteColumns, toNote, tenant, ids, p)
}

// FileTransfersBySessions implements gql.Reports.
func (s *Store) FileTransfersBySessions(ctx context.Context, tenant string, ids []string, p gql.TimelinePage) ([]gql.FileTransfer, error) {
	return bySessions(ctx, s, "rpt_file_transfers", fileColumns, toFileTransfer, tenant, ids, p)
}

// ConsentsBySessions implements gql.Reports.
func (s *Store) ConsentsBySessions(ctx context.Context, tenant string, ids []string, p gql.TimelinePage) ([]gql.Consent, error) {
	return bySessions(ctx, s, "rpt_consents", consentColumns, toConsent, tenant, ids, p)
}

// ActionsBySessions implements gql.Reports.
func (s *Store) ActionsBySessions(ctx context.Context, tenant string, ids []string, p gql.TimelinePage) ([]gql.Action, error) {
	return bySessions(ctx, s, "rpt_actions", actionColumns, toAction, tenant, ids, p)
}

func toRecording(row pgx.CollectableRow) (gql.Recording, error) {
	var r gql.Recording
	err := row.Scan(&r.SessionID, &r.RecordingID, &r.TechnicianID, &r.State, &r.StartedAt, &r.StoppedAt, &r.StoredAt,
		&r.ContentType, &r.Size, &r.MD5, &r.SHA256, &r.Failure, &r.Views, &r.DurationMS, &r.At)
	return r, err
}

// recordingColumns are read from recordingSource.
const recordingColumns = `r.guid, r.recording_id, r.technician_id, r.state, r.started_at, r.stopped_at, r.stored_at,
	r.content_type, r.size, r.md5, r.sha256, r.failure, r.views, r.duration_ms, r.at`

// recordingSource returns the recordings of the tenant at placeholder t
// as a relation r. A recording is erased when its session has a completed
// erasure of scope all (compliance.GDPR destroyed the session's key and
// deleted the object). Erasure also deletes the session's rpt_recordings
// rows, so an erased recording is found in recording_objects instead (the
// upload index, which holds ids and object keys only); after a rebuild the
// projection writes the rows again and erasure_requests still marks them.
// at orders the list: started_at, else stored_at, else the object's first
// write.
func recordingSource(t string) string {
	erased := func(a string) string {
		return `EXISTS (SELECT 1 FROM erasure_requests q WHERE q.tenant = ` + a + `.tenant AND q.subject = 'session:' || ` + a +
			`.guid AND q.state = 'done' AND q.scope = 'all')`
	}
	return `(SELECT x.tenant, x.guid, x.recording_id, x.technician_id,
			CASE WHEN ` + erased("x") + ` THEN 'erased' ELSE x.state END AS state,
			x.started_at, x.stopped_at, x.stored_at, x.content_type, x.size, x.md5, x.sha256, x.failure, x.views, x.duration_ms,
			COALESCE(x.started_at, x.stored_at, o.created_at, 'epoch'::timestamptz) AS at
		FROM rpt_recordings x LEFT JOIN recording_objects o ON o.tenant = x.tenant AND o.recording_id = x.recording_id
		WHERE x.tenant = ` + t + `
		UNION ALL
		SELECT o.tenant, o.guid, o.recording_id, '', 'erased', NULL, NULL, NULL, '', NULL, '', '', '', 0, NULL, o.created_at
		FROM recording_objects o
		WHERE o.tenant = ` + t + ` AND ` + erased("o") + `
			AND NOT EXISTS (SELECT 1 FROM rpt_recordings x WHERE x.tenant = o.tenant AND x.guid = o.guid AND x.recording_id = o.recording_id)
	) r`
}

// RecordingsBySessions implements gql.Reports.
func (s *Store) RecordingsBySessions(ctx context.Context, tenant string, ids []string) ([]gql.Recording, error) {
	return query(ctx, s, "recordings", toRecording, `SELECT `+recordingColumns+` FROM `+recordingSource("$1")+`
		WHERE r.guid = ANY($2)
		ORDER BY r.guid, r.started_at NULLS LAST, r.recording_id`, tenant, ids)
}

// Recordings implements gql.Reports.
func (s *Store) Recordings(ctx context.Context, tenant string, f gql.RecordingFilter, p gql.RecordingPage) ([]gql.Recording, error) {
	w, src := recordingsWhere(tenant, f)
	if p.After != nil {
		w.add("(r.at, r.guid, r.recording_id) > (" + w.arg(p.After.At) + "::timestamptz, " + w.arg(p.After.SessionID) + "::text, " +
			w.arg(p.After.RecordingID) + "::text)")
	}
	return query(ctx, s, "recordings", toRecording, `SELECT `+recordingColumns+` FROM `+src+` WHERE `+w.String()+
		` ORDER BY r.at, r.guid, r.recording_id LIMIT `+w.arg(p.Limit), w.args...)
}

// recordingsWhere returns the recordings report's conditions and the source
// they apply to.
func recordingsWhere(tenant string, f gql.RecordingFilter) (*where, string) {
	w := &where{}
	src := recordingSource(w.arg(tenant))
	w.add("true")
	if !f.From.IsZero() {
		w.add("r.at >= " + w.arg(f.From))
	}
	if !f.To.IsZero() {
		w.add("r.at < " + w.arg(f.To))
	}
	if f.SessionID != "" {
		w.add("r.guid = " + w.arg(f.SessionID))
	}
	switch f.State {
	case "":
	case "viewed":
		w.add("r.state = 'stored' AND r.views > 0")
	default:
		w.add("r.state = " + w.arg(f.State))
	}
	w.visible(f.VisibleTo)
	return w, src
}

// logWhere starts the conditions of a log-like report read from table r.
func logWhere(tenant string, from, to time.Time, after *gql.LogCursor) *where {
	w := &where{}
	w.add("r.tenant = " + w.arg(tenant))
	if !from.IsZero() {
		w.add("r.occurred_at >= " + w.arg(from))
	}
	if !to.IsZero() {
		w.add("r.occurred_at < " + w.arg(to))
	}
	if after != nil {
		w.add("(r.occurred_at, r.position) > (" + w.arg(after.OccurredAt) + "::timestamptz, " + w.arg(after.Position) + "::bigint)")
	}
	return w
}

// visible restricts w to the rows of sessions technician holds or owns.
func (w *where) visible(technician string) {
	if technician == "" {
		return
	}
	p := w.arg(technician)
	w.add(`EXISTS (SELECT 1 FROM rpt_sessions s WHERE s.tenant = r.tenant AND s.guid = r.guid
		AND (s.technician_id = ` + p + ` OR s.owner_id = ` + p + `))`)
}

func logQuery[T any](ctx context.Context, s *Store, table, columns string, scan pgx.RowToFunc[T], w *where, limit int) ([]T, error) {
	sql := `SELECT ` + columns + ` FROM ` + table + ` r WHERE ` + w.String() +
		` ORDER BY r.occurred_at, r.position LIMIT ` + w.arg(limit)
	return query(ctx, s, table, scan, sql, w.args...)
}

// ChatLog implements gql.Reports.
func (s *Store) ChatLog(ctx context.Context, tenant string, f gql.LogFilter, p gql.LogPage) ([]gql.ChatMessage, error) {
	return logQuery(ctx, s, "rpt_chat", chatColumns, toChat, chatWhere(tenant, f, p.After), p.Limit)
}

// chatWhere, and the other ...Where functions below, are the conditions of
// one report, shared by its list (with the page's cursor) and its count
// (reports_count.go, without).
func chatWhere(tenant string, f gql.LogFilter, after *gql.LogCursor) *where {
	w := logWhere(tenant, f.From, f.To, after)
	if f.SessionID != "" {
		w.add("r.guid = " + w.arg(f.SessionID))
	}
	w.visible(f.VisibleTo)
	return w
}

// FileTransfers implements gql.Reports.
func (s *Store) FileTransfers(ctx context.Context, tenant string, f gql.LogFilter, p gql.LogPage) ([]gql.FileTransfer, error) {
	return logQuery(ctx, s, "rpt_file_transfers", fileColumns, toFileTransfer, fileTransfersWhere(tenant, f, p.After), p.Limit)
}

func fileTransfersWhere(tenant string, f gql.LogFilter, after *gql.LogCursor) *where {
	w := logWhere(tenant, f.From, f.To, after)
	if f.SessionID != "" {
		w.add("r.guid = " + w.arg(f.SessionID))
	}
	if f.TechnicianID != "" {
		w.add("r.technician_id = " + w.arg(f.TechnicianID))
	}
	if f.Direction != "" {
		w.add("r.direction = " + w.arg(f.Direction))
	}
	w.visible(f.VisibleTo)
	return w
}

// Consents implements gql.Reports.
func (s *Store) Consents(ctx context.Context, tenant string, f gql.LogFilter, p gql.LogPage) ([]gql.Consent, error) {
	return logQuery(ctx, s, "rpt_consents", consentColumns, toConsent, consentsWhere(tenant, f, p.After), p.Limit)
}

func consentsWhere(tenant string, f gql.LogFilter, after *gql.LogCursor) *where {
	w := logWhere(tenant, f.From, f.To, after)
	if f.SessionID != "" {
		w.add("r.guid = " + w.arg(f.SessionID))
	}
	if f.TechnicianID != "" {
		w.add("r.technician_id = " + w.arg(f.TechnicianID))
	}
	if f.Kind != "" {
		w.add("r.kind = " + w.arg(f.Kind))
	}
	if f.Action != "" {
		w.add("r.action = " + w.arg(f.Action))
	}
	w.visible(f.VisibleTo)
	return w
}

// Logins implements gql.Reports.
func (s *Store) Logins(ctx context.Context, tenant string, f gql.LoginFilter, p gql.LogPage) ([]gql.Login, error) {
	return logQuery(ctx, s, "rpt_logins", loginColumns, toLogin, loginsWhere(tenant, f, p.After), p.Limit)
}

func loginsWhere(tenant string, f gql.LoginFilter, after *gql.LogCursor) *where {
	w := logWhere(tenant, f.From, f.To, after)
	if f.TechnicianID != "" {
		w.add("r.technician_id = " + w.arg(f.TechnicianID))
	}
	if f.Outcome != "" {
		w.add("r.outcome = " + w.arg(f.Outcome))
	}
	return w
}

func toTechnicianDay(row pgx.CollectableRow) (gql.TechnicianDay, error) {
	var d gql.TechnicianDay
	err := row.Scan(&d.TechnicianID, &d.Day, &d.Sessions, &d.AvgPickupSeconds, &d.AvgDurationSeconds, &d.Transfers)
	d.Day = time.Date(d.Day.Year(), d.Day.Month(), d.Day.Day(), 0, 0, 0, 0, time.UTC)
	return d, err
}

// TechnicianPerformance implements gql.Reports.
func (s *Store) TechnicianPerformance(ctx context.Context, tenant string, from, to time.Time, technicianID string) ([]gql.TechnicianDay, error) {
	w := &where{}
	w.add("tenant = " + w.arg(tenant))
	w.add("day >= " + w.arg(from.UTC().Format(time.DateOnly)) + "::date")
	w.add("day <= " + w.arg(to.UTC().Format(time.DateOnly)) + "::date")
	if technicianID != "" {
		w.add("technician_id = " + w.arg(technicianID))
	}
	return query(ctx, s, "technician performance", toTechnicianDay, `SELECT technician_id, day, sessions,
		CASE WHEN pickup_n > 0 THEN (pickup_s_sum / pickup_n)::float8 END,
		CASE WHEN duration_n > 0 THEN (duration_s_sum / duration_n)::float8 END, transfers
		FROM rpt_technician_daily WHERE `+w.String()+` ORDER BY day, technician_id`, w.args...)
}

// SessionTimes implements gql.Reports.
func (s *Store) SessionTimes(ctx context.Context, tenant string, from, to time.Time) ([]gql.SessionDay, error) {
	return query(ctx, s, "session times", func(row pgx.CollectableRow) (gql.SessionDay, error) {
		var d gql.SessionDay
		err := row.Scan(&d.Day, &d.Sessions, &d.AvgWaitingSeconds, &d.AvgPickupSeconds)
		d.Day = time.Date(d.Day.Year(), d.Day.Month(), d.Day.Day(), 0, 0, 0, 0, time.UTC)
		return d, err
	}, `SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*)::int, avg(waiting_s), avg(pickup_s)
		FROM rpt_sessions WHERE tenant = $1 AND created_at >= $2 AND created_at < $3
		GROUP BY 1 ORDER BY 1`,
		tenant, dayStart(from), dayStart(to).AddDate(0, 0, 1))
}

// dayStart is the start of t's UTC day.
func dayStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// ProjectionStatus implements gql.Reports.
func (s *Store) ProjectionStatus(ctx context.Context) ([]gql.ProjectionState, error) {
	if s.opts.LogHead != nil {
		head, err := s.opts.LogHead(ctx)
		if err != nil {
			return nil, fmt.Errorf("projection status: %w", err)
		}
		return query(ctx, s, "projection status", func(row pgx.CollectableRow) (gql.ProjectionState, error) {
			p := gql.ProjectionState{Head: head}
			err := row.Scan(&p.Name, &p.Position, &p.UpdatedAt, &p.Quarantined, &p.LastError)
			p.Lag = max(p.Head-p.Position, 0)
			return p, err
		}, `SELECT name, position, updated_at, `+quarantineColumns+` FROM projection_positions p ORDER BY name`)
	}
	return query(ctx, s, "projection status", func(row pgx.CollectableRow) (gql.ProjectionState, error) {
		var p gql.ProjectionState
		err := row.Scan(&p.Name, &p.Position, &p.UpdatedAt, &p.Quarantined, &p.LastError, &p.Head)
		p.Lag = max(p.Head-p.Position, 0)
		return p, err
	}, `SELECT p.name, p.position, p.updated_at, `+quarantineColumns+`, h.head
		FROM projection_positions p, (SELECT coalesce(max(position), 0) AS head FROM events) h
		ORDER BY p.name`)
}

// quarantineColumns are the count of the events projection p set aside and
// which was the latest and why, in words safe for any tenant (migration
// 00010, projections.LastErrorSQL).
const quarantineColumns = `(SELECT count(*) FROM projection_quarantine q WHERE q.projection = p.name),
	coalesce((SELECT ` + projections.LastErrorSQL + ` FROM projection_quarantine q
		WHERE q.projection = p.name ORDER BY position DESC LIMIT 1), '')`

func toWebhookSubscription(row pgx.CollectableRow) (gql.WebhookSubscription, error) {
	var w gql.WebhookSubscription
	var state string
	err := row.Scan(&w.ID, &w.URL, &w.EventTypes, &w.GroupID, &w.ExcludeChat, &w.Description, &state, &w.CreatedAt)
	w.Disabled = state != "active"
	w.CreatedAt = w.CreatedAt.UTC()
	return w, err
}

// WebhookSubscriptions implements gql.Reports. It never reads the secrets.
func (s *Store) WebhookSubscriptions(ctx context.Context, tenant string) ([]gql.WebhookSubscription, error) {
	return query(ctx, s, "webhook subscriptions", toWebhookSubscription, `SELECT id::text, url, event_types, group_id,
		exclude_chat, description, state, created_at FROM webhook_subscriptions
		WHERE tenant = $1 AND state <> 'deleted' ORDER BY created_at, id`, tenant)
}

func toWebhookDelivery(row pgx.CollectableRow) (gql.WebhookDelivery, error) {
	var d gql.WebhookDelivery
	var next time.Time
	err := row.Scan(&d.ID, &d.WebhookID, &d.EventType, &d.Status, &d.Attempts, &d.LastStatusCode, &d.LastLatencyMS,
		&next, &d.DeliveredAt, &d.CreatedAt)
	if d.Status == "pending" {
		n := next.UTC()
		d.NextAttemptAt = &n
	}
	if d.DeliveredAt != nil {
		t := d.DeliveredAt.UTC()
		d.DeliveredAt = &t
	}
	d.CreatedAt = d.CreatedAt.UTC()
	return d, err
}

// WebhookDeliveries implements gql.Reports. It never reads the payloads.
func (s *Store) WebhookDeliveries(ctx context.Context, tenant string, f gql.WebhookDeliveryFilter, p gql.WebhookDeliveryPage) ([]gql.WebhookDelivery, error) {
	w := deliveriesWhere(tenant, f)
	if p.After != nil {
		w.add("(created_at, id) < (" + w.arg(p.After.CreatedAt) + "::timestamptz, " + w.arg(p.After.ID) + "::uuid)")
	}
	return query(ctx, s, "webhook deliveries", toWebhookDelivery, `SELECT id::text, subscription_id::text, event_type, state,
		attempts, last_status, last_latency_ms, next_attempt_at, delivered_at, created_at FROM webhook_deliveries
		WHERE `+w.String()+` ORDER BY created_at DESC, id DESC LIMIT `+w.arg(p.Limit), w.args...)
}

func deliveriesWhere(tenant string, f gql.WebhookDeliveryFilter) *where {
	w := &where{}
	w.add("tenant = " + w.arg(tenant))
	if !f.From.IsZero() {
		w.add("created_at >= " + w.arg(f.From))
	}
	if !f.To.IsZero() {
		w.add("created_at < " + w.arg(f.To))
	}
	if f.Status != "" {
		w.add("state = " + w.arg(f.Status))
	}
	if f.WebhookID != "" {
		w.add("subscription_id = " + w.arg(f.WebhookID) + "::uuid")
	}
	return w
}
