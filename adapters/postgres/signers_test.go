package postgres_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
)

// TestPinFirstKeyRace: of processes racing to pin their key on a new log,
// exactly one wins, and every one of them is told which.
func TestPinFirstKeyRace(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	const n = 8
	stores := make([]*postgres.Store, n)
	vkeys := make([]string, n)
	for i := range n {
		stores[i] = postgres.NewStore(db.Pool, postgres.Options{})
		t.Cleanup(stores[i].Close)
		_, vkey, err := note.GenerateKey(rand.Reader, "vigil.local")
		if err != nil {
			t.Fatal(err)
		}
		vkeys[i] = vkey
	}
	results := make([][]ledger.PinnedKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = stores[i].PinFirstKey(ctx, ledger.PinnedKey{VerifierKey: vkeys[i], How: ledger.PinFirst, AddedBy: fmt.Sprint("process ", i)})
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if len(results[i]) != 1 || results[i][0].VerifierKey != results[0][0].VerifierKey || results[i][0].How != ledger.PinFirst {
			t.Fatalf("process %d sees %+v, process 0 %+v", i, results[i], results[0])
		}
	}
	// A rotation adds; a second first key does not.
	_, rotated, err := note.GenerateKey(rand.Reader, "vigil.local")
	if err != nil {
		t.Fatal(err)
	}
	if err := stores[0].PinKey(ctx, ledger.PinnedKey{VerifierKey: rotated, How: ledger.PinRotation}); err != nil {
		t.Fatal(err)
	}
	if err := stores[0].PinKey(ctx, ledger.PinnedKey{VerifierKey: rotated, How: ledger.PinRotation}); err != nil {
		t.Fatalf("pinning a pinned key: %v", err)
	}
	if err := stores[0].PinKey(ctx, ledger.PinnedKey{VerifierKey: vkeys[2], How: ledger.PinFirst}); err == nil {
		t.Error("PinKey pinned a first key")
	}
	after, err := stores[0].PinFirstKey(ctx, ledger.PinnedKey{VerifierKey: vkeys[3], How: ledger.PinAdopted})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 2 {
		t.Errorf("pinned after a rotation and a late first key: %+v", after)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE checkpoint_signers SET how = 'first'`); err == nil {
		t.Error("checkpoint_signers accepts UPDATE")
	}
}
