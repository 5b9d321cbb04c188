package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"golang.org/x/mod/sumdb/note"
)

// lostAnswers is the PostgreSQL store with the answer of its next few
// COMMITs lost, as when the connection dies after the server committed
// (a failover, issue 16): the transaction is really committed, the caller
// only learns ErrOutcomeUnknown.
type lostAnswers struct {
	*postgres.Store
	lose atomic.Int32
}

func (s *lostAnswers) Commit(ctx context.Context, reqs []*ledger.AppendRequest) error {
	err := s.Store.Commit(ctx, reqs)
	if err == nil && s.lose.Add(-1) >= 0 {
		return fmt.Errorf("commit: %w: connection reset after COMMIT", ledger.ErrOutcomeUnknown)
	}
	return err
}

// TestLostCommitOutcomeResolvedByEventIDs: an append whose COMMIT landed
// but whose answer was lost is answered by the ledger's retry with the
// same event ids, once, at the positions it was stored at: no error for the
// caller to guess about, no duplicate, a log that verifies.
func TestLostCommitOutcomeResolvedByEventIDs(t *testing.T) {
	ctx := context.Background()
	st, l, verifier := lostAnswersLedger(t, 0, ledger.Options{Origin: "vigil.test"})

	guid := fmt.Sprintf("%032x", 7)
	stream := domain.SessionStream(guid)
	var want []domain.Event
	for i := 0; i < 5; i++ {
		switch i {
		case 1:
			st.lose.Store(1) // the answer lost once
		case 3:
			st.lose.Store(6) // lost six times in a row: longer than the quick retries
		}
		e := ledgertest.Chat(t, "acme", guid, fmt.Sprintf("message %d", i))
		out, err := l.Append(ctx, stream, int64(i), e)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if out[0].ID != e.ID || out[0].Version != int64(i+1) {
			t.Fatalf("append %d answered id %v version %d, want %v version %d", i, out[0].ID, out[0].Version, e.ID, i+1)
		}
		want = append(want, out[0])
	}
	got, err := st.ReadStream(ctx, "acme", stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("stream holds %d events, want %d (a lost answer must not duplicate)", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].Position != want[i].Position {
			t.Fatalf("event %d: stored %v at %d, answered %v at %d", i, got[i].ID, got[i].Position, want[i].ID, want[i].Position)
		}
	}
	if _, err := l.Checkpoint(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.Verify(ctx, st, ledger.VerifyOptions{Tenant: "acme", Origin: "vigil.test", Verifiers: note.VerifierList(verifier)}); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

// TestOutcomeUnknownWindowEnds: when the database does not answer again
// within the window, the callers get the error, marked as unknown.
func TestOutcomeUnknownWindowEnds(t *testing.T) {
	ctx := context.Background()
	_, l, _ := lostAnswersLedger(t, 1<<20, ledger.Options{Origin: "vigil.test", OutcomeWindow: 1})
	guid := fmt.Sprintf("%032x", 8)
	_, err := l.Append(ctx, domain.SessionStream(guid), 0, ledgertest.Chat(t, "acme", guid, "hello"))
	if !errors.Is(err, ledger.ErrOutcomeUnknown) {
		t.Fatalf("append with every answer lost: %v, want ErrOutcomeUnknown", err)
	}
}

// lostAnswersLedger runs a ledger over a lostAnswers store on a fresh
// database whose next lose answers are lost.
func lostAnswersLedger(t *testing.T, lose int32, opts ledger.Options) (*lostAnswers, *ledger.Ledger, note.Verifier) {
	t.Helper()
	db := pgtest.New(t)
	mk, signer, verifier := ledgertest.Keys(t)
	st := &lostAnswers{Store: postgres.NewStore(db.Pool, postgres.Options{})}
	t.Cleanup(st.Close)
	st.lose.Store(lose)
	l := ledger.New(st, ledger.NewSealer(st, ledger.NewKeyring(mk), 0), signer, opts)
	go l.Run(context.Background())
	t.Cleanup(l.Close)
	return st, l, verifier
}
