// Package projections builds Vigil's read models from the ledger: the
// reporting tables and the GDPR subject index. Each projection tails the
// log from its stored position and writes its rows and its new position in
// one transaction, holding its position row locked: a crash mid-batch
// repeats nothing, and two processes never apply a batch twice. Every
// projection can be rebuilt from position 0 while the old rows stay
// readable.
//
// A projection never stalls on one event: text is written in a form every
// column holds (NUL bytes and invalid UTF-8 become U+FFFD), and an event
// that still cannot be applied for a reason of its own (ErrPoison, a
// PostgreSQL data exception) is set aside in projection_quarantine, within
// the batch's transaction, while the rest of the log is applied. Outages
// are retried, never quarantined. A rebuild tries quarantined events again.
//
// Projections speak SQL (PostgreSQL) through pgx directly: a read model is
// a set of tables, and hiding them behind another port would only move the
// SQL elsewhere. They depend on no adapter of Vigil's.
package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

// Projection is one read model.
type Projection interface {
	// Name is the projection's stable name, its key in projection_positions.
	Name() string
	// Apply writes the effects of events (sealed, in position order) in tx.
	// It must be deterministic: replaying the log gives the same rows.
	Apply(ctx context.Context, tx pgx.Tx, events []domain.Event) error
	// Reset deletes every row of the projection, for a rebuild.
	Reset(ctx context.Context, tx pgx.Tx) error
}

// Runner drives projections over the ledger. It is safe for concurrent use
// and across processes.
type Runner struct {
	pool         *pgxpool.Pool
	log          ledger.Store
	projections  []Projection
	batch        int
	logger       *slog.Logger
	linger       time.Duration
	afterRebuild func(ctx context.Context, tx pgx.Tx) (int64, error)
}

// Options tune a Runner.
type Options struct {
	// Batch is the number of events applied per transaction (default 1000).
	Batch int
	// Logger receives operational messages (default slog.Default()).
	Logger *slog.Logger
	// Linger is how long Run waits, once the log woke it, before it
	// catches up, so that one transaction applies what arrives meanwhile
	// (default 0: at once). Under load every append wakes the runner; a
	// few milliseconds turn batches of a handful of events into batches of
	// dozens, each costing its position lock, reads and commit once.
	Linger time.Duration
	// AfterRebuild, when set, runs in a rebuild's transaction once every
	// event is applied, before the commit: it removes again what erasures
	// and retention removed from the projections
	// (compliance.PurgeAfterRebuild), so that no reader sees those rows.
	AfterRebuild func(ctx context.Context, tx pgx.Tx) (int64, error)
}

// NewRunner returns a runner of projections over the log, writing with pool.
func NewRunner(pool *pgxpool.Pool, log ledger.Store, opts Options, projections ...Projection) *Runner {
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Runner{pool: pool, log: log, projections: projections, batch: opts.Batch, logger: opts.Logger,
		linger: max(opts.Linger, 0), afterRebuild: opts.AfterRebuild}
}

// Projections returns the runner's projections.
func (r *Runner) Projections() []Projection { return r.projections }

// Status is a projection's progress.
type Status struct {
	Name     string
	Position int64
	Head     int64
	Lag      int64
	// Quarantined counts the events the projection set aside since its
	// last rebuild; LastError says which was the latest and why ("" for
	// none), in words safe for any tenant (the whole errors are in
	// projection_quarantine and the log).
	Quarantined int64
	LastError   string
}

