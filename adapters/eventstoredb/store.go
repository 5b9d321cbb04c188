// Package eventstoredb is the ledger.Store backed by KurrentDB (formerly
// EventStoreDB), through the gRPC client github.com/EventStore/EventStore-Client-Go/v4.
//
// Each Vigil stream is a KurrentDB stream and each request of a Commit one
// append with KurrentDB's own expected-revision check, so the per-stream
// all-or-nothing, the version check and the idempotency of retried event ids
// are KurrentDB's. The global positions, the per-tenant sequence numbers and
// the Merkle hashes, which KurrentDB does not have, are derived from the
// order of $all and kept in an order stream that any process can extend.
// Subject keys are not in KurrentDB, whose events cannot be destroyed: the
// store delegates them to another ledger.KeyStore (PostgreSQL in production).
// docs/kurrentdb.md describes the layout and why it is safe across processes
// and crashes.
package eventstoredb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

var _ ledger.Store = (*Store)(nil)

// Options tune a Store. Keys is required; zero values of the others select
// the defaults.
type Options struct {
	// Keys keeps subject keys (PostgreSQL in production). They must live
	// where they can be destroyed, which KurrentDB events cannot.
	Keys ledger.KeyStore
	// Prefix of every stream name this store writes; default "vigil". One
	// to 32 ASCII letters and digits. Stores with different prefixes on one
	// server do not see each other.
	Prefix string
	// PollInterval for WaitForAppend; default 200ms.
	PollInterval time.Duration
	// MaxAppendBytes bounds one append to KurrentDB (data, metadata and
	// type of its events, plus 64 bytes each); default 1,000,000, under
	// KurrentDB's default MaxAppendSize of 1 MiB. A request above it is
	// refused; order records are split to fit.
	MaxAppendBytes int
	// Timeout bounds each append and each wait for a connection; default
	// 15 s.
	Timeout time.Duration
	// Logger receives operational messages and the client's own, one level
	// down (default slog.Default()).
	Logger *slog.Logger
}

// Defaults of Options.
const (
	DefaultPollInterval   = 200 * time.Millisecond
	DefaultMaxAppendBytes = 1_000_000
	DefaultTimeout        = 15 * time.Second
)

// Store is the KurrentDB implementation of ledger.Store. It is safe for
// concurrent use, and several processes may use one namespace (Prefix) at
// once.
type Store struct {
	opts      Options
	cfg       *esdb.Configuration
	orderName string

	connMu sync.Mutex
	cur    *conn
	closed bool
	done   chan struct{} // closed by Close

	commitMu sync.Mutex    // one Commit at a time in this process
	syncMu   sync.Mutex    // one catch-up or extension at a time; guards scanned
	scanned  esdb.Position // $all read up to here by this process without finding unordered events

	mu   sync.RWMutex // guards st and wake
	st   *orderState
	wake chan struct{} // closed when st.head grows

	cacheMu   sync.Mutex
	cache     map[int64]*orderRecord
	cacheRing []int64
	cacheNext int

	versionsMu sync.Mutex
	versions   map[string]int64 // KurrentDB stream -> version, as last written by this process

	cpMu sync.Mutex
	cps  map[string]*cpState
}

