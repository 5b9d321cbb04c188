package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

var (
	_ ledger.Store         = (*Store)(nil)
	_ ledger.Syncer        = (*Store)(nil)
	_ ledger.StreamsReader = (*Store)(nil)
)

// writerLockKey is the advisory lock every process takes for the length of
// an append transaction, so that positions stay gapless and commit order is
// position order with several vigil processes on one database.
const writerLockKey int64 = 0x76696769_6c01 // "vigil" 1

// Notification channels.
const (
	eventsChannel = "vigil_events"
	keysChannel   = "vigil_keys"
)

// Options tune a Store.
type Options struct {
	// PollInterval bounds how long WaitForAppend sleeps without a
	// notification (default 1 s).
	PollInterval time.Duration
	// Logger receives operational messages (default slog.Default()).
	Logger *slog.Logger
	// LogHead, when set, is the head of the ledger's log for the reports'
	// projection lag: set it when the log lives in another store
	// (VIGIL_LOG_STORE=kurrentdb); by default the head is read from events.
	LogHead func(context.Context) (int64, error)
	// AsyncCommit makes Commit return once its commit record is written,
	// before the WAL flush, so that the next commit can take the writer
	// lock while this one's flush is in progress; Sync then waits for the
	// flush, and a ledger over the store acknowledges appends only after
	// it (ledger.Syncer). Only for a ledger.Ledger given this *Store (or
	// a wrapper that keeps its Sync method): anything else would answer
	// before the commit is durable. Off by default: it measured no faster
	// on the shared 2-core machine (docs/performance.md); by default
	// Commit waits for the flush under the lock and Sync is a no-op.
	AsyncCommit bool
}

// Store is the PostgreSQL implementation of ledger.Store. It is safe for
// concurrent use; appends from several processes serialize on an advisory
// lock.
type Store struct {
	pool *pgxpool.Pool
	opts Options
	// reads runs the hot reads with cached generic plans (see hotReads).
	reads *pgxpool.Pool

	// Concurrent Idempotency-Key claims and answers, one statement each
	// (identity.go).
	claims    *coalescer[claimItem, bool]
	completes *coalescer[completeItem, bool]

	// What the last commit left, for the next one-round-trip commit
	// (see Commit); the server checks it under the writer lock.
	mu        sync.Mutex
	frontiers map[string]ledger.Frontier // per tenant, as of the last commit seen
	head      int64
	headID    uuid.UUID // the event at head, as this store wrote it
	headKnown bool
	versions  map[streamKey]int64

	fast, fallbacks, reading, syncs atomic.Int64

	listenOnce sync.Once
	listenStop context.CancelFunc
	listenDone chan struct{}
	wakeMu     sync.Mutex
	wake       chan struct{}
	onKeyMu    sync.Mutex
	onKey      []func(keyID string)
}

// NewStore returns a store over pool. Call Close to stop its listener.
func NewStore(pool *pgxpool.Pool, opts Options) *Store {
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{pool: pool, opts: opts, frontiers: map[string]ledger.Frontier{}, versions: map[streamKey]int64{}, wake: make(chan struct{})}
	s.reads = hotReads(pool)
	s.claims = &coalescer[claimItem, bool]{max: 256, leaders: 1, run: s.claimBatch}
	s.completes = &coalescer[completeItem, bool]{max: 256, leaders: 1, run: s.completeBatch}
	return s
}

// Pool returns the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// OnKeyDestroyed registers fn to be called with the id of every subject key
// destroyed by any process on the database, once Listen runs. Wire it to
// ledger.Sealer.Invalidate.
func (s *Store) OnKeyDestroyed(fn func(keyID string)) {
	s.onKeyMu.Lock()
	s.onKey = append(s.onKey, fn)
	s.onKeyMu.Unlock()
}

// Close stops the listener, if it runs, and closes the store's pool of hot
// reads. It does not close the pool it was given.
func (s *Store) Close() {
	s.listenOnce.Do(func() {}) // never start after Close
	if s.listenStop != nil {
		s.listenStop()
		<-s.listenDone
	}
	if s.reads != s.pool {
		s.reads.Close()
	}
}

// hotReads returns a small pool beside pool, to the same servers with the
// same settings, for the reads every command makes: a session's new
// events (ReadStream, ReadStreams) and a credential's row (Token, APIKey).
// Its connections always use generic plans (in plan_cache_mode auto,
// PostgreSQL kept planning the catch-up read: a generic plan, for an
// unnest of unknown length, looks dearer than a custom one for two
// streams), which the main pool does not (see
// OpenExisting): pg_stat_statements showed planning them for every call
// costing more than running them (the catch-up read: 0.088 ms to plan,
// 0.057 to run; a token: 0.065 and 0.011). The trap OpenExisting avoids —
// a generic plan made while a table looked empty (just analyzed) scans it
// whole ever after — is closed here by enable_seqscan = off: every one of
// these reads has its index, and with sequential scans priced out a
// generic plan uses it even then (TestHotReadsUseIndexes). Connections
// open lazily; on a configuration error it falls back to pool.
func hotReads(pool *pgxpool.Pool) *pgxpool.Pool {
	cfg := pool.Config()
	cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	cfg.ConnConfig.RuntimeParams["enable_seqscan"] = "off"
	cfg.MaxConns = max(4, cfg.MaxConns/3)
	cfg.MinConns = 0
	reads, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return pool
	}
	return reads
}

