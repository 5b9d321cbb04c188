package projections

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/vigilhq/vigil/domain"
)

// ErrPoison marks an apply error as a property of the event itself, which
// no retry will change (a payload that does not decode, a value the tables
// cannot hold). A Projection wraps it (fmt.Errorf("...: %w", ErrPoison)) to
// have the Runner set the event aside in the quarantine instead of retrying
// it for ever. PostgreSQL data errors (SQLSTATE classes 21, 22, 23 and 54)
// count as poison without it.
var ErrPoison = errors.New("event cannot be applied")

// poisonError is an ErrPoison with a reason that is safe to show to any
// tenant's admins (projectionStatus is not scoped to a tenant): it names
// the kind of problem, never a value of the event.
type poisonError struct {
	reason string
	err    error
}

func (e *poisonError) Error() string { return ErrPoison.Error() + ": " + e.err.Error() }

func (e *poisonError) Unwrap() []error { return []error{ErrPoison, e.err} }

func poison(reason string, err error) error { return &poisonError{reason: reason, err: err} }

// reason returns the caller-safe reason of a deterministic error.
func reason(err error) string {
	var p *poisonError
	if errors.As(err, &p) {
		return p.reason
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return "a value the tables refuse (SQLSTATE " + pgErr.Code + ")"
	}
	return "the event cannot be applied"
}

// transient reports whether err is about reaching the database (or the
// caller giving up), not about the event: such errors are retried, never
// quarantined, so an outage sets nothing aside.
func transient(err error) bool {
	if errors.Is(err, domain.ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && len(pgErr.Code) == 5 {
		switch pgErr.Code[:2] {
		case "08", "40", "53", "57", "58", "XX": // connection, rollback (serialization, deadlock), resources, shutdown, system
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// deterministic reports whether err will happen again whenever the event is
// applied: the event is then quarantined.
func deterministic(err error) bool {
	if err == nil || transient(err) {
		return false
	}
	if errors.Is(err, ErrPoison) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && len(pgErr.Code) == 5 {
		switch pgErr.Code[:2] {
		case "21", "22", "23", "54": // cardinality violation, data exception, integrity constraint violation, program limit exceeded
			return true
		}
	}
	return false
}

// clean returns s in a form every text column holds: PostgreSQL refuses
// NUL bytes and invalid UTF-8 (SQLSTATE 22021), and the log may hold both
// (old events, events of another writer). Each offending byte sequence
// becomes U+FFFD, so that the reader sees that something was there.
func clean(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// cleanAll is clean over a column of strings; it copies only when needed.
func cleanAll(ss []string) []string {
	var out []string
	for i, s := range ss {
		if c := clean(s); c != s {
			if out == nil {
				out = append([]string(nil), ss...)
			}
			out[i] = c
		}
	}
	if out == nil {
		return ss
	}
	return out
}

// applySafely applies evs in tx. When the batch fails for a reason of one of
// its events, it rolls the batch back and applies the events one at a time,
// each in a savepoint: an event that fails deterministically is recorded in
// projection_quarantine and skipped; anything else (an outage) is returned
// for the caller to retry. It reports how many events it quarantined.
func (r *Runner) applySafely(ctx context.Context, tx pgx.Tx, p Projection, evs []domain.Event) (int, error) {
	err := nested(ctx, tx, func(sub pgx.Tx) error { return p.Apply(ctx, sub, evs) })
	if !deterministic(err) {
		return 0, err
	}
	n := 0
	for i := range evs {
		err := nested(ctx, tx, func(sub pgx.Tx) error { return p.Apply(ctx, sub, evs[i:i+1]) })
		if err == nil {
			continue
		}
		if !deterministic(err) {
			return n, err
		}
		if err := quarantine(ctx, tx, p.Name(), &evs[i], err); err != nil {
			return n, fmt.Errorf("quarantine position %d: %w", evs[i].Position, err)
		}
		n++
		r.logger.Error("projection: event quarantined", "projection", p.Name(), "position", evs[i].Position,
			"tenant", evs[i].Tenant, "type", evs[i].Type, "err", err)
	}
	return n, nil
}

// nested runs fn in a savepoint of tx, rolled back when fn fails.
func nested(ctx context.Context, tx pgx.Tx, fn func(pgx.Tx) error) error {
	sub, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(sub); err != nil {
		if rerr := sub.Rollback(ctx); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	return sub.Commit(ctx)
}

func quarantine(ctx context.Context, tx pgx.Tx, projection string, e *domain.Event, cause error) error {
	_, err := tx.Exec(ctx, `INSERT INTO projection_quarantine (projection, position, event_id, tenant, type, reason, error, quarantined_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, now())
		ON CONFLICT (projection, position) DO UPDATE SET event_id = EXCLUDED.event_id, tenant = EXCLUDED.tenant,
			type = EXCLUDED.type, reason = EXCLUDED.reason, error = EXCLUDED.error, quarantined_at = EXCLUDED.quarantined_at`,
		projection, e.Position, e.ID, clean(e.Tenant), clean(e.Type), reason(cause), clean(cause.Error()))
	return err
}

// clearQuarantine forgets what projection set aside, for a rebuild, which
// tries every event again.
func clearQuarantine(ctx context.Context, tx pgx.Tx, projection string) error {
	_, err := tx.Exec(ctx, `DELETE FROM projection_quarantine WHERE projection = $1`, projection)
	return err
}

// Quarantined is an event a projection set aside.
type Quarantined struct {
	Projection string
	Position   int64
	EventID    [16]byte
	Tenant     string
	Type       string
	// Reason is the kind of problem, safe to show to any tenant; Error is
	// the whole error, for operators.
	Reason string
	Error  string
}

// Quarantine returns the events the runner's projections set aside, in
// position order (at most limit; 0 for all).
func (r *Runner) Quarantine(ctx context.Context, limit int) ([]Quarantined, error) {
	names := make([]string, len(r.projections))
	for i, p := range r.projections {
		names[i] = p.Name()
	}
	if limit <= 0 {
		limit = -1
	}
	rows, err := r.pool.Query(ctx, `SELECT projection, position, event_id, tenant, type, reason, error FROM projection_quarantine
		WHERE projection = ANY($1) ORDER BY position, projection LIMIT CASE WHEN $2::int < 0 THEN NULL ELSE $2::int END`, names, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Quarantined, error) {
		var q Quarantined
		err := row.Scan(&q.Projection, &q.Position, &q.EventID, &q.Tenant, &q.Type, &q.Reason, &q.Error)
		return q, err
	})
}

// LastErrorSQL is the SQL expression, over a projection_quarantine row, of
// Status.LastError: the position, the type and the caller-safe reason.
const LastErrorSQL = `'position ' || position || ' (' || type || '): ' || reason`
