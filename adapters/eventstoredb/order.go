package eventstoredb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

// The order of the log. KurrentDB gives every event a place in $all, but not
// a gapless number, and has no per-tenant sequence or Merkle tree. The store
// derives them: walking $all from the genesis record, the k-th event of the
// namespace (a stream named <prefix>-…) gets position k, the next seq of its
// tenant, and the tlog stored hashes of its leaf. Each of these facts is an
// order record, appended to the order stream at revision k with the expected
// revision k-1. The derivation is a pure function of $all, which never
// changes below a position once read, so every process derives the same
// records: processes that extend the order stream at once write the same
// content (with the same event ids), one wins, and the other re-reads and
// goes on from there.

// orderState is what a process knows of the order stream. It changes only
// through apply, under Store.syncMu and Store.mu; readers hold Store.mu.
type orderState struct {
	head    int64         // the last position recorded
	last    esdb.Position // $all position of the event at head, or of the genesis record
	ids     map[uuid.UUID]idEntry
	dups    map[eventKey]idEntry // an id seen before, again (see derive); normally empty
	tenants map[string]*tenantLog
}

// idEntry is where the event with an id is in the log.
type idEntry struct{ pos, seq int64 }

// tenantLog is one tenant's Merkle log as far as the order stream goes.
type tenantLog struct {
	f         ledger.Frontier
	positions []int64 // seq -> global position
}

func newOrderState(genesis esdb.Position) *orderState {
	return &orderState{last: genesis, ids: map[uuid.UUID]idEntry{}, dups: map[eventKey]idEntry{}, tenants: map[string]*tenantLog{}}
}

// apply adds the next order record, after checking that it is the next
// position, the next seq of its tenant, and that its stored hashes are the
// ones its leaf gives the tenant's tree.
func (st *orderState) apply(prefix string, r *orderRecord) error {
	if r.Position != st.head+1 {
		return fmt.Errorf("order record of position %d follows position %d: %w", r.Position, st.head, ErrInconsistent)
	}
	if !posLess(st.last, r.All) {
		return fmt.Errorf("order record %d: $all position %v is not after %v: %w", r.Position, r.All, st.last, ErrInconsistent)
	}
	tl := st.tenants[r.Tenant]
	if tl == nil {
		tl = &tenantLog{}
	}
	if r.Seq != tl.f.Size() {
		return fmt.Errorf("order record %d: seq %d of tenant %s, want %d: %w", r.Position, r.Seq, r.Tenant, tl.f.Size(), ErrInconsistent)
	}
	f := tl.f
	hs := f.Append(make([]tlog.Hash, 0, len(r.Hashes)), r.Hashes[0])
	if len(hs) != len(r.Hashes) {
		return fmt.Errorf("order record %d: %d stored hashes, want %d: %w", r.Position, len(r.Hashes), len(hs), ErrInconsistent)
	}
	for i := range hs {
		if hs[i] != r.Hashes[i] {
			return fmt.Errorf("order record %d: stored hash %d does not match tenant %s's tree: %w", r.Position, i, r.Tenant, ErrInconsistent)
		}
	}
	tl.f = f
	tl.positions = append(tl.positions, r.Position)
	st.tenants[r.Tenant] = tl
	if _, dup := st.ids[r.ID]; dup {
		st.dups[r.key(prefix)] = idEntry{r.Position, r.Seq}
	} else {
		st.ids[r.ID] = idEntry{r.Position, r.Seq}
	}
	st.head = r.Position
	st.last = r.All
	return nil
}

// derive returns the order records of the namespace's events among evs (a
// page of $all in order), continuing st without changing it. Events at or
// before from, and events of other streams, are skipped. An event of the
// namespace that is not a Vigil event is an error: the derivation cannot
// give it a place, and skipping it would make positions depend on who
// looked.
//
// An id that is already ordered gets a position again: it can only happen
// when two processes append the same new event id with AnyVersion at the same
// moment (see docs/kurrentdb.md); both events are in KurrentDB, so both are
// in the log, which stays verifiable.
func (st *orderState) derive(prefix string, from esdb.Position, evs []*esdb.RecordedEvent) ([]orderRecord, error) {
	var recs []orderRecord
	frontiers := map[string]*ledger.Frontier{}
	head := st.head
	for _, ev := range evs {
		if !posLess(from, ev.Position) {
			continue
		}
		from = ev.Position
		_, _, ok, _ := parseEventStream(prefix, ev.StreamID)
		if !ok {
			continue
		}
		m, err := checkRecorded(prefix, ev)
		if err != nil {
			return nil, fmt.Errorf("ordering $all at %d/%d: %w (%w)", ev.Position.Commit, ev.Position.Prepare, err, ErrInconsistent)
		}
		f := frontiers[m.Tenant]
		if f == nil {
			f = new(ledger.Frontier)
			if tl := st.tenants[m.Tenant]; tl != nil {
				*f = tl.f
			}
			frontiers[m.Tenant] = f
		}
		seq := f.Size()
		head++
		recs = append(recs, orderRecord{
			Position: head, All: ev.Position, Tenant: m.Tenant, Stream: m.Stream,
			Revision: ev.EventNumber, ID: ev.EventID, Seq: seq,
			Hashes: f.Append(nil, tlog.Hash(m.Leaf)),
		})
	}
	return recs, nil
}

