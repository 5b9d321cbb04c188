package eventstoredb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/vigilhq/vigil/adapters/eventstoredb"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
)

// prefix returns a fresh namespace, so that one server serves many runs.
func prefix(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "vt" + hex.EncodeToString(b)
}

// open opens a store on url in namespace p, closed when tb ends.
func open(tb testing.TB, url, p string, keys ledger.KeyStore) *eventstoredb.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := eventstoredb.Open(ctx, url, eventstoredb.Options{Keys: keys, Prefix: p, PollInterval: 50 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func newStoreAt(url string) ledgertest.NewStore {
	return func(tb testing.TB) ledger.Store {
		return open(tb, url, prefix(tb), eventstoredb.NewMemKeys())
	}
}

// TestContract runs the ledger contract suite against a real KurrentDB. The
// streams it writes stay on the server (KurrentDB keeps them; each run uses
// its own prefix).
func TestContract(t *testing.T) {
	url := os.Getenv("VIGIL_TEST_KURRENTDB_URL")
	if url == "" {
		t.Skip("VIGIL_TEST_KURRENTDB_URL not set: the KurrentDB contract suite needs a server (such as esdb://127.0.0.1:2113?tls=false, see docs/kurrentdb.md); TestContractFake runs it against an in-process fake meanwhile")
	}
	ledgertest.Run(t, newStoreAt(url))
}

// TestContractFake runs the contract suite against the in-process fake of
// fake_test.go. Passing it says the store's own logic holds together, not
// that it works against KurrentDB.
func TestContractFake(t *testing.T) {
	ledgertest.Run(t, func(tb testing.TB) ledger.Store {
		return newStoreAt(eventstoredb.NewFakeServer(tb).URL())(tb)
	})
}
