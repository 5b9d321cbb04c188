package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	gql "github.com/vigilhq/vigil/api/graphql"
)

var _ gql.LensReports = (*Store)(nil)

// LensUsage implements gql.LensReports over rpt_lens_conferences.
func (s *Store) LensUsage(ctx context.Context, tenant string, from, to time.Time, technicianID string) ([]gql.LensUsage, error) {
	rows, err := s.pool.Query(ctx, `SELECT technician_id, count(DISTINCT guid), count(*), coalesce(sum(stream_ms), 0)
		FROM rpt_lens_conferences
		WHERE tenant = $1 AND created_at >= $2 AND created_at < $3 AND ($4 = '' OR technician_id = $4)
		GROUP BY technician_id ORDER BY technician_id`, tenant, from, to.AddDate(0, 0, 1), technicianID)
	if err != nil {
		return nil, unavailable(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (gql.LensUsage, error) {
		var u gql.LensUsage
		err := r.Scan(&u.TechnicianID, &u.Sessions, &u.Conferences, &u.StreamMS)
		return u, err
	})
	return out, unavailable(err)
}
