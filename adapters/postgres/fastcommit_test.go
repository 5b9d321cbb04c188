package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"golang.org/x/mod/sumdb/note"
)

// twoProcesses returns two ledgers over one database through two pools and
// two stores, as two vigil processes would run, sharing the master key and
// the checkpoint signer.
func twoProcesses(t *testing.T, opts postgres.Options) (a, b *ledger.Ledger, sa, sb *postgres.Store, verifier note.Verifier) {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	pool2, err := postgres.Open(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool2.Close)
	mk, signer, verifier := ledgertest.Keys(t)
	open := func(st *postgres.Store) *ledger.Ledger {
		t.Cleanup(st.Close)
		l := ledger.New(st, ledger.NewSealer(st, ledger.NewKeyring(mk), 0), signer, ledger.Options{Origin: "vigil.test"})
		go l.Run(context.Background())
		t.Cleanup(l.Close)
		return l
	}
	sa = postgres.NewStore(db.Pool, opts)
	sb = postgres.NewStore(pool2, opts)
	return open(sa), open(sb), sa, sb, verifier
}

// TestFastCommitFallsBack: a store's one-round-trip commit is refused by
// the server when another process appended since, or when it repeats a
// stored event id; the store then commits the reading way, with the right
// versions, the idempotent answer, or the version conflict.
func TestFastCommitFallsBack(t *testing.T) {
	ctx := context.Background()
	a, b, sa, _, verifier := twoProcesses(t, postgres.Options{})
	stream := domain.SessionStream(fmt.Sprintf("%032x", 1))
	chat := func(text string) domain.Event { return ledgertest.Chat(t, "acme", fmt.Sprintf("%032x", 1), text) }
	appendOK := func(l *ledger.Ledger, expected int64, e domain.Event) domain.Event {
		t.Helper()
		out, err := l.Append(ctx, stream, expected, e)
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}

	appendOK(a, ledger.AnyVersion, chat("one")) // first commit: reading
	if st := sa.CommitStats(); st.Reading != 1 || st.Fast != 0 {
		t.Fatalf("after the first commit: %+v, want one reading commit", st)
	}
	second := appendOK(a, 1, chat("two")) // state known: one round trip
	if st := sa.CommitStats(); st.Fast != 1 || st.Fallbacks != 0 {
		t.Fatalf("after the second commit: %+v, want one fast commit", st)
	}

	// A repeated id: the batch is refused, the reading way answers the
	// stored event.
	again := appendOK(a, ledger.AnyVersion, second)
	if again.Position != second.Position || again.Version != 2 {
		t.Fatalf("retry answered position %d version %d, want %d and 2", again.Position, again.Version, second.Position)
	}
	if st := sa.CommitStats(); st.Fallbacks != 1 {
		t.Fatalf("after the retry: %+v, want one fallback", st)
	}

	// Another process appends: a's head, size and version are stale.
	appendOK(b, 2, chat("three from b"))
	fourth := appendOK(a, ledger.AnyVersion, chat("four"))
	if fourth.Version != 4 || fourth.Position != 4 || fourth.Seq != 3 {
		t.Fatalf("after b appended, a's event has version %d position %d seq %d, want 4, 4, 3", fourth.Version, fourth.Position, fourth.Seq)
	}
	if st := sa.CommitStats(); st.Fallbacks != 2 {
		t.Fatalf("after b appended: %+v, want two fallbacks", st)
	}

	// b appends again; a expects the version it knows: a conflict.
	appendOK(b, 4, chat("five from b"))
	if _, err := a.Append(ctx, stream, 4, chat("stale")); !errors.Is(err, domain.ErrConcurrency) {
		t.Fatalf("append at a stale expected version: %v, want ErrConcurrency", err)
	}
	// The conflict taught a the version: its next append is correct.
	if e := appendOK(a, 5, chat("six")); e.Version != 6 || e.Position != 6 {
		t.Fatalf("after the conflict: version %d position %d, want 6 and 6", e.Version, e.Position)
	}

	if err := a.CheckpointAll(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := ledger.Verify(ctx, sa, ledger.VerifyOptions{Verifiers: note.VerifierList(verifier), Origin: "vigil.test"})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Events != 6 {
		t.Fatalf("verify saw %d events, want 6", rep.Events)
	}
}

// TestTwoProcessesAppendGapless: two stores on one database appending at
// once to shared streams and tenants keep positions gapless, versions
// continuous and the Merkle logs verifying, through refused one-round-trip
// batches and their fallbacks; with asynchronous commits too, where every
// append is acknowledged only after a Sync.
func TestTwoProcessesAppendGapless(t *testing.T) {
	t.Run("synchronous", func(t *testing.T) { twoProcessesAppendGapless(t, postgres.Options{}) })
	t.Run("async commit", func(t *testing.T) { twoProcessesAppendGapless(t, postgres.Options{AsyncCommit: true}) })
}

func twoProcessesAppendGapless(t *testing.T, opts postgres.Options) {
	ctx := context.Background()
	a, b, sa, sb, verifier := twoProcesses(t, opts)
	const callers, appends = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, 2*callers)
	for p, l := range []*ledger.Ledger{a, b} {
		for c := 0; c < callers; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < appends; i++ {
					tenant := []string{"acme", "globex"}[(c+i)%2]
					guid := fmt.Sprintf("%032x", (c+i)%5+1) // streams shared by both processes
					e := ledgertest.Chat(t, tenant, guid, fmt.Sprintf("process %d caller %d message %d", p, c, i))
					if _, err := l.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, e); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var want int64 = 1
	if err := sa.ScanPositions(ctx, func(p int64) error {
		if p != want {
			return fmt.Errorf("position %d follows %d", p, want-1)
		}
		want++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if total := int64(2 * callers * appends); want-1 != total {
		t.Fatalf("%d positions, want %d", want-1, total)
	}
	if err := a.CheckpointAll(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := ledger.Verify(ctx, sa, ledger.VerifyOptions{Verifiers: note.VerifierList(verifier), Origin: "vigil.test"})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if rep.Events != int64(2*callers*appends) {
		t.Fatalf("verify saw %d events, want %d", rep.Events, 2*callers*appends)
	}
	for _, st := range []postgres.CommitStats{sa.CommitStats(), sb.CommitStats()} {
		if opts.AsyncCommit != (st.Syncs > 0) {
			t.Errorf("async commit %v, yet %d syncs", opts.AsyncCommit, st.Syncs)
		}
	}
	t.Logf("process a: %+v; process b: %+v", sa.CommitStats(), sb.CommitStats())
}

// TestFastCommitRememberedVersions: a one-round-trip commit checks only
// the head and the versions of streams its store does not remember. After
// another process appended, the reading commit that follows keeps only the
// versions it read under the lock (so that a commit lost in a server crash
// cannot leave a remembered version past the stored one); streams appended
// with the expected version the service passes then go in one round trip
// again, and a remembered version that fell behind is refused by the
// events' unique index.
func TestFastCommitRememberedVersions(t *testing.T) {
	ctx := context.Background()
	a, b, sa, _, verifier := twoProcesses(t, postgres.Options{})
	guid := func(n int) string { return fmt.Sprintf("%032x", n) }
	appendOK := func(l *ledger.Ledger, n int, expected int64, text string) domain.Event {
		t.Helper()
		out, err := l.Append(ctx, domain.SessionStream(guid(n)), expected, ledgertest.Chat(t, "acme", guid(n), text))
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	appendOK(a, 1, 0, "s1 one")
	appendOK(a, 2, 0, "s2 one") // a remembers s1 and s2 at version 1
	appendOK(a, 3, 0, "s3 one")
	appendOK(b, 1, 1, "s1 two from b")
	appendOK(b, 3, 1, "s3 two from b")
	appendOK(a, 2, 1, "s2 two") // refused (head moved), committed the reading way
	before := sa.CommitStats()
	if e := appendOK(a, 1, 2, "s1 three"); e.Version != 3 || e.Position != 7 {
		t.Fatalf("s1 after b appended to it: version %d position %d, want 3 and 7", e.Version, e.Position)
	}
	if e := appendOK(a, 2, 2, "s2 three"); e.Version != 3 || e.Position != 8 {
		t.Fatalf("s2: version %d position %d, want 3 and 8", e.Version, e.Position)
	}
	if st := sa.CommitStats(); st.Fast != before.Fast+2 || st.Fallbacks != before.Fallbacks {
		t.Fatalf("commit stats %+v after %+v: want two one-round-trip commits", st, before)
	}
	// Any version: s3 is not remembered since the reading commit; its
	// guess (a new stream) is refused by the check and the reading way
	// appends at the right version.
	if e := appendOK(a, 3, ledger.AnyVersion, "s3 three"); e.Version != 3 || e.Position != 9 {
		t.Fatalf("s3: version %d position %d, want 3 and 9", e.Version, e.Position)
	}
	if err := a.CheckpointAll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.Verify(ctx, sa, ledger.VerifyOptions{Verifiers: note.VerifierList(verifier), Origin: "vigil.test"}); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

// TestFastCommitRememberedTrees: tenants' Merkle trees remembered from this
// store's own commits go unchecked; once another process appended, the
// reading commit keeps only the trees it read, and a tenant forgotten that
// way is checked (and refused when the guess is wrong) before it is
// written again, so that sequence numbers and hashes stay right.
func TestFastCommitRememberedTrees(t *testing.T) {
	ctx := context.Background()
	a, b, sa, _, verifier := twoProcesses(t, postgres.Options{})
	guid := func(n int) string { return fmt.Sprintf("%032x", n) }
	appendOK := func(l *ledger.Ledger, tenant string, n int, expected int64, text string) domain.Event {
		t.Helper()
		out, err := l.Append(ctx, domain.SessionStream(guid(n)), expected, ledgertest.Chat(t, tenant, guid(n), text))
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	appendOK(a, "acme", 1, 0, "acme one")     // reading (first commit)
	appendOK(a, "globex", 2, 0, "globex one") // fast: globex guessed empty, checked
	appendOK(a, "acme", 1, 1, "acme two")     // fast: acme remembered, unchecked
	appendOK(b, "acme", 3, 0, "acme from b")  // acme's tree grows elsewhere
	appendOK(a, "globex", 2, 1, "globex two") // refused (head moved): reading, forgets acme
	if e := appendOK(a, "acme", 1, 2, "acme three"); e.Seq != 3 || e.Position != 6 {
		t.Fatalf("acme after b appended to it: seq %d position %d, want 3 and 6", e.Seq, e.Position)
	}
	st := sa.CommitStats()
	if e := appendOK(a, "globex", 2, 2, "globex three"); e.Seq != 2 || e.Position != 7 {
		t.Fatalf("globex: seq %d position %d, want 2 and 7", e.Seq, e.Position)
	}
	if after := sa.CommitStats(); after.Fast != st.Fast+1 {
		t.Fatalf("commit stats %+v after %+v: want a one-round-trip commit for a remembered tenant and stream", after, st)
	}
	if err := a.CheckpointAll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.Verify(ctx, sa, ledger.VerifyOptions{Verifiers: note.VerifierList(verifier), Origin: "vigil.test"}); err != nil {
		t.Fatalf("verify: %v", err)
	}
}
