package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

// leaves holds the canonical leaf encodings of a log, back to back, in
// tenant then seq order.
type leaves struct {
	arena []byte
	ends  []int // ends[i] is where leaf i ends in arena
}

func (lv *leaves) n() int { return len(lv.ends) }

func (lv *leaves) leaf(i int) []byte {
	start := 0
	if i > 0 {
		start = lv.ends[i-1]
	}
	return lv.arena[start:lv.ends[i]]
}

// scanLeaves reads every tenant's log with store.ScanLog and encodes each
// event with ledger.AppendLeaf into one reused buffer, as ledger.Verify does,
// and returns how long that took: Verify's reading without its hashing.
func scanLeaves(ctx context.Context, store ledger.Store) (int64, time.Duration, error) {
	start := time.Now()
	var n int64
	buf := make([]byte, 0, 4096)
	err := eachLeaf(ctx, store, func(e *domain.Event, sealed []byte) {
		buf = ledger.AppendLeaf(buf[:0], e, sealed)
		n++
	})
	return n, time.Since(start), err
}

// loadLeaves returns the leaf encodings of every tenant's log: exactly the
// bytes ledger.Verify hashes.
func loadLeaves(ctx context.Context, store ledger.Store) (*leaves, error) {
	lv := &leaves{}
	err := eachLeaf(ctx, store, func(e *domain.Event, sealed []byte) {
		lv.arena = ledger.AppendLeaf(lv.arena, e, sealed)
		lv.ends = append(lv.ends, len(lv.arena))
	})
	return lv, err
}

func eachLeaf(ctx context.Context, store ledger.Store, fn func(e *domain.Event, sealed []byte)) error {
	tenants, err := store.Tenants(ctx)
	if err != nil {
		return err
	}
	for _, t := range tenants {
		size, err := store.TreeSize(ctx, t)
		if err != nil {
			return err
		}
		err = store.ScanLog(ctx, t, 0, size, func(e *domain.Event, sealed []byte) error {
			fn(e, sealed)
			return nil
		})
		if err != nil {
			return fmt.Errorf("scan %s: %w", t, err)
		}
	}
	return nil
}

// timeLoop runs pass until at least minTotal has passed (and at least once)
// and returns the mean duration of one pass.
func timeLoop(minTotal time.Duration, pass func()) time.Duration {
	start := time.Now()
	n := 0
	for n == 0 || time.Since(start) < minTotal {
		pass()
		n++
	}
	return time.Since(start) / time.Duration(n)
}

var sink [32]byte

// rawSHA256 returns the mean time of one pass of crypto/sha256 over every
// leaf encoding, one Sum256 per leaf, in one goroutine (ledger.Verify hashes
// in one goroutine too).
func rawSHA256(lv *leaves) time.Duration {
	return timeLoop(500*time.Millisecond, func() {
		for i := range lv.n() {
			h := sha256.Sum256(lv.leaf(i))
			sink[0] ^= h[0]
		}
	})
}

// merkleCompute returns the mean time of one pass of the hashing that
// ledger.Verify does per leaf, without the store: the RFC 6962 leaf hash and
// the Merkle frontier update (about one more SHA-256 of 65 bytes per leaf).
// The leaves of all tenants go into one tree; the hash count is the same.
func merkleCompute(lv *leaves) time.Duration {
	return timeLoop(500*time.Millisecond, func() {
		var f ledger.Frontier
		computed := make([]tlog.Hash, 0, 64)
		for i := range lv.n() {
			computed = f.Append(computed[:0], tlog.RecordHash(lv.leaf(i)))
		}
		r := f.Root()
		sink[0] ^= r[0]
	})
}