// Open connects to KurrentDB with a connection string (esdb://,
// esdb+discover://, or the same with kurrentdb or kurrent as the scheme) and
// returns the store of opts.Prefix's namespace, creating its order stream on
// first use and reading it whole (which takes time and memory in proportion
// to the log; see docs/kurrentdb.md). It fails when the server cannot be
// reached, with an error wrapping ErrUnavailable (or ErrAccessDenied), within
// the client's discovery attempts (about a second against a closed port) or
// when ctx ends. Errors never include the URL's password.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if opts.Keys == nil {
		return nil, errors.New("kurrentdb: Options.Keys is required: subject keys cannot live in KurrentDB")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if !validPrefix(opts.Prefix) {
		return nil, fmt.Errorf("kurrentdb: prefix %q: want 1 to %d ASCII letters and digits", opts.Prefix, maxPrefixLen)
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.MaxAppendBytes <= 0 {
		opts.MaxAppendBytes = DefaultMaxAppendBytes
	}
	if opts.MaxAppendBytes < 4096 {
		return nil, fmt.Errorf("kurrentdb: MaxAppendBytes %d is below 4096", opts.MaxAppendBytes)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	cfg, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	cfg.Logger = slogLogging(opts.Logger)
	c, err := esdb.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("kurrentdb %s: %s", redact(url), redact(err.Error()))
	}
	s := &Store{
		opts: opts, cfg: cfg, orderName: orderStream(opts.Prefix),
		cur: &conn{c: c, born: time.Now()}, done: make(chan struct{}),
		wake: make(chan struct{}), cache: map[int64]*orderRecord{},
		versions: map[string]int64{}, cps: map[string]*cpState{},
	}
	genesis, err := s.ensureGenesis(ctx)
	if err == nil {
		s.st = newOrderState(genesis)
		s.syncMu.Lock()
		err = s.catchUp(ctx, nil)
		s.syncMu.Unlock()
	}
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("kurrentdb %s: open %q: %w", redact(url), opts.Prefix, err)
	}
	return s, nil
}

// ensureGenesis creates the order stream's genesis record unless it exists,
// and returns its $all position.
func (s *Store) ensureGenesis(ctx context.Context) (esdb.Position, error) {
	for attempt := 0; attempt < 3; attempt++ {
		var pos esdb.Position
		got := false
		found, err := s.readStream(ctx, s.orderName, esdb.Revision(0), esdb.Forwards, 1, func(ev *esdb.RecordedEvent) error {
			if err := checkGenesis(s.opts.Prefix, ev); err != nil {
				return fmt.Errorf("%w (%w)", err, ErrInconsistent)
			}
			pos, got = genesisStart(ev.Position), true
			return nil
		})
		if err != nil {
			return pos, translate(ctx, err)
		}
		if got {
			return pos, nil
		}
		if found {
			return pos, fmt.Errorf("the order stream %s has no genesis record: %w", s.orderName, ErrInconsistent)
		}
		// Two processes may race here; the loser's NoStream append is
		// refused, or accepted as a repeat of the same event id, and both
		// read back the one genesis record.
		_, err = s.appendEvents(ctx, s.orderName, esdb.NoStream{}, []esdb.EventData{encodeGenesis(s.opts.Prefix, time.Now())})
		if err != nil && !isWrongVersion(err) {
			return pos, fmt.Errorf("create the order stream: %w", translate(ctx, err))
		}
	}
	return esdb.Position{}, fmt.Errorf("the order stream %s: genesis record not readable after creation: %w", s.orderName, ErrUnavailable)
}

// genesisStart returns where the derivation starts reading $all: after the
// genesis record. KurrentDB reports the $all position of an event read from
// its stream only when the event committed itself, and sends the largest
// uint64 otherwise; then the derivation reads $all from its start instead,
// which is slower the first time but as correct, since no event of the
// namespace precedes the genesis record.
func genesisStart(p esdb.Position) esdb.Position {
	if p.Commit == math.MaxUint64 || p.Prepare == math.MaxUint64 {
		return esdb.Position{}
	}
	return p
}

// Close stops the store: later calls return ErrClosed, and the client is
// closed once no call uses it. It does not close Options.Keys. It is safe to
// call more than once and always returns nil.
func (s *Store) Close() error {
	s.connMu.Lock()
	if s.closed {
		s.connMu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	cn := s.cur
	cn.retired = true
	var closing *esdb.Client
	if cn.users == 0 && !cn.closed {
		cn.closed = true
		closing = cn.c
	}
	s.connMu.Unlock()
	if closing != nil {
		_ = closing.Close()
	}
	return nil
}

func (s *Store) isClosed() bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return s.closed
}

