package eventstoredb

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

// cpState is what a process knows of one tenant's checkpoint stream.
type cpState struct {
	next   uint64            // the next revision to read
	latest ledger.Checkpoint // the largest checkpoint read
	has    bool
}

// cpCatchUp reads the checkpoints of tenant stored since the last call. The
// caller holds s.cpMu.
func (s *Store) cpCatchUp(ctx context.Context, tenant string) (*cpState, error) {
	st := s.cps[tenant]
	if st == nil {
		st = &cpState{}
		s.cps[tenant] = st
	}
	_, err := s.readStream(ctx, checkpointStream(s.opts.Prefix, tenant), esdb.Revision(st.next), esdb.Forwards, readAllCount, func(ev *esdb.RecordedEvent) error {
		c, err := decodeCheckpoint(tenant, ev)
		if err != nil {
			return fmt.Errorf("%w (%w)", err, ErrInconsistent)
		}
		st.next = ev.EventNumber + 1
		if !st.has || c.Size > st.latest.Size {
			st.latest, st.has = c, true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the checkpoints of %s: %w", tenant, translate(ctx, err))
	}
	return st, nil
}

// SaveCheckpoint implements ledger.Store. The checkpoint stream is appended
// with the expected revision of its last event, so that two processes saving
// at once cannot both store one size.
func (s *Store) SaveCheckpoint(ctx context.Context, c ledger.Checkpoint) error {
	if s.isClosed() {
		return ErrClosed
	}
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	c.CreatedAt = c.CreatedAt.UTC().Truncate(time.Microsecond)
	d, err := encodeCheckpoint(s.opts.Prefix, &c)
	if err != nil {
		return err
	}
	name := checkpointStream(s.opts.Prefix, c.Tenant)
	for attempt := 0; attempt < maxAnyAttempts; attempt++ {
		st, err := s.cpCatchUp(ctx, c.Tenant)
		if err != nil {
			return err
		}
		if st.has && st.latest.Size == c.Size {
			return sameRoot(st.latest, c)
		}
		if st.has && c.Size < st.latest.Size {
			// A late save of a smaller size (processes racing): look
			// through the stream.
			cps, err := s.Checkpoints(ctx, c.Tenant)
			if err != nil {
				return err
			}
			for _, old := range cps {
				if old.Size == c.Size {
					return sameRoot(old, c)
				}
			}
		}
		var exp esdb.ExpectedRevision = esdb.NoStream{}
		if st.next > 0 {
			exp = esdb.Revision(st.next - 1)
		}
		_, err = s.appendEvents(ctx, name, exp, []esdb.EventData{d})
		if isWrongVersion(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("save checkpoint %s/%d: %w", c.Tenant, c.Size, translate(ctx, err))
		}
		return nil
	}
	return fmt.Errorf("save checkpoint %s/%d: the checkpoint stream kept changing: %w", c.Tenant, c.Size, domain.ErrConcurrency)
}

// sameRoot makes saving a size already stored a no-op when the root is the
// same, and a fork (ledger.ErrCheckpointFork) when it is not.
func sameRoot(stored, c ledger.Checkpoint) error {
	if stored.Root != c.Root {
		return fmt.Errorf("save checkpoint %s at %d: stored root %x, new root %x: %w", c.Tenant, c.Size, stored.Root[:], c.Root[:], ledger.ErrCheckpointFork)
	}
	return nil
}

// LatestCheckpoint implements ledger.Store.
func (s *Store) LatestCheckpoint(ctx context.Context, tenant string) (ledger.Checkpoint, error) {
	if s.isClosed() {
		return ledger.Checkpoint{}, ErrClosed
	}
	s.cpMu.Lock()
	defer s.cpMu.Unlock()
	st, err := s.cpCatchUp(ctx, tenant)
	if err != nil {
		return ledger.Checkpoint{}, err
	}
	if !st.has {
		return ledger.Checkpoint{}, domain.ErrNotFound
	}
	return st.latest, nil
}

// Checkpoints implements ledger.Store. A size stored twice (which the
// expected-revision check prevents) is returned once.
func (s *Store) Checkpoints(ctx context.Context, tenant string) ([]ledger.Checkpoint, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	var out []ledger.Checkpoint
	sizes := map[int64]bool{}
	_, err := s.readStream(ctx, checkpointStream(s.opts.Prefix, tenant), esdb.Start{}, esdb.Forwards, readAllCount, func(ev *esdb.RecordedEvent) error {
		c, err := decodeCheckpoint(tenant, ev)
		if err != nil {
			return fmt.Errorf("%w (%w)", err, ErrInconsistent)
		}
		if !sizes[c.Size] {
			sizes[c.Size] = true
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the checkpoints of %s: %w", tenant, translate(ctx, err))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Size < out[j].Size })
	return out, nil
}