// Status returns every projection's position, lag behind the log's head
// and quarantine.
func (r *Runner) Status(ctx context.Context) ([]Status, error) {
	head, err := r.log.Head(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(r.projections))
	for _, p := range r.projections {
		var pos int64
		err := r.pool.QueryRow(ctx, `SELECT position FROM projection_positions WHERE name = $1`, p.Name()).Scan(&pos)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, err
		}
		st := Status{Name: p.Name(), Position: pos, Head: head, Lag: head - pos}
		err = r.pool.QueryRow(ctx, `SELECT count(*), coalesce((SELECT `+LastErrorSQL+` FROM projection_quarantine
				WHERE projection = $1 ORDER BY position DESC LIMIT 1), '')
			FROM projection_quarantine WHERE projection = $1`, p.Name()).Scan(&st.Quarantined, &st.LastError)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// lockPosition takes the projection's position row for the transaction,
// creating it at 0 first if needed.
func lockPosition(ctx context.Context, tx pgx.Tx, name string) (int64, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO projection_positions (name, position, updated_at) VALUES ($1, 0, now()) ON CONFLICT (name) DO NOTHING`, name); err != nil {
		return 0, err
	}
	var pos int64
	err := tx.QueryRow(ctx, `SELECT position FROM projection_positions WHERE name = $1 FOR UPDATE`, name).Scan(&pos)
	return pos, err
}

func setPosition(ctx context.Context, tx pgx.Tx, name string, pos int64) error {
	_, err := tx.Exec(ctx, `UPDATE projection_positions SET position = $2, updated_at = now() WHERE name = $1`, name, pos)
	return err
}

// Step applies the next batch of p, if any, and reports how many events it
// applied.
func (r *Runner) Step(ctx context.Context, p Projection) (int, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	pos, err := lockPosition(ctx, tx, p.Name())
	if err != nil {
		return 0, fmt.Errorf("projection %s: position: %w", p.Name(), err)
	}
	evs, err := r.log.ReadAll(ctx, pos, r.batch)
	if err != nil {
		return 0, fmt.Errorf("projection %s: read after %d: %w", p.Name(), pos, err)
	}
	if len(evs) == 0 {
		return 0, tx.Commit(ctx)
	}
	if _, err := r.applySafely(ctx, tx, p, evs); err != nil {
		return 0, fmt.Errorf("projection %s: apply %d..%d: %w", p.Name(), evs[0].Position, evs[len(evs)-1].Position, err)
	}
	if err := setPosition(ctx, tx, p.Name(), evs[len(evs)-1].Position); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("projection %s: commit: %w", p.Name(), err)
	}
	return len(evs), nil
}

// CatchUp applies batches of every projection until each has reached the
// head it saw.
func (r *Runner) CatchUp(ctx context.Context) error {
	for _, p := range r.projections {
		for {
			n, err := r.Step(ctx, p)
			if err != nil {
				return err
			}
			if n < r.batch {
				break
			}
		}
	}
	return nil
}

// Run keeps every projection caught up until ctx ends: it applies what is
// there, then waits for appends (LISTEN/NOTIFY wake-up, with polling as the
// fallback). Errors are logged and retried with a back-off.
func (r *Runner) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	var seen int64
	for ctx.Err() == nil {
		err := r.CatchUp(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			r.logger.Error("projections", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		head, err := r.log.Head(ctx)
		if err == nil && head > seen {
			// Something arrived while catching up: take it now when it is
			// a backlog, after the linger when it is the live tail.
			if head-seen < int64(r.batch) {
				r.lingerFor(ctx)
			}
			seen = head
			continue
		}
		if err := r.log.WaitForAppend(ctx, seen); err != nil && ctx.Err() == nil {
			r.logger.Warn("projections: wait", "err", err)
		}
		r.lingerFor(ctx)
	}
	return ctx.Err()
}

// lingerFor waits r.linger, or until ctx ends.
func (r *Runner) lingerFor(ctx context.Context) {
	if r.linger <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(r.linger):
	}
}

// Rebuild replays p from position 0 in one transaction: the old rows stay
// visible to readers until it commits, and the live runner waits on the
// position row meanwhile. progress, when set, is called with the events
// applied and the head.
func (r *Runner) Rebuild(ctx context.Context, p Projection, progress func(done, total int64)) (int64, error) {
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := lockPosition(ctx, tx, p.Name()); err != nil {
		return 0, fmt.Errorf("rebuild %s: %w", p.Name(), err)
	}
	if err := p.Reset(ctx, tx); err != nil {
		return 0, fmt.Errorf("rebuild %s: reset: %w", p.Name(), err)
	}
	if err := clearQuarantine(ctx, tx, p.Name()); err != nil {
		return 0, fmt.Errorf("rebuild %s: clear quarantine: %w", p.Name(), err)
	}
	head, err := r.log.Head(ctx)
	if err != nil {
		return 0, err
	}
	pos, done, err := r.replay(ctx, tx, p, 0, -1, head, progress)
	if err != nil {
		return done, err
	}
	if err := r.after(ctx, tx, p); err != nil {
		return done, err
	}
	if err := setPosition(ctx, tx, p.Name(), pos); err != nil {
		return done, err
	}
	return done, tx.Commit(ctx)
}

// replay applies p's events after position from, up to position upTo
// (to the end of the log when upTo < 0), in tx. It returns the last
// position applied (from when none) and the count.
func (r *Runner) replay(ctx context.Context, tx pgx.Tx, p Projection, from, upTo, head int64, progress func(done, total int64)) (int64, int64, error) {
	pos, done := from, int64(0)
	for upTo < 0 || pos < upTo {
		evs, err := r.log.ReadAll(ctx, pos, r.batch)
		if err != nil {
			return pos, done, err
		}
		if upTo >= 0 {
			i := sort.Search(len(evs), func(i int) bool { return evs[i].Position > upTo })
			evs = evs[:i]
		}
		if len(evs) == 0 {
			break
		}
		if _, err := r.applySafely(ctx, tx, p, evs); err != nil {
			return pos, done, fmt.Errorf("rebuild %s: %w", p.Name(), err)
		}
		pos = evs[len(evs)-1].Position
		done += int64(len(evs))
		if progress != nil {
			progress(done, max(head, pos))
		}
	}
	return pos, done, nil
}

// after removes again, at the end of a replay from position 0, what
// erasures and retention removed.
func (r *Runner) after(ctx context.Context, tx pgx.Tx, p Projection) error {
	if r.afterRebuild == nil {
		return nil
	}
	n, err := r.afterRebuild(ctx, tx)
	if err != nil {
		return fmt.Errorf("rebuild %s: after: %w", p.Name(), err)
	}
	if n > 0 {
		r.logger.Info("rebuild: removed again what erasures and retention removed", "projection", p.Name(), "rows", n)
	}
	return nil
}

// Tabled is a projection that names its tables, so that Check can compare
// them.
type Tabled interface {
	Tables() []string
}

// Difference is one table of a projection whose live rows differ from a
// rebuild's.
type Difference struct {
	Table         string
	Live, Rebuilt int64 // row counts
}

// Check compares p's live tables with a rebuild from position 0, and
// changes nothing. In one transaction that holds p's position (the live
// runner waits meanwhile), it first applies to the live tables what the
// log holds beyond the live position, so that both sides stand at the same
// position; it digests every table (a multiset hash of its rows' text), rebuilds,
// digests again and rolls everything back. It returns the tables that
// differ (none when the projection is what a replay of the log gives) and
// the events replayed.
func (r *Runner) Check(ctx context.Context, p Projection, progress func(done, total int64)) ([]Difference, int64, error) {
	tp, ok := p.(Tabled)
	if !ok {
		return nil, 0, fmt.Errorf("check %s: the projection does not name its tables", p.Name())
	}
	tx, err := r.pool.Begin(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	live, err := lockPosition(ctx, tx, p.Name())
	if err != nil {
		return nil, 0, fmt.Errorf("check %s: %w", p.Name(), err)
	}
	head, err := r.log.Head(ctx)
	if err != nil {
		return nil, 0, err
	}
	at, _, err := r.replay(ctx, tx, p, live, head, head, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("check %s: catch up: %w", p.Name(), err)
	}
	digest := func() (map[string]string, map[string]int64, error) {
		sums, counts := map[string]string{}, map[string]int64{}
		for _, t := range tp.Tables() {
			var sum string
			var n int64
			// A multiset hash: the sums of two 64-bit slices of each row's
			// MD5. It needs neither a sort nor the whole table in one
			// value (string_agg stops at 1 GB), and any row added, lost
			// or changed moves it.
			q := `SELECT coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text || '/' ||
				coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text, count(*)
				FROM (SELECT md5(t::text) AS h FROM ` + pgx.Identifier{t}.Sanitize() + ` t) AS rows`
			if err := tx.QueryRow(ctx, q).Scan(&sum, &n); err != nil {
				return nil, nil, fmt.Errorf("check %s: digest %s: %w", p.Name(), t, err)
			}
			sums[t], counts[t] = sum, n
		}
		return sums, counts, nil
	}
	liveSums, liveCounts, err := digest()
	if err != nil {
		return nil, 0, err
	}
	if err := p.Reset(ctx, tx); err != nil {
		return nil, 0, fmt.Errorf("check %s: reset: %w", p.Name(), err)
	}
	if err := clearQuarantine(ctx, tx, p.Name()); err != nil {
		return nil, 0, fmt.Errorf("check %s: clear quarantine: %w", p.Name(), err)
	}
	_, done, err := r.replay(ctx, tx, p, 0, at, at, progress)
	if err != nil {
		return nil, done, err
	}
	if err := r.after(ctx, tx, p); err != nil {
		return nil, done, err
	}
	sums, counts, err := digest()
	if err != nil {
		return nil, done, err
	}
	var diff []Difference
	for _, t := range tp.Tables() {
		if sums[t] != liveSums[t] {
			diff = append(diff, Difference{Table: t, Live: liveCounts[t], Rebuilt: counts[t]})
		}
	}
	return diff, done, nil
}

// Find returns the projection named name.
func (r *Runner) Find(name string) (Projection, bool) {
	for _, p := range r.projections {
		if p.Name() == name {
			return p, true
		}
	}
	return nil, false
}
