// Package ledger is Vigil's immutable, encrypted, tamper-evident log.
//
// Events are sealed (personal fields encrypted under their data subject's
// key), appended through one writer that commits many callers' events in one
// transaction (group commit) together with the per-tenant RFC 6962 Merkle
// hashes, and covered by signed checkpoints in the C2SP tlog-checkpoint form.
// Verify recomputes everything from the stored rows. Storage is behind the
// Store port; adapters/postgres is the default implementation.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil/domain"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Options tune a Ledger. Zero values select the defaults.
type Options struct {
	// MaxBatchEvents caps the events committed in one transaction
	// (default 2000).
	MaxBatchEvents int
	// QueueLength is how many append requests may wait for the writer
	// (default 4096).
	QueueLength int
	// CheckpointInterval is how often a tenant whose log grew gets a new
	// signed checkpoint (default 5 s).
	CheckpointInterval time.Duration
	// CheckpointEvery makes a checkpoint as soon as a tenant's log grew by
	// this many events (default 10000).
	CheckpointEvery int64
	// Origin is the prefix of each tenant's checkpoint origin line
	// (default "vigil.local").
	Origin string
	// Logger receives operational messages (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// Signers, when set, holds the verifier keys this log accepts: the
	// ledger refuses to sign a checkpoint with a key not pinned there
	// (CheckSigner), pinning the first one itself.
	Signers SignerPins
	// VerifierKey is the note verifier key of the signer, for Signers.
	VerifierKey string
	// SignerDescription says who holds the signer (a host, a file), stored
	// with a key the ledger pins.
	SignerDescription string
	// Durability, when set, limits checkpoints to events durable beyond
	// the database primary (durable.go; VIGIL_CHECKPOINT_DURABILITY).
	Durability Durability
	// OutcomeWindow is how long a commit whose outcome was lost with its
	// connection (ErrOutcomeUnknown, as in a database failover) is retried
	// with the same event ids before its callers get the error (default
	// 15 s, longer than a Patroni failover; negative: not retried).
	OutcomeWindow time.Duration
}

func (o *Options) defaults() {
	if o.MaxBatchEvents <= 0 {
		o.MaxBatchEvents = 2000
	}
	if o.OutcomeWindow == 0 {
		o.OutcomeWindow = 15 * time.Second
	}
	if o.QueueLength <= 0 {
		o.QueueLength = 4096
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 5 * time.Second
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = 10000
	}
	if o.Origin == "" {
		o.Origin = "vigil.local"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("ledger closed")

// Ledger appends to and reads from the log. It is safe for concurrent use.
// Start it with Run; Close stops it after committing what was queued.
type Ledger struct {
	store  Store
	sealer *Sealer
	signer note.Signer
	opts   Options

	queue    chan *pending
	mu       sync.RWMutex // guards closed and started against sends on queue
	closed   bool
	started  bool
	done     chan struct{}
	grown    chan growth // tenants whose log grew, for the checkpointer
	runOnce  sync.Once
	stopOnce sync.Once
	signerOK atomic.Bool // CheckSigner passed; a pinned key stays pinned
	marks    durableMarks
}

type growth struct {
	tenant string
	events int64
}

type pending struct {
	req  AppendRequest
	done chan struct{}
}

// New returns a ledger over store that seals with sealer and signs
// checkpoints with signer. Call Run to start its writer.
func New(store Store, sealer *Sealer, signer note.Signer, opts Options) *Ledger {
	opts.defaults()
	return &Ledger{
		store: store, sealer: sealer, signer: signer, opts: opts,
		queue: make(chan *pending, opts.QueueLength),
		done:  make(chan struct{}),
		grown: make(chan growth, 1024),
	}
}

// Store returns the ledger's store.
func (l *Ledger) Store() Store { return l.store }

// Sealer returns the ledger's sealer.
func (l *Ledger) Sealer() *Sealer { return l.sealer }

// Origin returns the checkpoint origin line of tenant's log.
func (l *Ledger) Origin(tenant string) string { return Origin(l.opts.Origin, tenant) }

// Run runs the writer and the checkpointer until Close is called (ctx only
// bounds the store calls of the final drain, never drops queued appends).
// It returns after everything queued before Close was committed.
func (l *Ledger) Run(ctx context.Context) error {
	l.runOnce.Do(func() {
		l.mu.Lock()
		l.started = true
		l.mu.Unlock()
		var wg sync.WaitGroup
		stopCP := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.checkpointer(context.WithoutCancel(ctx), stopCP)
		}()
		l.writer(context.WithoutCancel(ctx))
		close(stopCP)
		wg.Wait()
		close(l.done)
	})
	return nil
}

// Close stops accepting appends and, if Run was started, waits until every
// queued append was committed and a final checkpoint was made. It is safe to
// call more than once.
func (l *Ledger) Close() {
	l.stopOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.queue)
		l.mu.Unlock()
	})
	l.mu.RLock()
	started := l.started
	l.mu.RUnlock()
	if started {
		<-l.done
	}
}