const eventColumns = `position, id, tenant, stream, version, seq, type, schema, occurred_at, recorded_at, actor_kind, actor_id, data, sealed, leaf_hash`

// The statements run with cached generic plans (hotReads, commitFast);
// TestHotReadsUseIndexes checks that each keeps its index.
const (
	sqlReadStream  = `SELECT ` + eventColumns + ` FROM events WHERE tenant = $1 AND stream = $2 AND version > $3 ORDER BY version`
	sqlReadStreams = `SELECT x.* FROM unnest($2::text[], $3::bigint[]) AS u(s, a),
		LATERAL (SELECT ` + eventColumns + ` FROM events WHERE tenant = $1 AND stream = u.s AND version > u.a ORDER BY version) AS x`
	sqlToken  = `SELECT ` + tokenColumns + ` FROM auth_tokens WHERE id = $1`
	sqlAPIKey = `SELECT ` + apiKeyColumns + ` FROM api_keys WHERE id = $1`
	// The writer's checks: the head is the event this store wrote last;
	// the tenants' tree sizes and the streams' versions are those given.
	sqlCheckHead  = `SELECT 1 / coalesce((SELECT (position = $1 AND id = $2)::int FROM events ORDER BY position DESC LIMIT 1), 0)`
	sqlCheckSizes = `SELECT 1 / (NOT EXISTS (SELECT 1 FROM unnest($1::text[], $2::bigint[]) AS u(tenant, size)
		WHERE coalesce((SELECT l.size FROM tenant_logs l WHERE l.tenant = u.tenant), 0) <> u.size))::int`
	sqlCheckVersions = `SELECT 1 / (NOT EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(tenant, stream, version)
		WHERE coalesce((SELECT max(e.version) FROM events e
		                WHERE e.tenant = u.tenant AND e.stream = u.stream), 0) <> u.version))::int`
)

type streamKey struct{ tenant, stream string }

// Commit implements ledger.Store.
//
// A commit first tries one round trip: a pipelined batch that takes the
// writer lock, has the server check that the head is still the event this
// store wrote last, and the tree sizes and stream versions it does not
// remember are those it assumes, writes, and commits. When they
// moved (another process appended), or the batch holds an event id that is
// stored already (a retry), the server refuses the batch before anything is
// written; the store rolls back and commits the reading way: the lock and
// every read in one round trip, the writes and COMMIT in another. Both ways
// hold the same lock, so positions stay gapless and commit order is
// position order with any number of processes.
func (s *Store) Commit(ctx context.Context, reqs []*ledger.AppendRequest) (err error) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("commit: %w", acquireFailed(err))
	}
	defer c.Release()
	conn := c.Conn()
	inTx := false
	defer func() {
		if err != nil && inTx {
			if _, rerr := conn.Exec(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
				// The connection is unusable; make sure the pool drops it.
				_ = conn.Close(context.WithoutCancel(ctx))
			}
		}
		if err != nil {
			// The outcome may be unknown: commit the reading way next.
			s.forget()
		}
		err = unavailable(err)
	}()
	if p, ok := s.planFast(reqs); ok {
		done, err := s.commitFast(ctx, conn, reqs, p, &inTx)
		if err != nil || done {
			return err
		}
		s.fallbacks.Add(1)
	}
	s.reading.Add(1)
	return s.commitReading(ctx, conn, reqs, &inTx)
}

// CommitStats counts the commits of a Store by the way they went.
type CommitStats struct {
	Fast      int64 // committed in one round trip
	Fallbacks int64 // one-round-trip batches the server refused (state moved, or a retried id)
	Reading   int64 // commits the reading way (after a fallback, or with nothing cached)
	Syncs     int64 // WAL flushes asked by Sync (Options.AsyncCommit)
}

// CommitStats returns the store's commit counts since NewStore. It is safe
// for concurrent use.
func (s *Store) CommitStats() CommitStats {
	return CommitStats{Fast: s.fast.Load(), Fallbacks: s.fallbacks.Load(), Reading: s.reading.Load(), Syncs: s.syncs.Load()}
}

// maxCachedStreams bounds the stream versions the writer remembers; past it
// the cache starts again (a stream not remembered costs at most one refused
// batch, when its guessed version is wrong).
const maxCachedStreams = 1 << 16

// fastPlan is what the one-round-trip commit assumes: the state as this
// store last committed it, which the server checks under the lock.
type fastPlan struct {
	head      int64
	headID    uuid.UUID
	frontiers map[string]*ledger.Frontier // copies, kept only after the commit
	assumed   map[streamKey]int64         // the stream versions assumed before the commit
	// the assumptions, for vigil_expect_state
	tenants          []string
	sizes            []int64
	sTenants, sNames []string
	sVersions        []int64
}

