package postgres

import (
	"context"
	"sync"
	"time"
)

// coalescer runs concurrent calls of one kind of statement as one
// statement over arrays, the way the ledger's writer commits concurrent
// appends: a caller that finds fewer than leaders statements under way
// leads, taking every queued call (up to max) into one statement; the
// others wait for a leader to take theirs. Under load a statement carries
// the calls that queued while the previous one ran; alone, a call runs at
// once. Nothing waits on a clock.
//
// A leader runs batches until its own call is done, then hands the lead to
// the first queued call, so that no caller serves others for long.
// Waiters wait for their batch even when their own context ends: the
// statement may already have done their part, and its result must reach
// them (a claimed key that its caller never hears of would stay running).
type coalescer[T, R any] struct {
	max, leaders int
	// run executes one statement for items and returns one result per
	// item, or an error for all of them.
	run func(ctx context.Context, items []T) ([]R, error)

	mu       sync.Mutex
	queue    []*coalesced[T, R]
	inflight int
}

type coalesced[T, R any] struct {
	item    T
	res     R
	err     error
	leading bool
	lead    chan struct{} // closed: lead
	done    chan struct{} // closed: res and err are set
}

// coalesceTimeout bounds one statement of a coalescer: it runs for several
// callers, so no single caller's context governs it.
const coalesceTimeout = 30 * time.Second

func (c *coalescer[T, R]) do(ctx context.Context, item T) (R, error) {
	me := &coalesced[T, R]{item: item, lead: make(chan struct{}), done: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, me)
	if c.inflight < c.leaders {
		c.inflight++
		me.leading = true
		c.mu.Unlock()
		c.serve(ctx, me)
	} else {
		c.mu.Unlock()
		select {
		case <-me.done:
			// Another leader took the call; a lead handed over meanwhile
			// is passed on.
			c.mu.Lock()
			leading := me.leading
			c.mu.Unlock()
			if leading {
				c.handOn()
			}
		case <-me.lead:
			c.serve(ctx, me)
		}
	}
	<-me.done
	return me.res, me.err
}

// serve runs batches from the front of the queue until me is done, then
// hands the lead on.
func (c *coalescer[T, R]) serve(ctx context.Context, me *coalesced[T, R]) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), coalesceTimeout)
	defer cancel()
	for {
		select {
		case <-me.done:
			c.handOn()
			return
		default:
		}
		c.mu.Lock()
		n := min(len(c.queue), c.max)
		if n == 0 {
			// me is in another leader's batch.
			c.mu.Unlock()
			<-me.done
			c.handOn()
			return
		}
		batch := make([]*coalesced[T, R], n)
		copy(batch, c.queue)
		c.queue = append(c.queue[:0], c.queue[n:]...)
		c.mu.Unlock()
		items := make([]T, n)
		for i, b := range batch {
			items[i] = b.item
		}
		res, err := c.run(ctx, items)
		if err == nil && len(res) != n {
			panic("coalescer: run returned a result count unlike its items")
		}
		for i, b := range batch {
			if err != nil {
				b.err = err
			} else {
				b.res = res[i]
			}
			close(b.done)
		}
	}
}

// handOn passes the lead to the first queued call not leading already, or
// gives the leader's place up.
func (c *coalescer[T, R]) handOn() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, q := range c.queue {
		if !q.leading {
			q.leading = true
			close(q.lead)
			return
		}
	}
	c.inflight--
}