// Append seals events and appends them to stream, all or nothing, after
// checking that the stream is at expectedVersion (AnyVersion skips the
// check, NoStream requires a new stream). Every event must belong to one
// tenant; its Stream is set to stream. It returns the stored events with
// version, position, seq and leaf hash, and personal fields in clear as
// given.
//
// Errors: domain.ErrConcurrency when the version does not match;
// domain.ErrConflict when some but not all event ids are stored already;
// domain.ErrSubjectErased when a personal field's subject was erased; an
// error of code invalid for malformed events. Appending events whose ids are
// all stored already returns the stored events: retrying is safe. If ctx
// ends while the append is queued, Append returns ctx.Err() and the events
// may or may not be committed; a retry with the same ids settles it.
func (l *Ledger) Append(ctx context.Context, stream string, expectedVersion int64, events ...domain.Event) ([]domain.Event, error) {
	if len(events) == 0 {
		return nil, domain.Errorf(domain.CodeInvalid, "append to %s: no events", stream)
	}
	if !domain.ValidStream(stream) {
		return nil, domain.Errorf(domain.CodeInvalid, "append: malformed stream %q", stream)
	}
	if expectedVersion < AnyVersion {
		return nil, domain.Errorf(domain.CodeInvalid, "append to %s: expected version %d", stream, expectedVersion)
	}
	tenant := events[0].Tenant
	now := l.opts.Now().UTC().Truncate(time.Microsecond)
	plain := make([][]domain.PersonalField, len(events))
	batch := make([]domain.Event, len(events))
	seen := make(map[[16]byte]bool, len(events))
	for i, e := range events {
		if e.Tenant == "" || e.Tenant != tenant {
			return nil, domain.Errorf(domain.CodeInvalid, "append to %s: events of different tenants", stream)
		}
		if e.Stream != "" && e.Stream != stream {
			return nil, domain.Errorf(domain.CodeInvalid, "append to %s: event for stream %s", stream, e.Stream)
		}
		if e.Type == "" || e.Schema <= 0 || !e.Actor.Kind.Valid() {
			return nil, domain.Errorf(domain.CodeInvalid, "append to %s: event %d lacks type, schema or actor", stream, i)
		}
		if e.ID == [16]byte{} {
			e.ID = domain.NewEventID()
		}
		if seen[e.ID] {
			return nil, domain.Errorf(domain.CodeInvalid, "append to %s: event id %s twice", stream, e.ID)
		}
		seen[e.ID] = true
		e.Stream = stream
		if e.OccurredAt.IsZero() {
			e.OccurredAt = now
		}
		e.OccurredAt = e.OccurredAt.UTC().Truncate(time.Microsecond)
		e.RecordedAt = now
		e.Position, e.Seq, e.LeafHash = 0, 0, [32]byte{}
		plain[i] = e.Personal
		if err := l.sealer.Seal(ctx, &e); err != nil {
			return nil, err
		}
		if expectedVersion >= 0 {
			// The version is known now, so hash here, in the caller's
			// goroutine, and spare the single writer the work.
			e.Version = expectedVersion + int64(i) + 1
			e.LeafHash = LeafHash(&e)
		}
		batch[i] = e
	}

	p := &pending{
		req:  AppendRequest{Tenant: tenant, Stream: stream, ExpectedVersion: expectedVersion, Events: batch},
		done: make(chan struct{}),
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return nil, ErrClosed
	}
	select {
	case l.queue <- p:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return nil, ctx.Err()
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if p.req.Err != nil {
		return nil, p.req.Err
	}
	out := p.req.Events
	for i := range out {
		if out[i].ID == batch[i].ID {
			out[i].Personal = plain[i]
		}
	}
	return out, nil
}

func (l *Ledger) writer(ctx context.Context) {
	batch := make([]*pending, 0, 256)
	reqs := make([]*AppendRequest, 0, 256)
	var synced chan []*pending
	if s, ok := l.store.(Syncer); ok {
		synced = make(chan []*pending, 64)
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.syncer(ctx, s, synced)
		}()
		defer func() {
			close(synced)
			<-done
		}()
	}
	for {
		first, ok := <-l.queue
		if !ok {
			return
		}
		batch = append(batch[:0], first)
		n := len(first.req.Events)
	drain:
		for n < l.opts.MaxBatchEvents {
			select {
			case p, ok := <-l.queue:
				if !ok {
					break drain
				}
				batch = append(batch, p)
				n += len(p.req.Events)
			default:
				break drain
			}
		}
		reqs = reqs[:0]
		for _, p := range batch {
			reqs = append(reqs, &p.req)
		}
		err := l.commit(ctx, reqs)
		if err == nil && synced != nil {
			// Acknowledged by the syncer once durable, while this
			// goroutine commits the next batch.
			synced <- slices.Clone(batch)
			continue
		}
		l.ack(batch, err)
	}
}

