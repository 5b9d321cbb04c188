package postgres

import (
	"context"
	"fmt"

	gql "github.com/vigilhq/vigil/api/graphql"
)

// The counts behind every connection's totalCount: the rows each list
// method would return over all its pages, with the same conditions (the ...Where
// functions of reports.go) but no cursor. Each is one count(*) over the list's index.

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
	return s.count(ctx, "chat log", "rpt_chat r", chatWhere(tenant, f, nil))
}

// CountFileTransfers implements gql.Reports.
func (s *Store) CountFileTransfers(ctx context.Context, tenant string, f gql.LogFilter) (int, error) {
	return s.count(ctx, "file transfers", "rpt_file_transfers r", fileTransfersWhere(tenant, f, nil))
}

// CountConsents implements gql.Reports.
func (s *Store) CountConsents(ctx context.Context, tenant string, f gql.LogFilter) (int, error) {
	return s.count(ctx, "consents", "rpt_consents r", consentsWhere(tenant, f, nil))
}

// CountLogins implements gql.Reports.
func (s *Store) CountLogins(ctx context.Context, tenant string, f gql.LoginFilter) (int, error) {
	return s.count(ctx, "logins", "rpt_logins r", loginsWhere(tenant, f, nil))
}

// CountRecordings implements gql.Reports.
func (s *Store) CountRecordings(ctx context.Context, tenant string, f gql.RecordingFilter) (int, error) {
	w, src := recordingsWhere(tenant, f)
	return s.count(ctx, "recordings", src, w)
}

// CountWebhookDeliveries implements gql.Reports.
func (s *Store) CountWebhookDeliveries(ctx context.Context, tenant string, f gql.WebhookDeliveryFilter) (int, error) {
	return s.count(ctx, "webhook deliveries", "webhook_deliveries", deliveriesWhere(tenant, f))
}