// planFast returns the assumptions of a one-round-trip commit of reqs, or
// false when the reading way is needed anyway: the head is unknown (first
// commit), a request's expected version differs from the one remembered
// (a real conflict, which the reading way reports), or the batch repeats an
// event id.
func (s *Store) planFast(reqs []*ledger.AppendRequest) (*fastPlan, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.headKnown || s.headID == (uuid.UUID{}) {
		return nil, false
	}
	p := &fastPlan{head: s.head, headID: s.headID, frontiers: map[string]*ledger.Frontier{}, assumed: map[streamKey]int64{}}
	running := map[streamKey]int64{}
	ids := map[uuid.UUID]bool{}
	for _, r := range reqs {
		if len(r.Events) == 0 {
			return nil, false
		}
		for i := range r.Events {
			if ids[r.Events[i].ID] {
				return nil, false
			}
			ids[r.Events[i].ID] = true
		}
		if _, ok := p.frontiers[r.Tenant]; !ok {
			f, known := s.frontiers[r.Tenant]
			p.frontiers[r.Tenant] = &f
			if !known {
				// A tenant not written here: guess empty, which the
				// server checks. A remembered tree is exact, like a
				// remembered stream version (see noteCommit).
				p.tenants = append(p.tenants, r.Tenant)
				p.sizes = append(p.sizes, f.Size())
			}
		}
		k := streamKey{r.Tenant, r.Stream}
		v, ok := running[k]
		if !ok {
			if v, ok = s.versions[k]; !ok {
				// Not remembered: the caller's expectation, or a new
				// stream; the server checks the guess. A remembered
				// version needs no check: it is exact as long as the head
				// is the one this store wrote (see noteCommit).
				v = max(r.ExpectedVersion, 0)
				p.sTenants = append(p.sTenants, r.Tenant)
				p.sNames = append(p.sNames, r.Stream)
				p.sVersions = append(p.sVersions, v)
			}
			p.assumed[k] = v
		}
		if r.ExpectedVersion >= 0 && r.ExpectedVersion != v {
			return nil, false
		}
		running[k] = v + int64(len(r.Events))
	}
	return p, true
}

// commitFast sends the whole transaction of reqs in one batch under the
// assumptions of p. It returns true when committed; false with a nil error
// when the server refused the batch before COMMIT and it was rolled back
// (nothing written: commit the reading way); an error otherwise, with
// *inTx telling whether a transaction may still be open.
func (s *Store) commitFast(ctx context.Context, conn *pgx.Conn, reqs []*ledger.AppendRequest, p *fastPlan, inTx *bool) (bool, error) {
	var (
		ev       eventCols
		hs       hashCols
		computed []tlog.Hash
		head     = p.head
		versions = map[streamKey]int64{}
	)
	for _, r := range reqs {
		k := streamKey{r.Tenant, r.Stream}
		cur, ok := versions[k]
		if !ok {
			cur = p.assumed[k]
		}
		computed = assign(r, cur, &head, p.frontiers[r.Tenant], &ev, &hs, computed)
		versions[k] = cur + int64(len(r.Events))
	}
	sizes := make(map[string]int64, len(p.frontiers))
	for t, f := range p.frontiers {
		sizes[t] = f.Size()
	}
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	s.queueTxSettings(b)
	// The checks below run on every commit: cached generic plans, priced
	// so that they keep their indexes whatever the tables looked like when
	// planned (see hotReads). Planning them each time was 0.09 ms of a
	// commit under the writer lock (pg_stat_statements).
	b.Queue(`SET LOCAL plan_cache_mode = force_generic_plan`)
	b.Queue(`SET LOCAL enable_seqscan = off`)
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, writerLockKey)
	// The state this store last left, checked under the lock in plain SQL
	// (the plpgsql vigil_expect_state of migration 00014 cost 0.58 ms a
	// commit, half the writer's time in PostgreSQL): the newest event is
	// still the one this store wrote at the head — so no other process
	// appended since, and an asynchronous commit lost in a server crash,
	// its positions then filled by another process, does not pass
	// either —, and the tree sizes and stream versions this store does not
	// remember are those it guessed. A failed check divides by zero
	// (SQLSTATE 22012) before anything is written. The head check is
	// written for the planner (one index, 0.03 ms to plan against 0.13 ms
	// for a count with a max() subquery); the others go only when there
	// are tenants or streams to check.
	b.Queue(sqlCheckHead, p.head, p.headID)
	if len(p.tenants) > 0 {
		b.Queue(sqlCheckSizes, p.tenants, p.sizes)
	}
	if len(p.sNames) > 0 {
		b.Queue(sqlCheckVersions, p.sTenants, p.sNames, p.sVersions)
	}
	queueWrites(b, &ev, &hs, sizes, head)
	b.Queue(`COMMIT`)
	n := b.Len()
	*inTx = true
	br := conn.SendBatch(ctx, b)
	failed, err := -1, error(nil)
	for i := 0; i < n && err == nil; i++ {
		if _, err = br.Exec(); err != nil {
			failed = i
		}
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		failed, err = n-1, cerr
	}
	var pgErr *pgconn.PgError
	if err != nil && failed < n-1 && errors.As(err, &pgErr) {
		// Refused before COMMIT: by the state check (SQLSTATE 22012),
		// or by a unique index (a retried event id, or a stream this
		// store guessed wrong). Nothing is written.
		if _, rerr := conn.Exec(ctx, "ROLLBACK"); rerr != nil {
			return false, fmt.Errorf("commit: roll back a refused batch: %w", rerr)
		}
		*inTx = false
		return false, nil
	}
	if err != nil {
		// The whole batch, COMMIT included, may have reached the server.
		return false, fmt.Errorf("commit: %w", outcomeUnknown(translate(err)))
	}
	*inTx = false
	if conn.PgConn().TxStatus() != 'I' {
		*inTx = true
		return false, errors.New("commit: transaction was rolled back")
	}
	s.fast.Add(1)
	s.noteCommit(head, ev.lastID(), versions, p.frontiers, false)
	return true, nil
}