// refresh applies the order records other processes appended.
func (s *Store) refresh(ctx context.Context) error {
	if s.isClosed() {
		return ErrClosed
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	return s.catchUp(ctx, nil)
}

// reqPlan is what Commit does with one request.
type reqPlan struct {
	r        *ledger.AppendRequest
	name     string   // the KurrentDB stream
	alias    *reqPlan // an earlier request of the batch with the same ids
	retry    bool     // every id is in the log already: r.Events are the stored events
	appended bool     // the events are in KurrentDB (appended now, or found there)
}

// Commit implements ledger.Store. Each request is one KurrentDB append with
// an explicit expected revision (AnyVersion is resolved to the stream's
// current version first), so one request is all or nothing, but a batch is
// not one transaction: when Commit returns an error, some requests may be
// written. They get their positions at the next Commit of any process, and
// a retry with the same event ids returns them, as the port allows for an
// unknown outcome.
func (s *Store) Commit(ctx context.Context, reqs []*ledger.AppendRequest) error {
	if s.isClosed() {
		return ErrClosed
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	// Order whatever is in $all and not ordered yet (the leftovers of a
	// commit that failed half-way), so that the id index knows every event
	// a retry may repeat.
	if err := s.extend(ctx, nil, nil); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	plans, err := s.plan(ctx, reqs)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}

	// One goroutine per KurrentDB stream (requests on one stream go in
	// order), at most maxParallelAppends at a time.
	var groups [][]*reqPlan
	byName := map[string]int{}
	for _, p := range plans {
		if p.r.Err != nil || p.alias != nil || p.retry {
			continue
		}
		i, ok := byName[p.name]
		if !ok {
			i = len(groups)
			byName[p.name] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], p)
	}
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
		sem   = make(chan struct{}, maxParallelAppends)
	)
	for _, g := range groups {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			for _, p := range g {
				if err := s.appendRequest(ctx, p); err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("commit: %w", first)
	}

	// Give the appended events their positions.
	want := map[uuid.UUID]eventKey{}
	for _, p := range plans {
		if p.appended && p.r.Err == nil && p.alias == nil {
			for i := range p.r.Events {
				e := &p.r.Events[i]
				want[e.ID] = eventKey{p.name, uint64(e.Version - 1)}
			}
		}
	}
	if len(want) == 0 {
		return nil
	}
	seen := map[eventKey]*orderRecord{}
	if err := s.extend(ctx, want, seen); err != nil {
		return fmt.Errorf("commit: events are written, ordering them failed: %w", err)
	}
	for _, p := range plans {
		if !p.appended || p.r.Err != nil || p.alias != nil {
			continue
		}
		for i := range p.r.Events {
			e := &p.r.Events[i]
			r := seen[want[e.ID]]
			if r == nil || r.ID != e.ID {
				return fmt.Errorf("commit: event %s is not where it was appended: %w", e.ID, ErrInconsistent)
			}
			if r.Hashes[0] != e.LeafHash {
				// KurrentDB took the append as a repeat of events stored
				// with these ids: return what is stored.
				stored, err := s.readEvent(ctx, r)
				if err != nil {
					return fmt.Errorf("commit: %w", err)
				}
				*e = stored
				continue
			}
			e.Position, e.Seq = r.Position, r.Seq
		}
	}
	for _, p := range plans {
		if p.alias != nil {
			p.r.Err = p.alias.r.Err
			if p.r.Err == nil {
				p.r.Events = append([]domain.Event(nil), p.alias.r.Events...)
			}
		}
	}
	return nil
}

// maxParallelAppends bounds the appends of one Commit in flight at once.
const maxParallelAppends = 16