// lookup returns where the event with id, held at key, is in the log.
func (st *orderState) lookup(id uuid.UUID, key eventKey) (idEntry, bool) {
	if e, ok := st.dups[key]; ok {
		return e, true
	}
	e, ok := st.ids[id]
	return e, ok
}

// Page sizes of the reads that keep the order current.
const (
	orderPage = 4096 // order records per catch-up read
	allPage   = 1024 // $all events per derivation step
)

// catchUp applies the order records that other processes (or this one,
// before a failure) appended since s.st.head. seen, when not nil, collects
// the records applied. The caller holds s.syncMu.
func (s *Store) catchUp(ctx context.Context, seen map[eventKey]*orderRecord) error {
	for {
		s.mu.RLock()
		from := s.st.head + 1
		s.mu.RUnlock()
		var recs []orderRecord
		_, err := s.readStream(ctx, s.orderName, esdb.Revision(uint64(from)), esdb.Forwards, orderPage, func(ev *esdb.RecordedEvent) error {
			r, err := decodeOrderEvent(ev)
			if err != nil {
				return fmt.Errorf("%w (%w)", err, ErrInconsistent)
			}
			if uint64(r.Position) != ev.EventNumber {
				return fmt.Errorf("order stream revision %d records position %d: %w", ev.EventNumber, r.Position, ErrInconsistent)
			}
			recs = append(recs, r)
			return nil
		})
		if err != nil {
			return fmt.Errorf("read the order stream: %w", translate(ctx, err))
		}
		if err := s.applyAll(recs, seen); err != nil {
			return err
		}
		if len(recs) < orderPage {
			return nil
		}
	}
}

// applyAll applies recs to s.st and wakes WaitForAppend. The caller holds
// s.syncMu.
func (s *Store) applyAll(recs []orderRecord, seen map[eventKey]*orderRecord) error {
	if len(recs) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range recs {
		r := &recs[i]
		if err := s.st.apply(s.opts.Prefix, r); err != nil {
			return err
		}
		if seen != nil {
			seen[r.key(s.opts.Prefix)] = r
		}
	}
	close(s.wake)
	s.wake = make(chan struct{})
	return nil
}

// Bounds of one extension.
const (
	// maxOrderPages bounds an extension that only tidies up (want == nil),
	// so that a Commit under a heavy load of other writers does not chase
	// the end of $all for ever. What is left is ordered by later commits.
	maxOrderPages = 16
	// maxVisibilityWaits bounds how often an extension that waits for
	// acknowledged appends finds them not yet readable in $all.
	maxVisibilityWaits = 50
)

// extend orders the events of the namespace that $all holds and the order
// stream does not. With want nil it stops at the end of $all (or after
// maxOrderPages pages); otherwise once every event in want (id → where it was
// appended) is ordered. seen, when not nil, collects the records applied.
func (s *Store) extend(ctx context.Context, want map[uuid.UUID]eventKey, seen map[eventKey]*orderRecord) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	waits, pages := 0, 0
	for {
		if err := s.catchUp(ctx, seen); err != nil {
			return err
		}
		if want != nil {
			done, err := s.ordered(ctx, want, seen)
			if err != nil || done {
				return err
			}
		} else if pages >= maxOrderPages {
			return nil
		}
		pages++
		// s.st changes only under s.syncMu, which this goroutine holds.
		from := s.st.last
		if posLess(from, s.scanned) {
			from = s.scanned
		}
		evs, err := s.readAllPage(ctx, from)
		if err != nil {
			return err
		}
		recs, err := s.st.derive(s.opts.Prefix, from, evs)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			if n := len(evs); n > 0 && posLess(s.scanned, evs[n-1].Position) {
				s.scanned = evs[n-1].Position
			}
			if len(evs) < allPage {
				if want == nil {
					return nil
				}
				// Acknowledged appends that $all does not show yet (a
				// follower behind the leader, or a slow index).
				if waits++; waits > maxVisibilityWaits {
					return fmt.Errorf("appended events are not visible in $all after %d reads: %w", waits-1, ErrUnavailable)
				}
				if err := sleep(ctx, 20*time.Millisecond); err != nil {
					return err
				}
			}
			continue
		}
		won, err := s.appendOrder(ctx, recs)
		if err != nil {
			return err
		}
		if !won {
			continue // another process extended first; catch up with it
		}
		if err := s.applyAll(recs, seen); err != nil {
			return err
		}
		if n := len(evs); posLess(s.scanned, evs[n-1].Position) {
			s.scanned = evs[n-1].Position
		}
	}
}