// syncer acknowledges the batches the writer committed once a Sync of the
// store covers them: one Sync for every batch that arrived while the
// previous one ran.
func (l *Ledger) syncer(ctx context.Context, s Syncer, in <-chan []*pending) {
	var batches [][]*pending
	for b := range in {
		batches = append(batches[:0], b)
	drain:
		for {
			select {
			case b, ok := <-in:
				if !ok {
					break drain
				}
				batches = append(batches, b)
			default:
				break drain
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.Sync(cctx)
		cancel()
		if err != nil {
			l.opts.Logger.Warn("ledger sync failed: the last commits may be lost", "err", err)
			err = fmt.Errorf("append: committed, but not known to be durable: %w", err)
		}
		for _, b := range batches {
			l.ack(b, err)
		}
	}
}

// ack answers the callers of a batch: err for all of them when the batch
// failed as a whole, else each request's own outcome; and tells the
// checkpointer which tenants grew.
func (l *Ledger) ack(batch []*pending, err error) {
	tenants := map[string]int64{}
	for _, p := range batch {
		if err != nil {
			p.req.Err = err
		} else if p.req.Err == nil {
			tenants[p.req.Tenant] += int64(len(p.req.Events))
		}
		close(p.done)
	}
	for t, n := range tenants {
		select {
		case l.grown <- growth{t, n}:
		default:
			// The checkpointer is behind; its ticker still covers
			// every tenant through CheckpointAll.
		}
	}
}

// commit runs one transaction, retrying a few times when the store fails as
// a whole (a dropped connection). When the outcome of a COMMIT was lost with
// its connection (ErrOutcomeUnknown: the events may be stored), it goes on
// retrying with the same event ids until the database answers again or
// OutcomeWindow has passed: the retry either finds the events stored (and
// answers them, as for any idempotent retry) or stores them, so the callers
// get the outcome instead of an error after which they could not tell.
func (l *Ledger) commit(ctx context.Context, reqs []*AppendRequest) error {
	var (
		err     error
		unknown time.Time // when an outcome was first lost
	)
	for attempt := 0; ; attempt++ {
		for _, r := range reqs {
			r.Err = nil
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = l.store.Commit(cctx, reqs)
		cancel()
		if err == nil {
			if !unknown.IsZero() {
				l.opts.Logger.Info("ledger commit outcome resolved by event ids", "after", time.Since(unknown).Round(time.Millisecond))
			}
			return nil
		}
		l.opts.Logger.Warn("ledger commit failed", "attempt", attempt+1, "err", err)
		if errors.Is(err, ErrOutcomeUnknown) && unknown.IsZero() {
			unknown = time.Now()
		}
		pause := time.Duration(attempt+1) * 50 * time.Millisecond
		switch {
		case attempt < 2:
		case !unknown.IsZero() && l.opts.OutcomeWindow > 0 && time.Since(unknown) < l.opts.OutcomeWindow && ctx.Err() == nil:
			pause = 250 * time.Millisecond
		default:
			return fmt.Errorf("append: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("append: %w", err)
		case <-time.After(pause):
		}
	}
}

// ReadStream returns the events of stream with version above after, with
// personal fields opened (erased ones flagged).
func (l *Ledger) ReadStream(ctx context.Context, tenant, stream string, after int64) ([]domain.Event, error) {
	evs, err := l.store.ReadStream(ctx, tenant, stream, after)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	for i := range evs {
		if err := l.sealer.Open(ctx, &evs[i]); err != nil {
			return nil, err
		}
	}
	return evs, nil
}

// ReadSealed returns the events of stream with version above after, with
// their personal fields still sealed.
func (l *Ledger) ReadSealed(ctx context.Context, tenant, stream string, after int64) ([]domain.Event, error) {
	evs, err := l.store.ReadStream(ctx, tenant, stream, after)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	return evs, nil
}

// ReadSealedMany is ReadSealed for several streams of tenant at once, in
// one query when the store can (StreamsReader): the events of each
// streams[i] with version above after[i], sealed, by stream.
func (l *Ledger) ReadSealedMany(ctx context.Context, tenant string, streams []string, after []int64) (map[string][]domain.Event, error) {
	out := make(map[string][]domain.Event, len(streams))
	if r, ok := l.store.(StreamsReader); ok {
		evs, err := r.ReadStreams(ctx, tenant, streams, after)
		if err != nil {
			return nil, fmt.Errorf("read %d streams: %w", len(streams), err)
		}
		for _, e := range evs {
			out[e.Stream] = append(out[e.Stream], e)
		}
		return out, nil
	}
	for i, stream := range streams {
		evs, err := l.ReadSealed(ctx, tenant, stream, after[i])
		if err != nil {
			return nil, err
		}
		out[stream] = evs
	}
	return out, nil
}

// Load implements the domain's event store port: the stream's events,
// opened.
func (l *Ledger) Load(ctx context.Context, tenant, stream string) ([]domain.Event, error) {
	return l.ReadStream(ctx, tenant, stream, 0)
}

// Open decrypts e's sealed fields in place.
func (l *Ledger) Open(ctx context.Context, e *domain.Event) error { return l.sealer.Open(ctx, e) }

// Shred destroys subject's data key in tenant (crypto-shredding). See
// Sealer.Shred.
func (l *Ledger) Shred(ctx context.Context, tenant string, subject domain.Subject) (string, error) {
	return l.sealer.Shred(ctx, tenant, subject)
}

// Subscribe calls fn with batches of committed events (sealed) in position
// order, starting after position from, and keeps waiting for new ones until
// ctx ends or fn returns an error. Positions are gapless and commit order is
// position order, so a subscriber that stores the position of the last batch
// it handled resumes exactly there.
func (l *Ledger) Subscribe(ctx context.Context, from int64, batchSize int, fn func(ctx context.Context, events []domain.Event) error) error {
	return Subscribe(ctx, l.store, from, batchSize, fn)
}

// Subscribe is Ledger.Subscribe over a bare store, for readers that do not
// append.
func Subscribe(ctx context.Context, store Store, from int64, batchSize int, fn func(ctx context.Context, events []domain.Event) error) error {
	if batchSize <= 0 {
		batchSize = 500
	}
	pos := from
	for {
		evs, err := store.ReadAll(ctx, pos, batchSize)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("subscribe after %d: %w", pos, err)
		}
		if len(evs) > 0 {
			if s, ok := store.(Syncer); ok {
				// Only durable events leave: a reader may see a commit
				// before its flush (see Syncer).
				if err := s.Sync(ctx); err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return fmt.Errorf("subscribe after %d: %w", pos, err)
				}
			}
			if err := fn(ctx, evs); err != nil {
				return err
			}
			pos = evs[len(evs)-1].Position
			continue
		}
		if err := store.WaitForAppend(ctx, pos); err != nil {
			return err
		}
	}
}

// Checkpoint makes and stores a signed checkpoint of tenant's log at its
// current size, unless one of that size exists, and returns it.
func (l *Ledger) Checkpoint(ctx context.Context, tenant string) (Checkpoint, error) {
	size, err := l.checkpointSize(ctx, tenant)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %s: %w", tenant, err)
	}
	if latest, err := l.store.LatestCheckpoint(ctx, tenant); err == nil && (latest.Size == size || (l.opts.Durability != nil && latest.Size > size)) {
		return latest, nil
	} else if err != nil && !errors.Is(err, domain.ErrNotFound) {
		return Checkpoint{}, fmt.Errorf("checkpoint %s: %w", tenant, err)
	} else if err != nil && size == 0 && l.opts.Durability != nil {
		return Checkpoint{Tenant: tenant}, nil // nothing durable yet, nothing signed
	}
	if err := l.CheckSigner(ctx); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %s: %w", tenant, err)
	}
	root, err := tlog.TreeHash(size, HashReader{ctx, l.store, tenant})
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %s: tree hash at %d: %w", tenant, size, err)
	}
	msg, err := SignCheckpoint(l.signer, l.Origin(tenant), size, root)
	if err != nil {
		return Checkpoint{}, err
	}
	c := Checkpoint{Tenant: tenant, Size: size, Root: root, Note: msg, CreatedAt: l.opts.Now().UTC()}
	if err := l.store.SaveCheckpoint(ctx, c); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint %s: %w", tenant, err)
	}
	return c, nil
}