// plan checks the requests against each other and the id index: a request
// whose ids are all ordered already gets the stored events (or ErrConflict
// when they are on another stream), one that mixes stored and new ids gets
// ErrConflict, and one that repeats the ids of an earlier request of the
// batch on the same stream takes that request's outcome.
func (s *Store) plan(ctx context.Context, reqs []*ledger.AppendRequest) ([]*reqPlan, error) {
	plans := make([]*reqPlan, len(reqs))
	batch := map[uuid.UUID]*reqPlan{}
	for i, r := range reqs {
		r.Err = nil
		p := &reqPlan{r: r, name: eventStream(s.opts.Prefix, r.Tenant, r.Stream)}
		plans[i] = p
		if err := checkRequest(r); err != nil {
			r.Err = err
			continue
		}
		known := 0
		s.mu.RLock()
		for j := range r.Events {
			if _, ok := s.st.ids[r.Events[j].ID]; ok {
				known++
			}
		}
		s.mu.RUnlock()
		switch {
		case known == len(r.Events):
			stored, err := s.storedEvents(ctx, r)
			if err != nil {
				return nil, err
			}
			for _, e := range stored {
				if e.Tenant != r.Tenant || e.Stream != r.Stream {
					r.Err = fmt.Errorf("append to %s: event ids already used on another stream: %w", r.Stream, domain.ErrConflict)
					break
				}
			}
			if r.Err == nil {
				r.Events = stored // idempotent retry
				p.retry = true
			}
			continue
		case known > 0:
			r.Err = fmt.Errorf("append to %s: %d of %d event ids are stored already: %w", r.Stream, known, len(r.Events), domain.ErrConflict)
			continue
		}
		var earlier *reqPlan
		same := 0
		for j := range r.Events {
			if q, ok := batch[r.Events[j].ID]; ok {
				if earlier == nil || q == earlier {
					same++
				}
				earlier = q
			}
		}
		switch {
		case earlier == nil:
			for j := range r.Events {
				batch[r.Events[j].ID] = p
			}
		case same == len(r.Events) && len(earlier.r.Events) == len(r.Events) && earlier.name == p.name:
			p.alias = earlier
		default:
			r.Err = fmt.Errorf("append to %s: event ids used by another request of the batch: %w", r.Stream, domain.ErrConflict)
		}
	}
	return plans, nil
}

// checkRequest refuses requests the store cannot file.
func checkRequest(r *ledger.AppendRequest) error {
	if len(r.Events) == 0 {
		return domain.Errorf(domain.CodeInvalid, "append to %s: no events", r.Stream)
	}
	if r.ExpectedVersion < ledger.AnyVersion {
		return domain.Errorf(domain.CodeInvalid, "append to %s: expected version %d", r.Stream, r.ExpectedVersion)
	}
	seen := make(map[uuid.UUID]bool, len(r.Events))
	for i := range r.Events {
		e := &r.Events[i]
		if e.Tenant != r.Tenant || e.Stream != r.Stream {
			return domain.Errorf(domain.CodeInvalid, "append to %s: event %d is for %s/%s", r.Stream, i, e.Tenant, e.Stream)
		}
		if e.ID == uuid.Nil || seen[e.ID] {
			return domain.Errorf(domain.CodeInvalid, "append to %s: event %d has a missing or repeated id", r.Stream, i)
		}
		seen[e.ID] = true
	}
	return nil
}