// noteCommit remembers the state a commit left, for the next one-round-trip
// commit. A commit older than the state remembered (two commits of this
// store racing) is not noted: the server would refuse it anyway.
//
// headID is the id of the event at head: the last this commit wrote, or
// the one it read when it wrote nothing; zero when unknown (the next
// commit then reads).
//
// The remembered stream versions and trees are exact while every commit
// since they were noted was this store's: a one-round-trip commit proves
// that (the head it assumed is the event it wrote last); a reading commit
// that found the head elsewhere (fresh) replaces them with its own.
func (s *Store) noteCommit(head int64, headID uuid.UUID, versions map[streamKey]int64, frontiers map[string]*ledger.Frontier, fresh bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if fresh {
		// Read under the lock: authoritative, even behind what was
		// remembered (a commit lost in a crash).
		s.versions = map[streamKey]int64{}
		s.frontiers = map[string]ledger.Frontier{}
	} else if s.headKnown && head < s.head {
		return
	}
	if headID == (uuid.UUID{}) && s.headKnown && head == s.head {
		headID = s.headID // nothing written, and nobody else wrote
	}
	s.head, s.headID, s.headKnown = head, headID, true
	if len(s.versions)+len(versions) > maxCachedStreams {
		s.versions = map[streamKey]int64{}
	}
	for k, v := range versions {
		s.versions[k] = v
	}
	for t, f := range frontiers {
		s.frontiers[t] = *f
	}
}

// forget drops what noteCommit remembered, so that the next commit goes
// the reading way.
func (s *Store) forget() {
	s.mu.Lock()
	s.headKnown, s.headID = false, uuid.UUID{}
	s.versions = map[streamKey]int64{}
	s.mu.Unlock()
}

// assign gives r's events, appended to a stream at version cur, their
// versions, leaf hashes, positions after *head and sequence numbers in f,
// and adds their rows and stored hashes to ev and hs. computed is scratch
// space, returned for reuse.
func assign(r *ledger.AppendRequest, cur int64, head *int64, f *ledger.Frontier, ev *eventCols, hs *hashCols, computed []tlog.Hash) []tlog.Hash {
	for i := range r.Events {
		e := &r.Events[i]
		v := cur + int64(i) + 1
		if e.Version != v || e.LeafHash == [32]byte{} {
			e.Version = v
			e.LeafHash = ledger.LeafHash(e)
		}
		*head++
		e.Position = *head
		e.Seq = f.Size()
		start := tlog.StoredHashIndex(0, e.Seq)
		computed = f.Append(computed[:0], e.LeafHash)
		for j, h := range computed {
			hs.add(r.Tenant, start+int64(j), h)
		}
		ev.add(e)
	}
	return computed
}

// queueWrites queues a commit's writes: the events, the Merkle log's stored
// hashes, the tenants' tree sizes and the notification of the new head.
func queueWrites(b *pgx.Batch, ev *eventCols, hs *hashCols, sizes map[string]int64, head int64) {
	// Cached generic plans for the INSERTs: planning them every time cost
	// about 20% of the batched append rate (see commitReading).
	b.Queue(`SET LOCAL plan_cache_mode = auto`)
	b.Queue(`INSERT INTO events (position, id, tenant, stream, version, seq, type, schema, occurred_at, recorded_at, actor_kind, actor_id, data, sealed, leaf_hash)
		SELECT p, i, t, s, v, q, ty, sc, o, r, ak, ai, d::json, se, l
		FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::int[],
			$9::timestamptz[], $10::timestamptz[], $11::text[], $12::text[], $13::text[], $14::bytea[], $15::bytea[])
			AS u(p, i, t, s, v, q, ty, sc, o, r, ak, ai, d, se, l)`,
		ev.position, ev.id, ev.tenant, ev.stream, ev.version, ev.seq, ev.typ, ev.schema,
		ev.occurred, ev.recorded, ev.actorKind, ev.actorID, ev.data, ev.sealed, ev.leaf)
	b.Queue(`INSERT INTO merkle_hashes (tenant, idx, hash) SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])`,
		hs.tenant, hs.idx, hs.hash)
	var st []string
	var sv []int64
	for t, n := range sizes {
		st, sv = append(st, t), append(sv, n)
	}
	b.Queue(`INSERT INTO tenant_logs (tenant, size) SELECT * FROM unnest($1::text[], $2::bigint[])
		ON CONFLICT (tenant) DO UPDATE SET size = EXCLUDED.size WHERE tenant_logs.size <> EXCLUDED.size`, st, sv)
	b.Queue(`SELECT pg_notify($1, $2)`, eventsChannel, strconv.FormatInt(head, 10))
}

