package service

import (
	"context"
	"sync"
	"time"

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
}

type streamEntry struct {
	mu     sync.Mutex
	events []domain.Event
	used   time.Time
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
	e.used = time.Now()
	return e
}

// evict drops the least recently used tenth of the entries; c.mu is held.
func (c *streamCache) evict() {
	n := len(c.entries) / 10
	if n == 0 {
		n = 1
	}
	for ; n > 0; n-- {
		var oldest string
		var t time.Time
		for k, e := range c.entries {
			if oldest == "" || e.used.Before(t) {
				oldest, t = k, e.used
			}
		}
		delete(c.entries, oldest)
	}
}

// events returns the stream's sealed events, refreshed from the log. The
// returned slice must not be modified.
func (s *Service) events(ctx context.Context, tenant, stream string) ([]domain.Event, error) {
	e := s.cache.entry(tenant + "\x00" + stream)
	e.mu.Lock()
	defer e.mu.Unlock()
	var after int64
	if n := len(e.events); n > 0 {
		after = e.events[n-1].Version
	}
	more, err := s.log.ReadSealed(ctx, tenant, stream, after)
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