// ordered reports whether every event of want is in the log.
func (s *Store) ordered(ctx context.Context, want map[uuid.UUID]eventKey, seen map[eventKey]*orderRecord) (bool, error) {
	for id, key := range want {
		if _, ok := seen[key]; ok {
			continue
		}
		s.mu.RLock()
		e, ok := s.st.lookup(id, key)
		s.mu.RUnlock()
		if !ok {
			return false, nil
		}
		// Ordered before this extension (by another process that raced
		// this one with the same id), or an earlier copy of the id.
		r, err := s.recordAt(ctx, e.pos)
		if err != nil {
			return false, err
		}
		if r.key(s.opts.Prefix) != key {
			return false, nil
		}
		seen[key] = r
	}
	return true, nil
}

// readAllPage reads up to allPage events of $all from from (inclusive).
func (s *Store) readAllPage(ctx context.Context, from esdb.Position) ([]*esdb.RecordedEvent, error) {
	a, err := s.openAll(ctx, from, allPage)
	if err != nil {
		return nil, fmt.Errorf("read $all: %w", translate(ctx, err))
	}
	defer a.close()
	evs := make([]*esdb.RecordedEvent, 0, 64)
	for len(evs) < allPage {
		ev, err := a.next()
		if err != nil {
			return nil, fmt.Errorf("read $all: %w", translate(ctx, err))
		}
		if ev == nil {
			break
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// appendOrder appends recs to the order stream, in appends of at most
// MaxAppendBytes, each with the expected revision of the record before it. It
// returns false when another process got there first.
func (s *Store) appendOrder(ctx context.Context, recs []orderRecord) (bool, error) {
	for len(recs) > 0 {
		var chunk []esdb.EventData
		size := 0
		for len(chunk) < len(recs) {
			d, err := encodeOrderRecord(s.opts.Prefix, &recs[len(chunk)])
			if err != nil {
				return false, err
			}
			n := appendSize(&d)
			if len(chunk) > 0 && size+n > s.opts.MaxAppendBytes {
				break
			}
			size += n
			chunk = append(chunk, d)
		}
		prev, err := orderRevision(recs[0].Position)
		if err != nil {
			return false, err
		}
		_, err = s.appendEvents(ctx, s.orderName, esdb.Revision(prev-1), chunk)
		if isWrongVersion(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("append to the order stream: %w", translate(ctx, err))
		}
		recs = recs[len(chunk):]
	}
	return true, nil
}

// recordCacheSize bounds the order records kept for ReadHashes and lookups.
const recordCacheSize = 4096

// recordAt returns the order record of position pos.
func (s *Store) recordAt(ctx context.Context, pos int64) (*orderRecord, error) {
	s.cacheMu.Lock()
	r, ok := s.cache[pos]
	s.cacheMu.Unlock()
	if ok {
		return r, nil
	}
	rev, err := orderRevision(pos)
	if err != nil {
		return nil, err
	}
	var got *orderRecord
	_, err = s.readStream(ctx, s.orderName, esdb.Revision(rev), esdb.Forwards, 1, func(ev *esdb.RecordedEvent) error {
		r, err := decodeOrderEvent(ev)
		if err != nil {
			return fmt.Errorf("%w (%w)", err, ErrInconsistent)
		}
		if ev.EventNumber != rev || r.Position != pos {
			return fmt.Errorf("order stream revision %d records position %d: %w", ev.EventNumber, r.Position, ErrInconsistent)
		}
		got = &r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read order record %d: %w", pos, translate(ctx, err))
	}
	if got == nil {
		return nil, fmt.Errorf("order record %d: %w", pos, errors.Join(ErrInconsistent, errNoRecord))
	}
	s.cacheMu.Lock()
	if _, ok := s.cache[pos]; !ok {
		if len(s.cacheRing) == recordCacheSize {
			delete(s.cache, s.cacheRing[s.cacheNext])
			s.cacheRing[s.cacheNext] = pos
			s.cacheNext = (s.cacheNext + 1) % recordCacheSize
		} else {
			s.cacheRing = append(s.cacheRing, pos)
		}
		s.cache[pos] = got
	}
	s.cacheMu.Unlock()
	return got, nil
}

var errNoRecord = errors.New("no such record")

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