// commitReading commits reqs the reading way: BEGIN, the lock and every
// read (head, stored ids, stream versions, tree sizes) in one pipelined
// batch; every write and COMMIT in another.
func (s *Store) commitReading(ctx context.Context, conn *pgx.Conn, reqs []*ledger.AppendRequest, inTx *bool) (err error) {
	ids := make([][16]byte, 0, len(reqs))
	var sTenants, sStreams []string
	seenStream := map[streamKey]bool{}
	var tenants []string
	seenTenant := map[string]bool{}
	for _, r := range reqs {
		for i := range r.Events {
			ids = append(ids, [16]byte(r.Events[i].ID))
		}
		k := streamKey{r.Tenant, r.Stream}
		if !seenStream[k] {
			seenStream[k] = true
			sTenants = append(sTenants, r.Tenant)
			sStreams = append(sStreams, r.Stream)
		}
		if !seenTenant[r.Tenant] {
			seenTenant[r.Tenant] = true
			tenants = append(tenants, r.Tenant)
		}
	}

	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	// The pool plans every statement for its arguments (see Open), and
	// every read of the writer's, vigil_expect_state's included, must be:
	// a generic plan made while events was small scans the whole table
	// (the id lookup did, and so did vigil_expect_state's stream-version
	// check under the writer lock: 9 ms a commit at 7,000 events, seen in
	// pg_stat_statements). Only the big INSERTs after them get cached
	// generic plans (queueWrites), which cannot go wrong for them.
	s.queueTxSettings(b)
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, writerLockKey)
	b.Queue(`SELECT coalesce(max(position), 0), (SELECT id FROM events ORDER BY position DESC LIMIT 1) FROM events`)
	b.Queue(`SELECT `+eventColumns+` FROM events WHERE id = ANY($1)`, ids)
	// Stream versions from the events' (tenant, stream, version) index.
	b.Queue(`SELECT u.tenant, u.stream, coalesce((SELECT max(e.version) FROM events e WHERE e.tenant = u.tenant AND e.stream = u.stream), 0)
		FROM unnest($1::text[], $2::text[]) AS u(tenant, stream)`, sTenants, sStreams)
	b.Queue(`SELECT tenant, size FROM tenant_logs WHERE tenant = ANY($1)`, tenants)
	*inTx = true
	br := conn.SendBatch(ctx, b)
	var head int64
	var headID *uuid.UUID // nil: the log is empty
	existing := map[uuid.UUID]domain.Event{}
	versions := map[streamKey]int64{}
	sizes := map[string]int64{}
	err = func() error {
		for i := 0; i < s.txSettingsLen()+2; i++ { // BEGIN, settings, lock
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if err := br.QueryRow().Scan(&head, &headID); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				rows.Close()
				return err
			}
			existing[e.ID] = e
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var k streamKey
			var v int64
			if err := rows.Scan(&k.tenant, &k.stream, &v); err != nil {
				rows.Close()
				return err
			}
			versions[k] = v
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var t string
			var n int64
			if err := rows.Scan(&t, &n); err != nil {
				rows.Close()
				return err
			}
			sizes[t] = n
		}
		return rows.Err()
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("commit: read state: %w", err)
	}
	// Did anything but this store's own commits move the log since it
	// last committed (another process, or a commit of its own lost in a
	// server crash)? Then what it remembers may be stale: it keeps only
	// what this commit reads.
	s.mu.Lock()
	moved := !s.headKnown || s.head != head || headID == nil || s.headID != *headID
	s.mu.Unlock()

	// Frontiers are worked on as copies and kept only after the commit.
	frontiers := map[string]*ledger.Frontier{}
	frontier := func(tenant string) (*ledger.Frontier, error) {
		if f, ok := frontiers[tenant]; ok {
			return f, nil
		}
		size := sizes[tenant]
		s.mu.Lock()
		f, ok := s.frontiers[tenant]
		s.mu.Unlock()
		// A remembered tree of the right size is the stored one, unless
		// the head moved with asynchronous commits: a commit of this store
		// lost in a crash, then as many leaves appended by another
		// process, would leave a tree of that size with other hashes.
		stale := moved && s.opts.AsyncCommit
		if !ok || f.Size() != size || stale {
			// Another process appended, or this one has not seen the
			// tenant yet: rebuild the right edge from the stored hashes.
			hs, err := readHashes(ctx, conn, tenant, ledger.FrontierIndexes(size))
			if err != nil {
				return nil, err
			}
			if f, err = ledger.LoadFrontier(size, hs); err != nil {
				return nil, err
			}
		}
		frontiers[tenant] = &f
		return &f, nil
	}

	var (
		ev       eventCols
		hs       hashCols
		inBatch  = map[uuid.UUID]domain.Event{}
		computed []tlog.Hash
		written  int
	)
	for _, r := range reqs {
		stored := make([]domain.Event, 0, len(r.Events))
		for _, e := range r.Events {
			if old, ok := existing[e.ID]; ok {
				stored = append(stored, old)
			} else if old, ok := inBatch[e.ID]; ok {
				stored = append(stored, old)
			}
		}
		if len(stored) == len(r.Events) {
			same := true
			for _, old := range stored {
				if old.Tenant != r.Tenant || old.Stream != r.Stream {
					same = false
				}
			}
			if same {
				r.Events = stored // idempotent retry
			} else {
				r.Err = fmt.Errorf("append to %s: event ids already used on another stream: %w", r.Stream, domain.ErrConflict)
			}
			continue
		}
		if len(stored) > 0 {
			r.Err = fmt.Errorf("append to %s: %d of %d event ids are stored already: %w", r.Stream, len(stored), len(r.Events), domain.ErrConflict)
			continue
		}
		k := streamKey{r.Tenant, r.Stream}
		cur := versions[k]
		if r.ExpectedVersion >= 0 && cur != r.ExpectedVersion {
			r.Err = fmt.Errorf("append to %s: stream is at version %d, expected %d: %w", r.Stream, cur, r.ExpectedVersion, domain.ErrConcurrency)
			continue
		}
		f, err := frontier(r.Tenant)
		if err != nil {
			return fmt.Errorf("commit: frontier of %s: %w", r.Tenant, err)
		}
		computed = assign(r, cur, &head, f, &ev, &hs, computed)
		for _, e := range r.Events {
			inBatch[e.ID] = e
		}
		versions[k] = cur + int64(len(r.Events))
		sizes[r.Tenant] = f.Size()
		written++
	}
	b = &pgx.Batch{}
	if written > 0 {
		queueWrites(b, &ev, &hs, sizes, head)
	}
	// Nothing new when every request was a retry or failed its checks:
	// the transaction then only commits its reads.
	b.Queue(`COMMIT`)
	if err = conn.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("commit: %w", outcomeUnknown(translate(err)))
	}
	*inTx = false
	if conn.PgConn().TxStatus() != 'I' {
		// A COMMIT of an aborted transaction answers ROLLBACK without an
		// error; nothing was written.
		*inTx = true
		err = errors.New("commit: transaction was rolled back")
		return err
	}
	last := ev.lastID()
	if written == 0 && headID != nil {
		last = *headID // nothing written: the head read under the lock
	}
	s.noteCommit(head, last, versions, frontiers, moved)
	return nil
}

