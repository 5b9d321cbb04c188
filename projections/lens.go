package projections

import (
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/domain"
)

// lensOp is one statement on rpt_lens_conferences, run in event order
// after the batch's session rows are written.
type lensOp struct {
	sql  string
	args []any
	// session names the session whose lens_ms the op changes.
	session [2]string
}

// streamMS is the SQL for the milliseconds from streaming_since to $4.
const streamMS = `coalesce((extract(epoch FROM ($4::timestamptz - streaming_since)) * 1000)::bigint, 0)`

// applyLens turns a Lens event into its statements (issue 18): one row
// per conference with the technician holding the session when it was
// created and the milliseconds the camera streamed; the session's close
// ends its conferences (and their streams) at the close.
func (b *batch) applyLens(e *domain.Event, p domain.Payload, at time.Time, guid string) {
	k := [2]string{e.Tenant, guid}
	switch v := p.(type) {
	case *domain.LensConferenceCreated:
		b.lens = append(b.lens, lensOp{sql: `INSERT INTO rpt_lens_conferences (tenant, guid, conference_id, technician_id, created_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING`, args: []any{e.Tenant, guid, v.ConferenceID, v.TechnicianID, at}, session: k})
	case *domain.LensParticipantJoined:
		b.lens = append(b.lens, lensOp{sql: `UPDATE rpt_lens_conferences SET participants = participants + 1
			WHERE tenant = $1 AND guid = $2 AND conference_id = $3`, args: []any{e.Tenant, guid, v.ConferenceID}, session: k})
	case *domain.LensStreamStarted:
		b.lens = append(b.lens, lensOp{sql: `UPDATE rpt_lens_conferences SET streaming_since = $4
			WHERE tenant = $1 AND guid = $2 AND conference_id = $3 AND ended_at IS NULL`, args: []any{e.Tenant, guid, v.ConferenceID, at}, session: k})
	case *domain.LensStreamStopped:
		b.lens = append(b.lens, lensOp{sql: `UPDATE rpt_lens_conferences SET stream_ms = stream_ms + ` + streamMS + `, streaming_since = NULL
			WHERE tenant = $1 AND guid = $2 AND streaming_since IS NOT NULL AND $3::text IS NOT NULL`, args: []any{e.Tenant, guid, "", at}, session: k})
	case *domain.LensConferenceDestroyed:
		b.lens = append(b.lens, lensOp{sql: `UPDATE rpt_lens_conferences SET stream_ms = stream_ms + ` + streamMS + `, streaming_since = NULL,
				ended_at = coalesce(ended_at, $4)
			WHERE tenant = $1 AND guid = $2 AND conference_id = $3`, args: []any{e.Tenant, guid, v.ConferenceID, at}, session: k})
	case *domain.SessionClosed:
		b.lens = append(b.lens, lensOp{sql: `UPDATE rpt_lens_conferences SET stream_ms = stream_ms + ` + streamMS + `, streaming_since = NULL,
				ended_at = coalesce(ended_at, $4)
			WHERE tenant = $1 AND guid = $2 AND ended_at IS NULL AND $3::text IS NOT NULL`, args: []any{e.Tenant, guid, "", at}, session: k})
	}
}

// queueLens queues the batch's Lens statements in order, then sets the
// lens_ms of the sessions they touched from their conferences.
func (b *batch) queueLens(q *pgx.Batch) {
	if len(b.lens) == 0 {
		return
	}
	var tenants, guids []string
	seen := map[[2]string]bool{}
	for _, op := range b.lens {
		q.Queue(op.sql, op.args...)
		if !seen[op.session] {
			seen[op.session] = true
			tenants, guids = append(tenants, op.session[0]), append(guids, op.session[1])
		}
	}
	q.Queue(`UPDATE rpt_sessions s SET lens_ms = (SELECT coalesce(sum(c.stream_ms), 0) FROM rpt_lens_conferences c
			WHERE c.tenant = s.tenant AND c.guid = s.guid)
		FROM unnest($1::text[], $2::text[]) AS u(tenant, guid) WHERE s.tenant = u.tenant AND s.guid = u.guid`, tenants, guids)
}