// SignStatement signs text as a note with the checkpoint signing key, for
// statements other than checkpoints that holders of the checkpoint verifier
// key check offline (auditor bundles). It checks the signer as Checkpoint
// does, and refuses a text that parses as a checkpoint body, so that a
// statement can never pass for a tree head.
func (l *Ledger) SignStatement(ctx context.Context, text string) ([]byte, error) {
	if _, err := ParseCheckpointBody(text); err == nil {
		return nil, errors.New("sign statement: the text has the form of a checkpoint")
	}
	if err := l.CheckSigner(ctx); err != nil {
		return nil, fmt.Errorf("sign statement: %w", err)
	}
	return note.Sign(&note.Note{Text: text}, l.signer)
}

// CheckpointAll makes a checkpoint for every tenant whose log grew since its
// last one.
func (l *Ledger) CheckpointAll(ctx context.Context) error {
	tenants, err := l.store.Tenants(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range tenants {
		if _, err := l.Checkpoint(ctx, t); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (l *Ledger) checkpointer(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(l.opts.CheckpointInterval)
	defer tick.Stop()
	// Growth notices can be dropped under load, so each tick checkpoints
	// every tenant whose log grew (CheckpointAll compares sizes), and the
	// notices only bring a busy tenant's checkpoint forward.
	sinceLast := map[string]int64{}
	all := func() {
		if err := l.CheckpointAll(ctx); err != nil {
			l.opts.Logger.Error("checkpoint failed", "err", err)
		}
		clear(sinceLast)
	}
	for {
		select {
		case g := <-l.grown:
			sinceLast[g.tenant] += g.events
			if sinceLast[g.tenant] >= l.opts.CheckpointEvery {
				if _, err := l.Checkpoint(ctx, g.tenant); err != nil {
					l.opts.Logger.Error("checkpoint failed", "tenant", g.tenant, "err", err)
				}
				sinceLast[g.tenant] = 0
			}
		case <-tick.C:
			all()
		case <-stop:
			all()
			return
		}
	}
}

// ProveInclusion returns a proof that the leaf at seq is in tenant's tree of
// the given size, for tlog.CheckRecord.
func (l *Ledger) ProveInclusion(ctx context.Context, tenant string, seq, size int64) (tlog.RecordProof, error) {
	return tlog.ProveRecord(size, seq, HashReader{ctx, l.store, tenant})
}

// ProveConsistency returns a proof that tenant's tree of size older is a
// prefix of its tree of size newer, for tlog.CheckTree.
func (l *Ledger) ProveConsistency(ctx context.Context, tenant string, older, newer int64) (tlog.TreeProof, error) {
	return tlog.ProveTree(newer, older, HashReader{ctx, l.store, tenant})
}
