package service

import (
	"context"
	"slices"
	"sort"
	"sync"

	"github.com/vigilhq/vigil/domain"
)

// streamCache keeps the sealed events of recently used streams, so that
// loading an aggregate reads only the events appended since (one indexed
// query, usually empty) instead of the whole stream. Events are kept
// sealed: no personal data stays in memory, and erasure stays immediate.
// The aggregates decide on public fields only.
type streamCache struct {
	mu      sync.Mutex
	entries map[string]*streamEntry
	max     int
	tick    uint64 // counts uses: the order of recency
}

type streamEntry struct {
	mu     sync.Mutex
	events []domain.Event
	used   uint64 // the cache's tick at the last use
	// tech is a technician's state as of its last stored event, kept
	// instead of the events: a technician's stream grows with every login
	// for as long as the account lives, so replaying it, and holding it,
	// would grow without end. It holds no personal data (ids, flags,
	// counters, times).
	tech *domain.Technician
	// group is a group's state as of its last stored event, kept so that a
	// command does not decode and replay the group's events again (the
	// profile of docs/performance.md: 4 % of serve's CPU under load).
	// It holds permissions, policy and the allowlist: no personal data.
	group *domain.Group
	// session is a session's state as of one of its stored events, kept
	// beside the events so that a command loads only the newer ones
	// instead of decoding and replaying the whole stream (a long chat
	// made every command slower). Ids, flags and times: no personal data.
	session *domain.Session
}

func newStreamCache(max int) *streamCache {
	return &streamCache{entries: map[string]*streamEntry{}, max: max}
}

func (c *streamCache) entry(key string) *streamEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		if len(c.entries) >= c.max {
			c.evict()
		}
		e = &streamEntry{}
		c.entries[key] = e
	}
	c.tick++
	e.used = c.tick
	return e
}

// evict drops the least recently used tenth of the entries; c.mu is held.
func (c *streamCache) evict() {
	evictLeastUsed(c.entries, func(e *streamEntry) uint64 { return e.used })
}

// evictLeastUsed drops the least recently used tenth of m (at least one
// entry), used giving each entry's last use. One sort of the entries,
// rather than a scan per dropped entry, keeps the pause short while
// callers wait on the cache's lock.
func evictLeastUsed[V any](m map[string]V, used func(V) uint64) {
	type aged struct {
		key  string
		used uint64
	}
	all := make([]aged, 0, len(m))
	for k, e := range m {
		all = append(all, aged{k, used(e)})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used < all[j].used })
	for _, a := range all[:max(1, len(all)/10)] {
		delete(m, a.key)
	}
}

// manyReader reads the new events of several streams in one query
// (ledger.Ledger does).
type manyReader interface {
	ReadSealedMany(ctx context.Context, tenant string, streams []string, after []int64) (map[string][]domain.Event, error)
}

// tail is what a request's prefetch read of one stream returned: every
// event with version above after, as of the read.
type tail struct {
	after  int64
	events []domain.Event
}

type tailsKey struct{}

// prefetch reads, in one query, the events stored since the cached state
// of the session stream and, for a technician, of the technician's stream
// and his group's (as his cached snapshot names it), and returns ctx
// carrying them for this request only: events, technician and group then
// use them instead of one catch-up read each. Coherence is unchanged: the
// read is made by this request, before its decisions, as the separate
// reads were (a change committed on another node before the request is
// seen). Without a manyReader log it returns ctx as is.
func (s *Service) prefetch(ctx context.Context, tenant, sessionStream, technicianID string) context.Context {
	r, ok := s.log.(manyReader)
	if !ok {
		return ctx
	}
	keys, streams, after := []string{}, []string{}, []int64{}
	add := func(key, stream string, version int64) {
		keys, streams, after = append(keys, key), append(streams, stream), append(after, version)
	}
	sk := tenant + "\x00" + sessionStream
	e := s.cache.entry(sk)
	e.mu.Lock()
	var v int64
	if n := len(e.events); n > 0 {
		v = e.events[n-1].Version
	}
	e.mu.Unlock()
	add(sk, sessionStream, v)
	if technicianID != "" {
		t := domain.NewTechnician(tenant, technicianID)
		tk := tenant + "\x00" + t.Stream()
		e := s.cache.entry(tk)
		e.mu.Lock()
		if e.tech != nil {
			t = e.tech
		}
		groupID := t.GroupID()
		add(tk, t.Stream(), t.Version())
		e.mu.Unlock()
		if groupID != "" {
			g := domain.NewGroup(tenant, groupID)
			gk := tenant + "\x00" + g.Stream() + "\x00snapshot"
			e := s.cache.entry(gk)
			e.mu.Lock()
			if e.group != nil {
				g = e.group
			}
			add(gk, g.Stream(), g.Version())
			e.mu.Unlock()
		}
	}
	got, err := r.ReadSealedMany(ctx, tenant, streams, after)
	if err != nil {
		return ctx // each load reads on its own, and reports the error
	}
	tails := make(map[string]tail, len(keys))
	for i, k := range keys {
		tails[k] = tail{after: after[i], events: got[streams[i]]}
	}
	return context.WithValue(ctx, tailsKey{}, tails)
}

