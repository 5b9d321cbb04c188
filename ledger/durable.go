package ledger

import (
	"context"
	"sync"
	"time"
)

// Durability tells the ledger which commits are durable beyond the
// database primary (on a synchronous standby, or in a WAL archive), so that
// a checkpoint is signed only over events that neither a failover nor a
// restore can lose (Options.Durability; adapters/postgres.Durability).
type Durability interface {
	// Mark returns tenant's tree size and a mark covering every commit
	// visible with it, read together from the primary.
	Mark(ctx context.Context, tenant string) (size int64, m DurableMark, err error)
	// Frontier returns the mark up to which commits are durable beyond the
	// primary now.
	Frontier(ctx context.Context) (DurableMark, error)
}

// DurableMark is a position in the primary's write-ahead history: Epoch
// names the history (a PostgreSQL timeline; a failover or a restore starts
// a new one) and Pos the place in it. A mark is durable when the frontier
// is in the same epoch and at or past it.
type DurableMark struct {
	Epoch string
	Pos   uint64
}

// durableWait bounds how long a checkpoint waits for the current size to
// become durable before it signs the largest size already durable; it
// stops sooner when the frontier stood still for durableStall (no standby
// streaming, an archive that waits for a full segment), so that a stalled
// replica does not cost every tenant's checkpoint two seconds.
const (
	durableWait  = 2 * time.Second
	durableStall = 300 * time.Millisecond
)

// maxPendingMarks bounds the sizes remembered per tenant while none is
// durable yet (an archive that lags); the oldest are forgotten.
const maxPendingMarks = 256

type pendingMark struct {
	size int64
	mark DurableMark
}

// durableMarks are the sizes each tenant had, with their marks, not yet
// known durable.
type durableMarks struct {
	mu      sync.Mutex
	pending map[string][]pendingMark
}

// durableSize returns the largest size of tenant's log that is durable
// beyond the primary, among the current one and those seen before; 0 when
// none is. It waits up to durableWait for the current size, less when the
// frontier does not move.
func (l *Ledger) durableSize(ctx context.Context, tenant string) (int64, error) {
	d := l.opts.Durability
	size, m, err := d.Mark(ctx, tenant)
	if err != nil {
		return 0, err
	}
	l.marks.mu.Lock()
	if l.marks.pending == nil {
		l.marks.pending = map[string][]pendingMark{}
	}
	p := append(l.marks.pending[tenant], pendingMark{size, m})
	if len(p) > maxPendingMarks {
		p = p[len(p)-maxPendingMarks:]
	}
	l.marks.pending[tenant] = p
	l.marks.mu.Unlock()

	start := time.Now()
	var last DurableMark
	moved := start
	for {
		f, err := d.Frontier(ctx)
		if err != nil {
			return 0, err
		}
		now := time.Now()
		if f != last {
			last, moved = f, now
		}
		best := l.settle(tenant, f)
		if best == size || now.Sub(start) >= durableWait || now.Sub(moved) >= durableStall {
			return best, nil
		}
		select {
		case <-ctx.Done():
			return best, nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// settle drops tenant's pending marks that the frontier f covers, or that
// belong to another epoch (a history that ended), and returns the largest
// size covered, 0 if none.
func (l *Ledger) settle(tenant string, f DurableMark) int64 {
	l.marks.mu.Lock()
	defer l.marks.mu.Unlock()
	var best int64
	keep := l.marks.pending[tenant][:0]
	for _, p := range l.marks.pending[tenant] {
		switch {
		case p.mark.Epoch != f.Epoch:
			// Written on an earlier primary, or one that was restored:
			// what its history held is no longer what this one holds.
		case p.mark.Pos <= f.Pos:
			best = max(best, p.size)
		default:
			keep = append(keep, p)
		}
	}
	l.marks.pending[tenant] = keep
	return best
}

// checkpointSize is the size Checkpoint signs: tenant's tree size, or with
// Options.Durability the largest size durable beyond the primary.
func (l *Ledger) checkpointSize(ctx context.Context, tenant string) (int64, error) {
	if l.opts.Durability == nil {
		return l.store.TreeSize(ctx, tenant)
	}
	return l.durableSize(ctx, tenant)
}
