package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
)

// countingStore is the postgres store with counters around the calls whose
// number and latency decide append throughput. It changes no behaviour.
type countingStore struct {
	*postgres.Store

	commits      atomic.Int64
	commitReqs   atomic.Int64
	commitEvents atomic.Int64
	commitNanos  atomic.Int64
	maxCommit    atomic.Int64 // nanoseconds
	keyLookups   atomic.Int64
	keyCreates   atomic.Int64
}

var _ ledger.Store = (*countingStore)(nil)

func (s *countingStore) Commit(ctx context.Context, reqs []*ledger.AppendRequest) error {
	start := time.Now()
	err := s.Store.Commit(ctx, reqs)
	d := int64(time.Since(start))
	s.commits.Add(1)
	s.commitReqs.Add(int64(len(reqs)))
	n := 0
	for _, r := range reqs {
		n += len(r.Events)
	}
	s.commitEvents.Add(int64(n))
	s.commitNanos.Add(d)
	for {
		m := s.maxCommit.Load()
		if d <= m || s.maxCommit.CompareAndSwap(m, d) {
			break
		}
	}
	return err
}

func (s *countingStore) SubjectKey(ctx context.Context, tenant string, subject domain.Subject) (ledger.WrappedKey, error) {
	s.keyLookups.Add(1)
	return s.Store.SubjectKey(ctx, tenant, subject)
}

func (s *countingStore) CreateSubjectKey(ctx context.Context, k ledger.WrappedKey) (ledger.WrappedKey, error) {
	s.keyCreates.Add(1)
	return s.Store.CreateSubjectKey(ctx, k)
}

// storeStats is a snapshot of a countingStore's counters.
type storeStats struct {
	commits, reqs, events, nanos, keyLookups, keyCreates int64
}

func (s *countingStore) snapshot() storeStats {
	return storeStats{s.commits.Load(), s.commitReqs.Load(), s.commitEvents.Load(), s.commitNanos.Load(), s.keyLookups.Load(), s.keyCreates.Load()}
}

func (a storeStats) sub(b storeStats) storeStats {
	return storeStats{a.commits - b.commits, a.reqs - b.reqs, a.events - b.events, a.nanos - b.nanos, a.keyLookups - b.keyLookups, a.keyCreates - b.keyCreates}
}

// benchLedger is a running ledger over a counting postgres store, built the
// way ledgertest.NewEnv builds one.
type benchLedger struct {
	store    *countingStore
	ledger   *ledger.Ledger
	verifier note.Verifier
	runDone  chan error
}

const benchOrigin = "vigil.bench"

func startLedger(ctx context.Context, st *postgres.Store, logger *slog.Logger) (*benchLedger, error) {
	raw := make([]byte, ledger.MasterKeySize)
	_, _ = rand.Read(raw)
	mk, err := ledger.NewMasterKey(raw)
	if err != nil {
		return nil, err
	}
	ring := ledger.NewKeyring(mk)
	skey, vkey, err := note.GenerateKey(rand.Reader, benchOrigin)
	if err != nil {
		return nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, err
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	cs := &countingStore{Store: st}
	l := ledger.New(cs, ledger.NewSealer(cs, ring, 0), signer, ledger.Options{Origin: benchOrigin, Logger: logger})
	b := &benchLedger{store: cs, ledger: l, verifier: verifier, runDone: make(chan error, 1)}
	go func() { b.runDone <- l.Run(ctx) }()
	return b, nil
}

// close stops the ledger after its queue drained and its final checkpoint.
func (b *benchLedger) close() error {
	b.ledger.Close()
	return <-b.runDone
}

// appendCase has callers goroutines append sessions' events through
// ledger.Append, batch events per call, each session by one caller at a time
// with its expected version (as an aggregate would), until every session is
// written or deadline passes. It returns the events appended and the time
// taken.
func appendCase(ctx context.Context, l *ledger.Ledger, sessions []*session, callers, batch int, deadline time.Time, tick func(int64)) (int64, time.Duration, error) {
	queue := make(chan *session, len(sessions))
	for _, s := range sessions {
		queue <- s
	}
	close(queue)
	var (
		done  atomic.Int64
		errMu sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	fail := func(err error) {
		errMu.Lock()
		if first == nil {
			first = err
		}
		errMu.Unlock()
	}
	start := time.Now()
	for range callers {
		wg.Go(func() {
			for s := range queue {
				version := ledger.NoStream
				for off := 0; off < len(s.events); off += batch {
					if time.Now().After(deadline) || ctx.Err() != nil {
						return
					}
					evs := s.events[off:min(off+batch, len(s.events))]
					out, err := l.Append(ctx, s.stream, version, evs...)
					if err != nil {
						fail(fmt.Errorf("append %d events to %s at version %d: %w", len(evs), s.stream, version, err))
						return
					}
					if len(out) != len(evs) || out[len(out)-1].Version != version+int64(len(evs)) {
						fail(fmt.Errorf("append to %s: got %d events back", s.stream, len(out)))
						return
					}
					version += int64(len(evs))
					tick(done.Add(int64(len(evs))))
				}
			}
		})
	}
	wg.Wait()
	return done.Load(), time.Since(start), first
}