// queueTxSettings queues the settings of a writer transaction after its
// BEGIN: with Options.AsyncCommit, an asynchronous commit, so that the
// writer lock is released when the commit record is written, not when it
// is flushed; Sync then waits for the flush, outside the lock.
func (s *Store) queueTxSettings(b *pgx.Batch) {
	if s.opts.AsyncCommit {
		b.Queue(`SET LOCAL synchronous_commit = off`)
	}
}

// txSettingsLen is the number of statements queueTxSettings queues.
func (s *Store) txSettingsLen() int {
	if s.opts.AsyncCommit {
		return 1
	}
	return 0
}

// Sync implements ledger.Syncer: it returns once every commit that
// returned before the call is durable. It commits a transactional logical
// message with the session's synchronous_commit (the server's setting):
// its commit record comes after theirs in the WAL, so its flush (and its
// wait for synchronous standbys) covers them, and one Sync covers every
// commit before it. An error leaves their durability unknown; the store
// then reads the state again before its next commit.
func (s *Store) Sync(ctx context.Context) error {
	if !s.opts.AsyncCommit {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `SELECT pg_logical_emit_message(true, 'vigil.sync', '')`); err != nil {
		s.forget()
		return fmt.Errorf("sync: %w", unavailable(err))
	}
	s.syncs.Add(1)
	return nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readHashes(ctx context.Context, q querier, tenant string, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT idx, hash FROM merkle_hashes WHERE tenant = $1 AND idx = ANY($2)`, tenant, indexes)
	if err != nil {
		return nil, err
	}
	byIdx := make(map[int64]tlog.Hash, len(indexes))
	for rows.Next() {
		var idx int64
		var h []byte
		if err := rows.Scan(&idx, &h); err != nil {
			rows.Close()
			return nil, err
		}
		if len(h) != tlog.HashSize {
			rows.Close()
			return nil, fmt.Errorf("stored hash %d of %s has %d bytes", idx, tenant, len(h))
		}
		byIdx[idx] = tlog.Hash(h)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		h, ok := byIdx[idx]
		if !ok {
			return nil, fmt.Errorf("stored hash %d of %s is missing", idx, tenant)
		}
		out[i] = h
	}
	return out, nil
}

func scanEvent(rows pgx.Rows) (domain.Event, error) {
	var (
		e                     domain.Event
		schema                int32
		kind                  string
		data, sealed, leafRaw []byte
	)
	if err := rows.Scan(&e.Position, &e.ID, &e.Tenant, &e.Stream, &e.Version, &e.Seq, &e.Type, &schema,
		&e.OccurredAt, &e.RecordedAt, &kind, &e.Actor.ID, &data, &sealed, &leafRaw); err != nil {
		return e, err
	}
	e.Schema = int(schema)
	e.Actor.Kind = domain.ActorKind(kind)
	e.Data = data
	e.OccurredAt = e.OccurredAt.UTC()
	e.RecordedAt = e.RecordedAt.UTC()
	copy(e.LeafHash[:], leafRaw)
	fields, err := ledger.DecodeSealed(sealed)
	if err != nil {
		return e, fmt.Errorf("event at position %d: %w", e.Position, err)
	}
	e.Sealed = fields
	return e, nil
}

func (s *Store) queryEvents(ctx context.Context, sql string, args ...any) ([]domain.Event, error) {
	return s.readEvents(ctx, s.pool, sql, args...)
}

func (s *Store) readEvents(ctx context.Context, pool *pgxpool.Pool, sql string, args ...any) ([]domain.Event, error) {
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, unavailable(err)
	}
	return collectEvents(rows)
}

// collectEvents scans and closes rows of eventColumns.
func collectEvents(rows pgx.Rows) ([]domain.Event, error) {
	defer rows.Close()
	var out []domain.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, e)
	}
	return out, unavailable(rows.Err())
}

// ReadStream implements ledger.Store.
func (s *Store) ReadStream(ctx context.Context, tenant, stream string, after int64) ([]domain.Event, error) {
	return s.readEvents(ctx, s.reads, sqlReadStream, tenant, stream, after)
}

// ReadStreams implements ledger.StreamsReader: one indexed range scan per
// stream, in one statement.
//
// When ctx carries a credential probe (service.ProbeFrom: a session
// command whose credential was authenticated from memory), the
// credential's row is read in the same round trip, pipelined before the
// events.
func (s *Store) ReadStreams(ctx context.Context, tenant string, streams []string, after []int64) ([]domain.Event, error) {
	probe := service.ProbeFrom(ctx)
	if probe == nil {
		return s.readEvents(ctx, s.reads, sqlReadStreams, tenant, streams, after)
	}
	b := &pgx.Batch{}
	if probe.APIKey {
		b.Queue(sqlAPIKey, probe.ID)
	} else {
		b.Queue(sqlToken, probe.ID)
	}
	b.Queue(sqlReadStreams, tenant, streams, after)
	br := s.reads.SendBatch(ctx, b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, unavailable(err)
	}
	if probe.APIKey {
		probe.Key, err = collectAPIKey(rows, probe.ID)
	} else {
		probe.Token, err = collectToken(rows, probe.ID)
	}
	if err != nil && !errors.Is(err, domain.ErrNotFound) {
		return nil, err
	}
	probe.Err, probe.Done = err, true
	rows, err = br.Query()
	if err != nil {
		return nil, unavailable(err)
	}
	return collectEvents(rows)
}

// ReadAll implements ledger.Store.
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]domain.Event, error) {
	return s.queryEvents(ctx, `SELECT `+eventColumns+` FROM events WHERE position > $1 ORDER BY position LIMIT $2`, after, limit)
}

// EventByID implements ledger.Store.
func (s *Store) EventByID(ctx context.Context, id [16]byte) (domain.Event, error) {
	evs, err := s.queryEvents(ctx, `SELECT `+eventColumns+` FROM events WHERE id = $1`, id)
	if err != nil {
		return domain.Event{}, err
	}
	if len(evs) == 0 {
		return domain.Event{}, domain.ErrNotFound
	}
	return evs[0], nil
}

// Head implements ledger.Store.
func (s *Store) Head(ctx context.Context) (int64, error) {
	var head int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&head)
	return head, unavailable(err)
}

// Tenants implements ledger.Store.
func (s *Store) Tenants(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT tenant FROM tenant_logs ORDER BY tenant`)
	if err != nil {
		return nil, unavailable(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return out, unavailable(err)
}

// TreeSize implements ledger.Store.
func (s *Store) TreeSize(ctx context.Context, tenant string) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT size FROM tenant_logs WHERE tenant = $1`, tenant).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return n, unavailable(err)
}

// ReadHashes implements ledger.Store.
func (s *Store) ReadHashes(ctx context.Context, tenant string, indexes []int64) ([]tlog.Hash, error) {
	return readHashes(ctx, s.pool, tenant, indexes)
}

// ScanLog implements ledger.Store.
func (s *Store) ScanLog(ctx context.Context, tenant string, from, to int64, fn func(*domain.Event, []byte) error) error {
	rows, err := s.pool.Query(ctx, `SELECT position, id, stream, version, seq, type, schema, occurred_at, recorded_at, actor_kind, actor_id, data, sealed, leaf_hash
		FROM events WHERE tenant = $1 AND seq >= $2 AND seq < $3 ORDER BY seq`, tenant, from, to)
	if err != nil {
		return err
	}
	defer rows.Close()
	e := domain.Event{Tenant: tenant}
	var (
		schema       int32
		kind         string
		data, sealed []byte
		leaf         []byte
	)
	for rows.Next() {
		if err := rows.Scan(&e.Position, &e.ID, &e.Stream, &e.Version, &e.Seq, &e.Type, &schema,
			&e.OccurredAt, &e.RecordedAt, &kind, &e.Actor.ID, &data, &sealed, &leaf); err != nil {
			return err
		}
		e.Schema = int(schema)
		e.Actor.Kind = domain.ActorKind(kind)
		e.Data = data
		e.LeafHash = [32]byte{}
		copy(e.LeafHash[:], leaf)
		if err := fn(&e, sealed); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ScanHashes implements ledger.Store.
func (s *Store) ScanHashes(ctx context.Context, tenant string, fn func(int64, tlog.Hash) error) error {
	rows, err := s.pool.Query(ctx, `SELECT idx, hash FROM merkle_hashes WHERE tenant = $1 ORDER BY idx`, tenant)
	if err != nil {
		return err
	}
	defer rows.Close()
	var idx int64
	var h []byte
	for rows.Next() {
		if err := rows.Scan(&idx, &h); err != nil {
			return err
		}
		var hh tlog.Hash
		copy(hh[:], h) // a truncated hash compares unequal, which Verify reports
		if len(h) != tlog.HashSize {
			hh[0] ^= 0xff
		}
		if err := fn(idx, hh); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ScanPositions implements ledger.Store.
func (s *Store) ScanPositions(ctx context.Context, fn func(int64) error) error {
	rows, err := s.pool.Query(ctx, `SELECT position FROM events ORDER BY position`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var p int64
	for rows.Next() {
		if err := rows.Scan(&p); err != nil {
			return err
		}
		if err := fn(p); err != nil {
			return err
		}
	}
	return rows.Err()
}

// SaveCheckpoint implements ledger.Store.
func (s *Store) SaveCheckpoint(ctx context.Context, c ledger.Checkpoint) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO checkpoints (tenant, size, root, note, created_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (tenant, size) DO NOTHING`, c.Tenant, c.Size, c.Root[:], string(c.Note), c.CreatedAt)
	if err != nil {
		return fmt.Errorf("save checkpoint %s at %d: %w", c.Tenant, c.Size, translate(err))
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	// A checkpoint of this size is stored (by this process or another):
	// the same root is an idempotent repeat, another root a fork. Read
	// after the INSERT, which waited for any concurrent writer of the row.
	var root []byte
	if err := s.pool.QueryRow(ctx, `SELECT root FROM checkpoints WHERE tenant = $1 AND size = $2`, c.Tenant, c.Size).Scan(&root); err != nil {
		return fmt.Errorf("save checkpoint %s at %d: %w", c.Tenant, c.Size, unavailable(err))
	}
	if !bytes.Equal(root, c.Root[:]) {
		return fmt.Errorf("save checkpoint %s at %d: stored root %x, new root %x: %w", c.Tenant, c.Size, root, c.Root[:], ledger.ErrCheckpointFork)
	}
	return nil
}

func (s *Store) queryCheckpoints(ctx context.Context, sql string, args ...any) ([]ledger.Checkpoint, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ledger.Checkpoint
	for rows.Next() {
		var c ledger.Checkpoint
		var root []byte
		var note string
		if err := rows.Scan(&c.Tenant, &c.Size, &root, &note, &c.CreatedAt); err != nil {
			return nil, err
		}
		copy(c.Root[:], root)
		c.Note = []byte(note)
		out = append(out, c)
	}
	return out, rows.Err()
}

// LatestCheckpoint implements ledger.Store.
func (s *Store) LatestCheckpoint(ctx context.Context, tenant string) (ledger.Checkpoint, error) {
	cps, err := s.queryCheckpoints(ctx, `SELECT tenant, size, root, note, created_at FROM checkpoints WHERE tenant = $1 ORDER BY size DESC LIMIT 1`, tenant)
	if err != nil {
		return ledger.Checkpoint{}, err
	}
	if len(cps) == 0 {
		return ledger.Checkpoint{}, domain.ErrNotFound
	}
	return cps[0], nil
}

// Checkpoints implements ledger.Store.
func (s *Store) Checkpoints(ctx context.Context, tenant string) ([]ledger.Checkpoint, error) {
	cps, err := s.queryCheckpoints(ctx, `SELECT tenant, size, root, note, created_at FROM checkpoints WHERE tenant = $1 ORDER BY size`, tenant)
	sort.Slice(cps, func(i, j int) bool { return cps[i].Size < cps[j].Size })
	return cps, err
}

// translate maps driver errors the callers branch on to domain sentinels:
// a unique violation to domain.ErrConflict, a lost or refused connection to
// domain.ErrUnavailable (unavailable).
func translate(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
		return fmt.Errorf("%s: %w", pgErr.ConstraintName, domain.ErrConflict)
	}
	return unavailable(err)
}

