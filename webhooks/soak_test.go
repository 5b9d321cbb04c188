package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/projections"
	"github.com/vigilhq/vigil/webhooks"
)

// TestSoak: 10,000 events to 3 receivers, one answering 500 to 30% of
// requests; every event reaches every receiver, duplicates only under the
// same webhook-id.
func TestSoak(t *testing.T) {
	n := 10000
	switch {
	case testing.Short():
		n = 1000
	case raceEnabled:
		// make ci runs the 10,000-event soak again without -race.
		n = 2000
	}
	e := newEnv(t)
	var rcs []*receiver
	for i := range 3 {
		var fail func(int, received) int
		if i == 2 {
			// 30% of requests fail, but never one delivery's fifth time:
			// the schedule gives up after ten attempts, and ten failures in
			// a row (0.3^10, about one delivery in 17 runs of 10,000) made
			// a delivery dead, and the soak wait forever for it.
			var mu sync.Mutex
			failed := map[string]int{}
			fail = func(_ int, r received) int {
				mu.Lock()
				defer mu.Unlock()
				if failed[r.id] < 4 && rand.Float64() < 0.3 {
					failed[r.id]++
					return 500
				}
				return 200
			}
		}
		rcs = append(rcs, newReceiver(t, fail))
		e.create(rcs[i].srv.URL, webhooks.NewSubscription{EventTypes: []string{"session.created"}})
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				g := fmt.Sprintf("soak%05d", i)
				e.append(domain.SessionStream(g), domain.SessionCreated{GUID: g, PIN: "1", Queue: "q", GroupID: "g"})
			}
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = e.runner.Run(ctx) }()
	opts := fast
	opts.Jitter = -1
	opts.Workers = 96
	opts.PerEndpoint = 32
	e.deliverer(opts)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var done int
		_ = e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'`).Scan(&done)
		if done == 3*n {
			break
		}
		if time.Now().After(deadline) {
			// Say whether the deliveries were stuck or slow: by state, the
			// attempts made and how far the next attempt is.
			var states string
			_ = e.db.Pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(format('%s: %s rows, attempts %s..%s, next attempt in %s..%s',
				state, n, a0, a1, round(extract(epoch FROM n0 - now())::numeric, 1), round(extract(epoch FROM n1 - now())::numeric, 1)), '; '), 'no rows')
				FROM (SELECT state, count(*) AS n, min(attempts) AS a0, max(attempts) AS a1, min(next_attempt_at) AS n0, max(next_attempt_at) AS n1
				      FROM webhook_deliveries GROUP BY state) s`).Scan(&states)
			var fanned int64
			_ = e.db.Pool.QueryRow(context.Background(), `SELECT coalesce(max(position), 0) FROM projection_positions`).Scan(&fanned)
			t.Fatalf("after 3 min, %d of %d deliveries delivered; %s; fan-out at position %d; receivers got %d, %d, %d requests",
				done, 3*n, states, fanned, len(rcs[0].all()), len(rcs[1].all()), len(rcs[2].all()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, rc := range rcs {
		byID := map[string]string{}
		for _, g := range rc.all() {
			var p struct {
				Data struct {
					ID string `json:"id"`
				} `json:"data"`
			}
			if err := json.Unmarshal(g.body, &p); err != nil {
				t.Fatal(err)
			}
			if prev, ok := byID[g.id]; ok && prev != p.Data.ID {
				t.Fatalf("receiver %d: webhook-id %s carried two events", i, g.id)
			}
			byID[g.id] = p.Data.ID
		}
		events := map[string]bool{}
		for _, ev := range byID {
			events[ev] = true
		}
		if len(events) != n {
			t.Errorf("receiver %d got %d distinct events, want %d", i, len(events), n)
		}
	}
}

// memBus is an in-memory bus: watermill cannot be built in this module yet
// (go.sum lacks its dependencies), so the transports are not exercised here.
type memBus struct {
	mu   sync.Mutex
	msgs []webhooks.Message
	fail int // fail the publish after this many messages (0: never)
}

func (b *memBus) Publish(_ context.Context, topic string, msgs ...webhooks.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if topic != webhooks.DefaultTopic {
		return fmt.Errorf("topic %s", topic)
	}
	b.msgs = append(b.msgs, msgs...)
	if b.fail > 0 && len(b.msgs) >= b.fail {
		b.fail = 0
		return fmt.Errorf("broker went away")
	}
	return nil
}

func TestDispatcherResumesWithSameIDs(t *testing.T) {
	e := newEnv(t)
	for i := range 30 {
		g := fmt.Sprintf("d%02d", i)
		e.append(domain.SessionStream(g), domain.SessionCreated{GUID: g, PIN: "1", Queue: "q", GroupID: "g", CustomerName: "Private Person"})
	}
	bus := &memBus{fail: 10}
	st := e.ledger.Store()
	r := projections.NewRunner(e.db.Pool, st, projections.Options{Batch: 10}, webhooks.NewDispatcher(bus, ""))
	if err := r.CatchUp(context.Background()); err != nil {
		if err := r.CatchUp(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// A new process resumes at the stored position.
	r2 := projections.NewRunner(e.db.Pool, st, projections.Options{Batch: 10}, webhooks.NewDispatcher(bus, ""))
	if err := r2.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	evs, err := st.ReadAll(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range bus.msgs {
		seen[m.UUID]++
		if strings.Contains(string(m.Payload), "Private Person") {
			t.Errorf("a sealed field was published: %s", m.Payload)
		}
	}
	for _, ev := range evs {
		if seen[ev.ID.String()] == 0 {
			t.Errorf("event %d (%s) never published", ev.Position, ev.ID)
		}
	}
	if len(bus.msgs) != len(evs)+10 {
		t.Errorf("%d messages for %d events; want the failed batch of 10 again, with the same ids", len(bus.msgs), len(evs))
	}
}
