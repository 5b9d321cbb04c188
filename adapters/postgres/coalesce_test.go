package postgres

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCoalescer: every call gets the result of its own item, calls that
// queue while a statement runs share the next one, the lead is handed on
// (no call is left waiting), and an error reaches every call of its batch.
func TestCoalescer(t *testing.T) {
	for _, leaders := range []int{1, 3} {
		var batches, biggest atomic.Int64
		var running, most atomic.Int64
		c := &coalescer[int, int]{max: 8, leaders: leaders, run: func(_ context.Context, items []int) ([]int, error) {
			r := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); r > m && !most.CompareAndSwap(m, r); m = most.Load() {
			}
			batches.Add(1)
			for b := biggest.Load(); int64(len(items)) > b && !biggest.CompareAndSwap(b, int64(len(items))); b = biggest.Load() {
			}
			time.Sleep(200 * time.Microsecond)
			if items[0] < 0 {
				return nil, errors.New("refused")
			}
			out := make([]int, len(items))
			for i, v := range items {
				out[i] = v * 2
			}
			return out, nil
		}}
		const n = 2000
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := c.do(context.Background(), i)
				if err != nil || got != 2*i {
					errs <- errors.New("wrong result")
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("leaders %d: %v", leaders, err)
		}
		if most.Load() > int64(leaders) {
			t.Errorf("leaders %d: %d statements ran at once", leaders, most.Load())
		}
		if biggest.Load() < 2 || batches.Load() >= n {
			t.Errorf("leaders %d: %d statements for %d calls, the biggest of %d: nothing was coalesced", leaders, batches.Load(), n, biggest.Load())
		}
		if c.inflight != 0 || len(c.queue) != 0 {
			t.Errorf("leaders %d: after the calls, %d leading and %d queued", leaders, c.inflight, len(c.queue))
		}
		if _, err := c.do(context.Background(), -1); err == nil {
			t.Errorf("leaders %d: a refused statement answered no error", leaders)
		}
	}
}
