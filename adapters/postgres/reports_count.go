package postgres

import (
	"context"
	"fmt"

	gql "github.com/vigilhq/vigil/api/graphql"
)

// The counts behind every connection's totalCount: the rows each list
// method would return over all its pages, with the same conditions but no
// cursor. Each is one count(*) over the list's index.

// count runs SELECT count(*) FROM from WHERE w.
func (s *Store) count(ctx context.Context, what, from string, w *where) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+from+` WHERE `+w.String(), w.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", what, unavailable(err))
	}
	return n, nil
}

// CountChatLog implements gql.Reports.
func (s *Store) CountChatLog(ctx context.Context, tenant string, f gql.LogFilter) (int, error) {
	w := logWhere(tenant, f.From, f.To, nil)
	if f.SessionID != "" {
		w.add("r.guid = " + w.arg(f.SessionID))
	}
	w.visible(f.VisibleTo)
	return s.count(ctx, "chat log", "rpt_chat r", w)
}

// CountFileTransfers implements gql.Reports.
func (s *Store) CountFileTransfers(ctx context.Context, tenant string, f gql.LogFilter) (int, error) {
	w := logWhere(tenant, f.From, f.To, nil)
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
	return s.count(ctx, "file transfers", "rpt_file_transfers r", w)
}

// CountConsents implements gql.Reports.
func (s *Store) CountConsents(ctx context.Context, tenant string, f gql.LogFilter) (int, error) {
	w := logWhere(tenant, f.From, f.To, nil)
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
	return s.count(ctx, "consents", "rpt_consents r", w)
}

// CountLogins implements gql.Reports.
func (s *Store) CountLogins(ctx context.Context, tenant string, f gql.LoginFilter) (int, error) {
	w := logWhere(tenant, f.From, f.To, nil)
	if f.TechnicianID != "" {
		w.add("r.technician_id = " + w.arg(f.TechnicianID))
	}
	if f.Outcome != "" {
		w.add("r.outcome = " + w.arg(f.Outcome))
	}
	return s.count(ctx, "logins", "rpt_logins r", w)
}

// CountRecordings implements gql.Reports.
func (s *Store) CountRecordings(ctx context.Context, tenant string, f gql.RecordingFilter) (int, error) {
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
	return s.count(ctx, "recordings", src, w)
}

// CountWebhookDeliveries implements gql.Reports.
func (s *Store) CountWebhookDeliveries(ctx context.Context, tenant string, f gql.WebhookDeliveryFilter) (int, error) {
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
	return s.count(ctx, "webhook deliveries", "webhook_deliveries", w)
}