// since returns the events of stream with version above after: from the
// request's prefetch when it covers them, else with one read.
func (s *Service) since(ctx context.Context, key, tenant, stream string, after int64) ([]domain.Event, error) {
	if tails, ok := ctx.Value(tailsKey{}).(map[string]tail); ok {
		if t, ok := tails[key]; ok && t.after <= after {
			i, _ := slices.BinarySearchFunc(t.events, after+1, func(e domain.Event, v int64) int {
				return int(e.Version - v)
			})
			return t.events[i:len(t.events):len(t.events)], nil
		}
	}
	return s.log.ReadSealed(ctx, tenant, stream, after)
}

// events returns the stream's sealed events, refreshed from the log. The
// returned slice must not be modified.
func (s *Service) events(ctx context.Context, tenant, stream string) ([]domain.Event, error) {
	key := tenant + "\x00" + stream
	e := s.cache.entry(key)
	e.mu.Lock()
	defer e.mu.Unlock()
	var after int64
	if n := len(e.events); n > 0 {
		after = e.events[n-1].Version
	}
	more, err := s.since(ctx, key, tenant, stream, after)
	if err != nil {
		return nil, err
	}
	if len(more) > 0 && more[0].Version != after+1 {
		// Not a continuation (should not happen on an append-only log):
		// start over.
		e.events = nil
		if more, err = s.log.ReadSealed(ctx, tenant, stream, 0); err != nil {
			return nil, err
		}
	}
	e.events = append(e.events, more...)
	return e.events[:len(e.events):len(e.events)], nil
}

// sessionState returns the state of session guid whose stored events are
// evs (its whole stream, from version 1, as events returns it): the cached
// snapshot with the newer events loaded onto it, the snapshot then moved
// up. The caller gets its own copy to record changes on.
func (s *Service) sessionState(tenant, guid string, evs []domain.Event) (*domain.Session, error) {
	sess := domain.NewSession(tenant, guid)
	e := s.cache.entry(tenant + "\x00" + sess.Stream())
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.session != nil && e.session.Version() <= int64(len(evs)) {
		sess = e.session.Clone()
	}
	if err := sess.Load(evs[sess.Version():]); err != nil {
		return nil, err
	}
	if e.session == nil || sess.Version() > e.session.Version() {
		e.session = sess.Clone()
	}
	return sess, nil
}

// technician returns technician id's state, from its cached snapshot and the
// events stored since (one indexed query, usually empty). The caller gets
// its own copy to record changes on.
func (s *Service) technician(ctx context.Context, tenant, id string) (*domain.Technician, error) {
	t := domain.NewTechnician(tenant, id)
	key := tenant + "\x00" + t.Stream()
	e := s.cache.entry(key)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.tech != nil {
		*t = *e.tech
	}
	more, err := s.since(ctx, key, tenant, t.Stream(), t.Version())
	if err != nil {
		return nil, err
	}
	if len(more) > 0 && more[0].Version != t.Version()+1 {
		// Not a continuation (should not happen on an append-only log):
		// start over.
		t = domain.NewTechnician(tenant, id)
		if more, err = s.log.ReadSealed(ctx, tenant, t.Stream(), 0); err != nil {
			return nil, err
		}
	}
	if err := t.Load(more); err != nil {
		return nil, err
	}
	snap := *t
	e.tech = &snap
	return t, nil
}

// group returns group id's state, from its cached snapshot and the events
// stored since (one indexed query, usually empty: the read that keeps the
// snapshot coherent with changes made on other nodes). The caller gets its
// own copy to record changes on.
func (s *Service) group(ctx context.Context, tenant, id string) (*domain.Group, error) {
	g := domain.NewGroup(tenant, id)
	key := tenant + "\x00" + g.Stream() + "\x00snapshot"
	e := s.cache.entry(key)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.group != nil {
		*g = *e.group
	}
	more, err := s.since(ctx, key, tenant, g.Stream(), g.Version())
	if err != nil {
		return nil, err
	}
	if len(more) > 0 && more[0].Version != g.Version()+1 {
		// Not a continuation (should not happen on an append-only log):
		// start over.
		g = domain.NewGroup(tenant, id)
		if more, err = s.log.ReadSealed(ctx, tenant, g.Stream(), 0); err != nil {
			return nil, err
		}
	}
	if err := g.Load(more); err != nil {
		return nil, err
	}
	snap := *g
	e.group = &snap
	return g, nil
}