// eventCols holds the rows of a commit as column arrays, for one
// INSERT ... SELECT FROM unnest(...) in the commit's write batch.
type eventCols struct {
	position, version, seq []int64
	id                     [][16]byte
	tenant, stream, typ    []string
	schema                 []int32
	occurred, recorded     []time.Time
	actorKind, actorID     []string
	data                   []string
	sealed, leaf           [][]byte
}

func (c *eventCols) add(e *domain.Event) {
	c.position = append(c.position, e.Position)
	c.id = append(c.id, [16]byte(e.ID))
	c.tenant = append(c.tenant, e.Tenant)
	c.stream = append(c.stream, e.Stream)
	c.version = append(c.version, e.Version)
	c.seq = append(c.seq, e.Seq)
	c.typ = append(c.typ, e.Type)
	c.schema = append(c.schema, int32(e.Schema))
	c.occurred = append(c.occurred, e.OccurredAt)
	c.recorded = append(c.recorded, e.RecordedAt)
	c.actorKind = append(c.actorKind, string(e.Actor.Kind))
	c.actorID = append(c.actorID, e.Actor.ID)
	c.data = append(c.data, string(e.Data))
	c.sealed = append(c.sealed, ledger.EncodeSealed(e.Sealed))
	leaf := e.LeafHash
	c.leaf = append(c.leaf, leaf[:])
}

// lastID returns the id of the last row, zero when there is none.
func (c *eventCols) lastID() uuid.UUID {
	if len(c.id) == 0 {
		return uuid.UUID{}
	}
	return c.id[len(c.id)-1]
}

type hashCols struct {
	tenant []string
	idx    []int64
	hash   [][]byte
}

func (c *hashCols) add(tenant string, idx int64, h tlog.Hash) {
	c.tenant = append(c.tenant, tenant)
	c.idx = append(c.idx, idx)
	c.hash = append(c.hash, h[:])
}