// storedEvents returns the stored events with the ids of r's events.
func (s *Store) storedEvents(ctx context.Context, r *ledger.AppendRequest) ([]domain.Event, error) {
	out := make([]domain.Event, len(r.Events))
	for i := range r.Events {
		s.mu.RLock()
		ent := s.st.ids[r.Events[i].ID]
		s.mu.RUnlock()
		rec, err := s.recordAt(ctx, ent.pos)
		if err != nil {
			return nil, err
		}
		if out[i], err = s.readEvent(ctx, rec); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// maxAnyAttempts bounds the appends of an AnyVersion request that keep
// finding the stream changed.
const maxAnyAttempts = 8

// appendRequest appends one request. Failures of the request alone are left
// in p.r.Err; the error returned is a failure of the whole commit.
func (s *Store) appendRequest(ctx context.Context, p *reqPlan) error {
	r := p.r
	for attempt := 0; ; attempt++ {
		cur := r.ExpectedVersion
		if cur == ledger.AnyVersion {
			// The version goes into each event's leaf hash, so it must be
			// known before the append; an explicit expected revision also
			// makes KurrentDB's idempotency a guarantee rather than a best
			// effort.
			v, found, err := s.currentVersion(ctx, p, attempt > 0)
			if err != nil {
				return err
			}
			if r.Err != nil {
				return nil
			}
			if found {
				p.appended = true
				return nil
			}
			cur = v
		}
		data := make([]esdb.EventData, len(r.Events))
		size := 0
		for i := range r.Events {
			e := &r.Events[i]
			if v := cur + int64(i) + 1; e.Version != v || e.LeafHash == [32]byte{} {
				e.Version = v
				e.LeafHash = ledger.LeafHash(e)
			}
			d, err := toEventData(e)
			if err != nil {
				r.Err = domain.Errorf(domain.CodeInvalid, "append to %s: %v", r.Stream, err)
				return nil
			}
			data[i] = d
			size += appendSize(&d)
		}
		if size > s.opts.MaxAppendBytes {
			r.Err = domain.Errorf(domain.CodeInvalid, "append to %s: %d bytes is more than the %d bytes the KurrentDB store takes in one append", r.Stream, size, s.opts.MaxAppendBytes)
			return nil
		}
		exp, err := expectedRevision(cur)
		if err != nil {
			r.Err = domain.Errorf(domain.CodeInvalid, "append to %s: %v", r.Stream, err)
			return nil
		}
		_, err = s.appendEvents(ctx, p.name, exp, data)
		if isWrongVersion(err) {
			s.forgetVersion(p.name)
			if r.ExpectedVersion >= 0 {
				r.Err = fmt.Errorf("append to %s: stream is not at version %d: %w", r.Stream, r.ExpectedVersion, domain.ErrConcurrency)
				return nil
			}
			if attempt+1 >= maxAnyAttempts {
				r.Err = fmt.Errorf("append to %s: the stream changed under %d attempts: %w", r.Stream, attempt+1, domain.ErrConcurrency)
				return nil
			}
			// Another process writes the stream too: let it finish.
			if err := sleep(ctx, rand.N(time.Duration(attempt+1)*2*time.Millisecond)); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("append to %s: %w", r.Stream, translate(ctx, err))
		}
		s.setVersion(p.name, cur+int64(len(r.Events)))
		p.appended = true
		return nil
	}
}

// tailCheck is how many of a stream's last events an AnyVersion append
// compares with its ids when it reads the stream's version.
const tailCheck = 64

// currentVersion returns the version of p's stream for an AnyVersion
// append: the one this process last wrote, unless fresh, or else the one
// KurrentDB holds. Reading it, it also looks for the request's ids among the
// stream's last events: found means they are there in order (an append
// repeated before it was ordered), and the request's versions are set to
// theirs; some but not all of them there is ErrConflict in p.r.Err.
//
// A cached version needs no such check: if another process appended the ids
// meanwhile, the stream moved past the cached version and the append fails
// the revision check, which brings a fresh read.
func (s *Store) currentVersion(ctx context.Context, p *reqPlan, fresh bool) (v int64, found bool, err error) {
	if !fresh {
		s.versionsMu.Lock()
		v, ok := s.versions[p.name]
		s.versionsMu.Unlock()
		if ok {
			return v, false, nil
		}
	}
	var tail []*esdb.RecordedEvent
	exists, err := s.readStream(ctx, p.name, esdb.End{}, esdb.Backwards, tailCheck, func(ev *esdb.RecordedEvent) error {
		tail = append(tail, ev)
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("read the version of %s: %w", p.r.Stream, translate(ctx, err))
	}
	if !exists || len(tail) == 0 {
		return 0, false, nil
	}
	v = int64(tail[0].EventNumber) + 1
	at := make(map[uuid.UUID]uint64, len(tail))
	for _, ev := range tail {
		at[ev.EventID] = ev.EventNumber
	}
	evs := p.r.Events
	matched := 0
	for i := range evs {
		if _, ok := at[evs[i].ID]; ok {
			matched++
		}
	}
	switch {
	case matched == 0:
		return v, false, nil
	case matched == len(evs):
		first := at[evs[0].ID]
		inOrder := true
		for i := range evs {
			inOrder = inOrder && at[evs[i].ID] == first+uint64(i)
		}
		if inOrder {
			for i := range evs {
				evs[i].Version = int64(first) + int64(i) + 1
				evs[i].LeafHash = ledger.LeafHash(&evs[i])
			}
			return v, true, nil
		}
	}
	p.r.Err = fmt.Errorf("append to %s: %d of %d event ids are stored already: %w", p.r.Stream, matched, len(evs), domain.ErrConflict)
	return v, false, nil
}

// maxCachedVersions bounds the versions a process remembers.
const maxCachedVersions = 1 << 16

func (s *Store) setVersion(name string, v int64) {
	s.versionsMu.Lock()
	defer s.versionsMu.Unlock()
	if len(s.versions) >= maxCachedVersions {
		clear(s.versions)
	}
	s.versions[name] = v
}

func (s *Store) forgetVersion(name string) {
	s.versionsMu.Lock()
	defer s.versionsMu.Unlock()
	delete(s.versions, name)
}

// readEvent returns the event that r records, with its position and seq.
func (s *Store) readEvent(ctx context.Context, r *orderRecord) (domain.Event, error) {
	name := eventStream(s.opts.Prefix, r.Tenant, r.Stream)
	var e domain.Event
	got := false
	_, err := s.readStream(ctx, name, esdb.Revision(r.Revision), esdb.Forwards, 1, func(ev *esdb.RecordedEvent) error {
		if ev.EventNumber != r.Revision || ev.EventID != r.ID {
			return nil
		}
		var err error
		if e, _, err = fromRecorded(s.opts.Prefix, ev, true); err != nil {
			return err
		}
		got = true
		return nil
	})
	if err != nil {
		return e, fmt.Errorf("read position %d: %w", r.Position, translate(ctx, err))
	}
	if !got {
		return e, fmt.Errorf("position %d: event %s is not at revision %d of %s: %w", r.Position, r.ID, r.Revision, name, ErrInconsistent)
	}
	e.Position, e.Seq = r.Position, r.Seq
	return e, nil
}

// ReadStream implements ledger.Store. It returns the stream's events up to
// the first one that has no position yet (appended by a commit that has not
// ordered it yet, or that failed before it could), as PostgreSQL shows
// nothing uncommitted. The order stream is re-read only when an event is not
// in this process's index, so that the common read costs one round trip.
func (s *Store) ReadStream(ctx context.Context, tenant, stream string, after int64) ([]domain.Event, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if after < 0 {
		after = 0
	}
	name := eventStream(s.opts.Prefix, tenant, stream)
	var evs []domain.Event
	_, err := s.readStream(ctx, name, esdb.Revision(uint64(after)), esdb.Forwards, readAllCount, func(ev *esdb.RecordedEvent) error {
		e, _, err := fromRecorded(s.opts.Prefix, ev, true)
		if err != nil {
			return err
		}
		evs = append(evs, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, translate(ctx, err))
	}
	for refreshed := false; ; refreshed = true {
		n := s.placeAll(name, evs)
		if n == len(evs) || refreshed {
			return evs[:n], nil
		}
		if err := s.refresh(ctx); err != nil {
			return nil, fmt.Errorf("read %s: %w", stream, err)
		}
	}
}

// placeAll sets the position and seq of the events of the KurrentDB stream
// name from the index, up to the first it does not know, and returns how
// many it placed.
func (s *Store) placeAll(name string, evs []domain.Event) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := range evs {
		ent, ok := s.st.lookup(evs[i].ID, eventKey{name, uint64(evs[i].Version - 1)})
		if !ok {
			return i
		}
		evs[i].Position, evs[i].Seq = ent.pos, ent.seq
	}
	return len(evs)
}

// scanJoin calls fn for the order records of positions first to last that
// keep accepts (all when keep is nil), in order, each with its event read
// from $all. It reads the order stream and $all side by side, from the first
// kept record's $all position on.
func (s *Store) scanJoin(ctx context.Context, first, last int64, keep func(*orderRecord) bool, fn func(*orderRecord, *esdb.RecordedEvent) error) error {
	if first < 1 || last < first {
		return nil
	}
	var all *allReader
	defer func() {
		if all != nil {
			all.close()
		}
	}()
	_, err := s.readStream(ctx, s.orderName, esdb.Revision(uint64(first)), esdb.Forwards, uint64(last-first+1), func(oev *esdb.RecordedEvent) error {
		r, err := decodeOrderEvent(oev)
		if err != nil {
			return fmt.Errorf("%w (%w)", err, ErrInconsistent)
		}
		if uint64(r.Position) != oev.EventNumber {
			return fmt.Errorf("order stream revision %d records position %d: %w", oev.EventNumber, r.Position, ErrInconsistent)
		}
		if keep != nil && !keep(&r) {
			return nil
		}
		if all == nil {
			if all, err = s.openAll(ctx, r.All, readAllCount); err != nil {
				return err
			}
		}
		for {
			ev, err := all.next()
			if err != nil {
				return err
			}
			if ev != nil && posLess(ev.Position, r.All) {
				continue
			}
			if ev == nil || ev.Position != r.All || ev.EventID != r.ID || ev.EventNumber != r.Revision ||
				ev.StreamID != eventStream(s.opts.Prefix, r.Tenant, r.Stream) {
				return fmt.Errorf("position %d: event %s is not in $all where its order record says: %w", r.Position, r.ID, ErrInconsistent)
			}
			return fn(&r, ev)
		}
	})
	return err
}

// ReadAll implements ledger.Store.
func (s *Store) ReadAll(ctx context.Context, after int64, limit int) ([]domain.Event, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	if limit <= 0 {
		return nil, nil
	}
	if after < 0 {
		after = 0
	}
	last := after + int64(limit)
	if last < after {
		last = math.MaxInt64
	}
	var out []domain.Event
	err := s.scanJoin(ctx, after+1, last, nil, func(r *orderRecord, ev *esdb.RecordedEvent) error {
		e, _, err := fromRecorded(s.opts.Prefix, ev, true)
		if err != nil {
			return err
		}
		e.Position, e.Seq = r.Position, r.Seq
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read all after %d: %w", after, translate(ctx, err))
	}
	return out, nil
}

// EventByID implements ledger.Store.
func (s *Store) EventByID(ctx context.Context, id [16]byte) (domain.Event, error) {
	if s.isClosed() {
		return domain.Event{}, ErrClosed
	}
	s.mu.RLock()
	ent, ok := s.st.ids[uuid.UUID(id)]
	s.mu.RUnlock()
	if !ok {
		if err := s.refresh(ctx); err != nil {
			return domain.Event{}, err
		}
		s.mu.RLock()
		ent, ok = s.st.ids[uuid.UUID(id)]
		s.mu.RUnlock()
		if !ok {
			return domain.Event{}, domain.ErrNotFound
		}
	}
	r, err := s.recordAt(ctx, ent.pos)
	if err != nil {
		return domain.Event{}, err
	}
	return s.readEvent(ctx, r)
}

// Head implements ledger.Store.
func (s *Store) Head(ctx context.Context) (int64, error) {
	if err := s.refresh(ctx); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st.head, nil
}

// WaitForAppend implements ledger.Store. A commit of this process wakes it
// at once; those of other processes are seen at the next poll, when the
// caller re-reads.
func (s *Store) WaitForAppend(ctx context.Context, after int64) error {
	s.mu.RLock()
	head, wake := s.st.head, s.wake
	s.mu.RUnlock()
	if head > after {
		return nil
	}
	t := time.NewTimer(s.opts.PollInterval)
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
	return nil
}

// Tenants implements ledger.Store.
func (s *Store) Tenants(ctx context.Context) ([]string, error) {
	if err := s.refresh(ctx); err != nil {
		return nil, err
	}
	s.mu.RLock()
	out := make([]string, 0, len(s.st.tenants))
	for t, tl := range s.st.tenants {
		if tl.f.Size() > 0 {
			out = append(out, t)
		}
	}
	s.mu.RUnlock()
	sort.Strings(out)
	return out, nil
}

// TreeSize implements ledger.Store.
func (s *Store) TreeSize(ctx context.Context, tenant string) (int64, error) {
	if err := s.refresh(ctx); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if tl := s.st.tenants[tenant]; tl != nil {
		return tl.f.Size(), nil
	}
	return 0, nil
}

// ReadHashes implements ledger.Store. Stored hash index i is the hash at
// level L of the subtree that leaf ((k+1) << L) - 1 completes, where
// (L, k) = tlog.SplitStoredHashIndex(i); it is in that leaf's order record.
func (s *Store) ReadHashes(ctx context.Context, tenant string, indexes []int64) ([]tlog.Hash, error) {
	if err := s.refresh(ctx); err != nil {
		return nil, err
	}
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		if idx < 0 {
			return nil, fmt.Errorf("stored hash %d of %s is missing", idx, tenant)
		}
		level, k := tlog.SplitStoredHashIndex(idx)
		seq := (k+1)<<level - 1
		s.mu.RLock()
		var pos int64
		if tl := s.st.tenants[tenant]; tl != nil && seq >= 0 && seq < int64(len(tl.positions)) {
			pos = tl.positions[seq]
		}
		s.mu.RUnlock()
		if pos == 0 {
			return nil, fmt.Errorf("stored hash %d of %s is missing", idx, tenant)
		}
		r, err := s.recordAt(ctx, pos)
		if err != nil {
			return nil, err
		}
		if r.Tenant != tenant || r.Seq != seq || level >= len(r.Hashes) {
			return nil, fmt.Errorf("stored hash %d of %s: order record %d does not hold it: %w", idx, tenant, pos, ErrInconsistent)
		}
		out[i] = r.Hashes[level]
	}
	return out, nil
}

// ScanLog implements ledger.Store. It reads the order stream and $all
// between the first and the last of the tenant's positions asked for.
func (s *Store) ScanLog(ctx context.Context, tenant string, from, to int64, fn func(e *domain.Event, sealed []byte) error) error {
	if err := s.refresh(ctx); err != nil {
		return err
	}
	s.mu.RLock()
	var first, last int64
	if tl := s.st.tenants[tenant]; tl != nil {
		n := int64(len(tl.positions))
		from, to = max(from, 0), min(to, n)
		if from < to {
			first, last = tl.positions[from], tl.positions[to-1]
		}
	}
	s.mu.RUnlock()
	if first == 0 {
		return nil
	}
	err := s.scanJoin(ctx, first, last, func(r *orderRecord) bool {
		return r.Tenant == tenant && r.Seq >= from && r.Seq < to
	}, func(r *orderRecord, ev *esdb.RecordedEvent) error {
		e, sealed, err := fromRecorded(s.opts.Prefix, ev, false)
		if err != nil {
			return err
		}
		e.Position, e.Seq = r.Position, r.Seq
		return fn(&e, sealed)
	})
	if err != nil {
		return fmt.Errorf("scan %s: %w", tenant, translate(ctx, err))
	}
	return nil
}

// ScanHashes implements ledger.Store. It reads the whole order stream.
func (s *Store) ScanHashes(ctx context.Context, tenant string, fn func(index int64, h tlog.Hash) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	_, err := s.readStream(ctx, s.orderName, esdb.Revision(1), esdb.Forwards, readAllCount, func(ev *esdb.RecordedEvent) error {
		r, err := decodeOrderEvent(ev)
		if err != nil {
			return fmt.Errorf("%w (%w)", err, ErrInconsistent)
		}
		if r.Tenant != tenant {
			return nil
		}
		start := tlog.StoredHashIndex(0, r.Seq)
		for j, h := range r.Hashes {
			if err := fn(start+int64(j), h); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan hashes of %s: %w", tenant, translate(ctx, err))
	}
	return nil
}

// ScanPositions implements ledger.Store: the positions the order records
// hold, in the order stream's order.
func (s *Store) ScanPositions(ctx context.Context, fn func(position int64) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	_, err := s.readStream(ctx, s.orderName, esdb.Revision(1), esdb.Forwards, readAllCount, func(ev *esdb.RecordedEvent) error {
		r, err := decodeOrderEvent(ev)
		if err != nil {
			return fmt.Errorf("%w (%w)", err, ErrInconsistent)
		}
		return fn(r.Position)
	})
	if err != nil {
		return fmt.Errorf("scan positions: %w", translate(ctx, err))
	}
	return nil
}
