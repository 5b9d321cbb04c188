// Package ledgertest is the contract suite every ledger.Store implementation
// must pass: run it from the implementation's tests with Run.
package ledgertest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Env is a ledger over a fresh store, for one test.
type Env struct {
	Store    ledger.Store
	Ledger   *ledger.Ledger
	Ring     *ledger.Keyring
	Signer   note.Signer
	Verifier note.Verifier
}

// NewStore returns a fresh, empty store for one test; the implementation
// arranges its cleanup with tb.Cleanup.
type NewStore func(tb testing.TB) ledger.Store

// NewEnv builds a running ledger over a fresh store. The ledger is closed
// when tb ends.
func NewEnv(tb testing.TB, newStore NewStore, opts ledger.Options) *Env {
	tb.Helper()
	st := newStore(tb)
	mk, signer, verifier := Keys(tb)
	ring := ledger.NewKeyring(mk)
	if opts.Origin == "" {
		opts.Origin = "vigil.test"
	}
	l := ledger.New(st, ledger.NewSealer(st, ring, 0), signer, opts)
	go l.Run(context.Background())
	tb.Cleanup(l.Close)
	return &Env{Store: st, Ledger: l, Ring: ring, Signer: signer, Verifier: verifier}
}

// Keys returns a fresh random master key and a checkpoint signer named
// vigil.test with its verifier.
func Keys(tb testing.TB) (ledger.MasterKey, note.Signer, note.Verifier) {
	tb.Helper()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	mk, err := ledger.NewMasterKey(raw)
	if err != nil {
		tb.Fatal(err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, "vigil.test")
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		tb.Fatal(err)
	}
	return mk, signer, verifier
}

// Verify runs ledger.Verify over the env's store with its verifier.
func (e *Env) Verify(ctx context.Context) (ledger.VerifyReport, error) {
	return ledger.Verify(ctx, e.Store, ledger.VerifyOptions{Verifiers: note.VerifierList(e.Verifier), Origin: "vigil.test"})
}

// Chat returns a new chat event on session guid of tenant, with personal text.
func Chat(tb testing.TB, tenant, guid, text string) domain.Event {
	tb.Helper()
	e, err := domain.NewEvent(domain.Meta{
		Tenant: tenant, Stream: domain.SessionStream(guid),
		Actor: domain.Actor{Kind: domain.ActorCustomer},
	}, domain.ChatMessage{From: "customer", Text: text})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// Technician returns a technician.created event with personal name and email.
func Technician(tb testing.TB, tenant, id, name, email string) domain.Event {
	tb.Helper()
	e, err := domain.NewEvent(domain.Meta{
		Tenant: tenant, Stream: domain.TechnicianStream(id),
		Actor: domain.Actor{Kind: domain.ActorAdmin, ID: "admin-1"},
	}, domain.TechnicianCreated{GroupID: "g1", Name: name, Email: email})
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func personal(e domain.Event, name string) string {
	for _, p := range e.Personal {
		if p.Name == name {
			if p.Erased {
				return "[erased]"
			}
			var s string
			_ = json.Unmarshal(p.Value, &s)
			return s
		}
	}
	return ""
}

// Run runs the contract suite against the stores newStore makes.
func Run(t *testing.T, newStore NewStore) {
	t.Run("AppendAndReadStream", func(t *testing.T) { testAppendRead(t, newStore) })
	t.Run("ConcurrencyConflict", func(t *testing.T) { testConcurrency(t, newStore) })
	t.Run("IdempotentRetry", func(t *testing.T) { testIdempotent(t, newStore) })
	t.Run("GaplessUnderConcurrency", func(t *testing.T) { testGapless(t, newStore) })
	t.Run("ShredKeepsVerifying", func(t *testing.T) { testShred(t, newStore) })
	t.Run("KeyRotation", func(t *testing.T) { testRotation(t, newStore) })
	t.Run("Proofs", func(t *testing.T) { testProofs(t, newStore) })
	t.Run("Subscribe", func(t *testing.T) { testSubscribe(t, newStore) })
	t.Run("TenantsHaveSeparateLogs", func(t *testing.T) { testTenants(t, newStore) })
	t.Run("CloseCommitsQueued", func(t *testing.T) { testClose(t, newStore) })
	t.Run("CheckpointForkRefused", func(t *testing.T) { testCheckpointFork(t, newStore) })
}

func testClose(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	env := NewEnv(t, newStore, ledger.Options{MaxBatchEvents: 8})
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked, refused := 0, 0
	start := make(chan struct{})
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			guid := fmt.Sprintf("%032x", 900+w)
			<-start
			for i := 0; i < 50; i++ {
				_, err := env.Ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, Chat(t, "t1", guid, "x"))
				mu.Lock()
				switch {
				case err == nil:
					acked++
				case errors.Is(err, ledger.ErrClosed):
					refused++
				default:
					t.Error(err)
				}
				mu.Unlock()
			}
		}()
	}
	close(start)
	time.Sleep(20 * time.Millisecond)
	env.Ledger.Close() // while appends are in flight
	wg.Wait()
	head, err := env.Store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head != int64(acked) {
		t.Errorf("%d appends acknowledged, %d committed", acked, head)
	}
	if acked == 0 || refused == 0 {
		t.Logf("close raced differently than planned: %d acked, %d refused", acked, refused)
	}
	// Close made a final checkpoint covering everything committed.
	if head > 0 {
		cp, err := env.Store.LatestCheckpoint(ctx, "t1")
		if err != nil || cp.Size != head {
			t.Errorf("final checkpoint %+v, %v; want size %d", cp, err, head)
		}
	}
	if _, err := env.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func testAppendRead(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	env := NewEnv(t, newStore, ledger.Options{})
	guid := "0123456789abcdef0123456789abcdef"
	stream := domain.SessionStream(guid)
	in := []domain.Event{Chat(t, "t1", guid, "hello"), Chat(t, "t1", guid, "my password is hunter2")}
	out, err := env.Ledger.Append(ctx, stream, ledger.NoStream, in...)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range out {
		if e.Version != int64(i+1) || e.Position != int64(i+1) || e.Seq != int64(i) {
			t.Errorf("event %d: version %d position %d seq %d", i, e.Version, e.Position, e.Seq)
		}
		if e.LeafHash == [32]byte{} || len(e.Sealed) != 1 {
			t.Errorf("event %d: leaf hash or sealed field missing", i)
		}
		if ledger.LeafHash(&e) != e.LeafHash {
			t.Errorf("event %d: returned leaf hash does not match the event", i)
		}
	}
	got, err := env.Ledger.ReadStream(ctx, "t1", stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("read %d events, want 2", len(got))
	}
	for i, e := range got {
		if diff := cmp.Diff(out[i].Data, e.Data); diff != "" {
			t.Errorf("event %d data (-appended +read):\n%s", i, diff)
		}
		if p := personal(e, "text"); p != personal(in[i], "text") {
			t.Errorf("event %d text %q, want %q", i, p, personal(in[i], "text"))
		}
		if !e.OccurredAt.Equal(out[i].OccurredAt) || !e.RecordedAt.Equal(out[i].RecordedAt) {
			t.Errorf("event %d times changed on the way through the store", i)
		}
		if ledger.LeafHash(&e) != e.LeafHash {
			t.Errorf("event %d read back does not hash to its leaf", i)
		}
		p, err := domain.Decode(e)
		if err != nil {
			t.Fatal(err)
		}
		if msg := p.(*domain.ChatMessage); msg.Text != personal(in[i], "text") {
			t.Errorf("decoded text %q", msg.Text)
		}
	}
	// The ciphertext stored must not contain the clear text.
	raw, err := env.Store.ReadStream(ctx, "t1", stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range raw {
		if len(e.Personal) != 0 || string(e.Sealed[0].Ciphertext) == "hello" {
			t.Error("store returned clear text")
		}
	}
	if _, err := env.Ledger.Append(ctx, "not-a-stream", ledger.AnyVersion, Chat(t, "t1", guid, "x")); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Errorf("malformed stream: got %v, want code invalid", err)
	}
	if _, err := env.Ledger.Append(ctx, stream, ledger.AnyVersion); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Errorf("no events: got %v, want code invalid", err)
	}
	if _, err := env.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func testConcurrency(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	env := NewEnv(t, newStore, ledger.Options{})
	guid := "11111111111111111111111111111111"
	stream := domain.SessionStream(guid)
	if _, err := env.Ledger.Append(ctx, stream, ledger.NoStream, Chat(t, "t1", guid, "a")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		expected int64
		wantErr  bool
	}{
		{"NoStreamOnExisting", ledger.NoStream, true},
		{"Stale", 5, true},
		{"Current", 1, false},
		{"StaleAfterAppend", 1, true},
		{"Any", ledger.AnyVersion, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := env.Ledger.Append(ctx, stream, c.expected, Chat(t, "t1", guid, "b"))
			if c.wantErr != (err != nil) {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if c.wantErr && !errors.Is(err, domain.ErrConcurrency) {
				t.Fatalf("err = %v, want ErrConcurrency", err)
			}
			if c.wantErr && domain.ErrorCode(err) != domain.CodeConflict {
				t.Fatalf("code = %s, want conflict", domain.ErrorCode(err))
			}
		})
	}
	evs, err := env.Ledger.ReadStream(ctx, "t1", stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 {
		t.Fatalf("stream has %d events, want 3", len(evs))
	}
	// Racing writers with the same expected version: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := env.Ledger.Append(ctx, stream, 3, Chat(t, "t1", guid, "race"))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, domain.ErrConcurrency):
				conflicts++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || conflicts != 7 {
		t.Errorf("racing appends: %d won, %d conflicted; want 1 and 7", wins, conflicts)
	}
	if _, err := env.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func testIdempotent(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	env := NewEnv(t, newStore, ledger.Options{})
	guid := "22222222222222222222222222222222"
	stream := domain.SessionStream(guid)
	e1, e2 := Chat(t, "t1", guid, "one"), Chat(t, "t1", guid, "two")
	first, err := env.Ledger.Append(ctx, stream, ledger.NoStream, e1, e2)
	if err != nil {
		t.Fatal(err)
	}
	// A retry with the same ids and the same (now stale) expected version
	// returns the original positions and writes nothing.
	again, err := env.Ledger.Append(ctx, stream, ledger.NoStream, e1, e2)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	for i := range first {
		if again[i].Position != first[i].Position || again[i].LeafHash != first[i].LeafHash || again[i].ID != first[i].ID {
			t.Errorf("retry event %d: position %d, want %d", i, again[i].Position, first[i].Position)
		}
	}
	head, err := env.Store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head != 2 {
		t.Errorf("head %d after retry, want 2", head)
	}
	// Mixing a stored id with a new one is a conflict.
	if _, err := env.Ledger.Append(ctx, stream, ledger.AnyVersion, e1, Chat(t, "t1", guid, "three")); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("partial retry: %v, want ErrConflict", err)
	}
	// Reusing an id on another stream is a conflict.
	other := e1
	other.Stream = ""
	if _, err := env.Ledger.Append(ctx, domain.SessionStream("33333333333333333333333333333333"), ledger.AnyVersion, other); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("id on another stream: %v, want ErrConflict", err)
	}
	// Concurrent retries of one append commit it once.
	e3 := Chat(t, "t1", guid, "concurrent")
	var wg sync.WaitGroup
	positions := make([]int64, 6)
	for i := range positions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := env.Ledger.Append(ctx, stream, ledger.AnyVersion, e3)
			if err != nil {
				t.Error(err)
				return
			}
			positions[i] = out[0].Position
		}()
	}
	wg.Wait()
	for _, p := range positions {
		if p != positions[0] {
			t.Errorf("concurrent retries got positions %v", positions)
			break
		}
	}
	if _, err := env.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func testGapless(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	env := NewEnv(t, newStore, ledger.Options{MaxBatchEvents: 64})
	const workers, each = 8, 150
	var wg sync.WaitGroup
	var mu sync.Mutex
	var positions []int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			guid := fmt.Sprintf("%032x", w+1)
			tenant := fmt.Sprintf("t%d", w%3)
			for i := 0; i < each; i++ {
				n := 1 + i%3
				evs := make([]domain.Event, n)
				for j := range evs {
					evs[j] = Chat(t, tenant, guid, fmt.Sprintf("w%d i%d j%d", w, i, j))
				}
				out, err := env.Ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, evs...)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, e := range out {
					positions = append(positions, e.Position)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(positions, func(i, j int) bool { return positions[i] < positions[j] })
	for i, p := range positions {
		if p != int64(i+1) {
			t.Fatalf("positions are not gapless: index %d holds %d", i, p)
		}
	}
	head, err := env.Store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head != int64(len(positions)) {
		t.Fatalf("head %d, acknowledged %d", head, len(positions))
	}
	// Commit order equals position order: reading all in position order
	// gives each stream's versions increasing.
	all, err := env.Store.ReadAll(ctx, 0, len(positions)+10)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]int64{}
	for _, e := range all {
		if e.Version != last[e.Tenant+e.Stream]+1 {
			t.Fatalf("position %d: %s version %d after %d", e.Position, e.Stream, e.Version, last[e.Tenant+e.Stream])
		}
		last[e.Tenant+e.Stream] = e.Version
	}
	if err := env.Ledger.CheckpointAll(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := env.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != int64(len(positions)) || rep.Checkpoints < 3 {
		t.Errorf("verify report %+v", rep)
	}
}

func testShred(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	env := NewEnv(t, newStore, ledger.Options{})
	guid := "44444444444444444444444444444444"
	stream := domain.SessionStream(guid)
	if _, err := env.Ledger.Append(ctx, stream, ledger.AnyVersion, Chat(t, "t1", guid, "secret chat")); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Ledger.Append(ctx, domain.TechnicianStream("tech-1"), ledger.AnyVersion, Technician(t, "t1", "tech-1", "Ada", "ada@example.com")); err != nil {
		t.Fatal(err)
	}
	if err := env.Ledger.CheckpointAll(ctx); err != nil {
		t.Fatal(err)
	}
	// Chat text is sealed under the session's chat subject.
	keyID, err := env.Ledger.Shred(ctx, "t1", domain.ChatSubject(guid))
	if err != nil {
		t.Fatal(err)
	}
	if keyID == "" {
		t.Fatal("no key id")
	}
	evs, err := env.Ledger.ReadStream(ctx, "t1", stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !evs[0].Erased() || personal(evs[0], "text") != "[erased]" {
		t.Errorf("shredded field reads %q", personal(evs[0], "text"))
	}
	p, err := domain.Decode(evs[0])
	if err != nil {
		t.Fatal(err)
	}
	if p.(*domain.ChatMessage).Text != "" {
		t.Error("decoded payload still has the text")
	}
	// A fresh sealer (another process, no cache) cannot read it either.
	fresh := ledger.NewSealer(env.Store, env.Ring, 0)
	raw, err := env.Store.ReadStream(ctx, "t1", stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Open(ctx, &raw[0]); err != nil || !raw[0].Erased() {
		t.Errorf("fresh sealer: err %v, erased %v", err, raw[0].Erased())
	}
	// The other subject is untouched.
	tech, err := env.Ledger.ReadStream(ctx, "t1", domain.TechnicianStream("tech-1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if personal(tech[0], "email") != "ada@example.com" {
		t.Errorf("other subject reads %q", personal(tech[0], "email"))
	}
	// Nothing new may be sealed for the erased subject.
	if _, err := env.Ledger.Append(ctx, stream, ledger.AnyVersion, Chat(t, "t1", guid, "more")); !errors.Is(err, domain.ErrSubjectErased) {
		t.Errorf("append after shred: %v, want ErrSubjectErased", err)
	}
	// Shredding again is a no-op; an unknown subject is not found.
	if again, err := env.Ledger.Shred(ctx, "t1", domain.ChatSubject(guid)); err != nil || again != keyID {
		t.Errorf("second shred: %q %v", again, err)
	}
	if _, err := env.Ledger.Shred(ctx, "t1", domain.SessionSubject("nobody")); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("unknown subject: %v", err)
	}
	if _, err := env.Verify(ctx); err != nil {
		t.Fatalf("verify after shred: %v", err)
	}
}

func testRotation(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	env := NewEnv(t, newStore, ledger.Options{})
	texts := map[string]string{}
	for i := 0; i < 5; i++ {
		guid := fmt.Sprintf("%032x", 100+i)
		texts[guid] = fmt.Sprintf("text %d", i)
		if _, err := env.Ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, Chat(t, "t1", guid, texts[guid])); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.Ledger.Shred(ctx, "t1", domain.ChatSubject(fmt.Sprintf("%032x", 104))); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	next, err := ledger.NewMasterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	newRing := ledger.NewKeyring(next)
	n, err := ledger.Rotate(ctx, env.Store, env.Ring, newRing)
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Errorf("rotated %d keys, want 4 live ones", n)
	}
	// Only the new master key is configured now.
	sealer := ledger.NewSealer(env.Store, newRing, 0)
	for guid, text := range texts {
		evs, err := env.Store.ReadStream(ctx, "t1", domain.SessionStream(guid), 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := sealer.Open(ctx, &evs[0]); err != nil {
			t.Fatal(err)
		}
		want := text
		if guid == fmt.Sprintf("%032x", 104) {
			want = "[erased]"
		}
		if got := personal(evs[0], "text"); got != want {
			t.Errorf("%s after rotation reads %q, want %q", guid, got, want)
		}
	}
	// The old master key alone no longer unwraps anything.
	old := ledger.NewSealer(env.Store, env.Ring, 0)
	evs, err := env.Store.ReadStream(ctx, "t1", domain.SessionStream(fmt.Sprintf("%032x", 100)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Open(ctx, &evs[0]); err == nil {
		t.Error("old master key still opens a re-wrapped key")
	}
	if _, err := env.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func testProofs(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	env := NewEnv(t, newStore, ledger.Options{})
	guid := "55555555555555555555555555555555"
	var all []domain.Event
	for i := 0; i < 37; i++ {
		out, err := env.Ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, Chat(t, "t1", guid, fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, out...)
		if i == 12 {
			if _, err := env.Ledger.Checkpoint(ctx, "t1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	cp, err := env.Ledger.Checkpoint(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ledger.OpenCheckpoint(cp.Note, note.VerifierList(env.Verifier))
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Size != 37 || parsed.Root != cp.Root || parsed.Origin != "vigil.test/t1" {
		t.Fatalf("checkpoint %+v", parsed)
	}
	root, err := tlog.TreeHash(37, ledger.HashReader{Ctx: ctx, Store: env.Store, Tenant: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	if root != cp.Root {
		t.Fatal("checkpoint root differs from tlog.TreeHash")
	}
	for _, e := range all {
		p, err := env.Ledger.ProveInclusion(ctx, "t1", e.Seq, 37)
		if err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p, 37, cp.Root, e.Seq, tlog.Hash(e.LeafHash)); err != nil {
			t.Fatalf("inclusion of seq %d: %v", e.Seq, err)
		}
		if e.Seq == 3 {
			if err := tlog.CheckRecord(p, 37, cp.Root, 4, tlog.Hash(e.LeafHash)); err == nil {
				t.Error("inclusion proof checks for the wrong seq")
			}
		}
	}
	cps, err := env.Store.Checkpoints(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 2 || cps[0].Size != 13 {
		t.Fatalf("checkpoints %v", len(cps))
	}
	tp, err := env.Ledger.ProveConsistency(ctx, "t1", 13, 37)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(tp, 37, cp.Root, 13, cps[0].Root); err != nil {
		t.Fatalf("consistency: %v", err)
	}
	var forged tlog.Hash
	forged[0] = 1
	if err := tlog.CheckTree(tp, 37, cp.Root, 13, forged); err == nil {
		t.Error("consistency proof checks against a forged old root")
	}
	// A checkpoint signed by another key fails.
	skey, vkey, _ := note.GenerateKey(rand.Reader, "vigil.test")
	_ = skey
	other, _ := note.NewVerifier(vkey)
	if _, err := ledger.OpenCheckpoint(cp.Note, note.VerifierList(other)); err == nil {
		t.Error("checkpoint opens under a different key")
	}
}

func testSubscribe(t *testing.T, newStore NewStore) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	env := NewEnv(t, newStore, ledger.Options{})
	guid := "66666666666666666666666666666666"
	for i := 0; i < 5; i++ {
		if _, err := env.Ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, Chat(t, "t1", guid, fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan int64, 100)
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- env.Ledger.Subscribe(sctx, 2, 2, func(_ context.Context, evs []domain.Event) error {
			for _, e := range evs {
				got <- e.Position
			}
			return nil
		})
	}()
	// Appends after the subscription caught up arrive too (wake-up path).
	time.Sleep(100 * time.Millisecond)
	for i := 0; i < 3; i++ {
		if _, err := env.Ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, Chat(t, "t1", guid, "late")); err != nil {
			t.Fatal(err)
		}
	}
	var positions []int64
	for len(positions) < 6 {
		select {
		case p := <-got:
			positions = append(positions, p)
		case <-ctx.Done():
			t.Fatalf("subscription got %v", positions)
		}
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("subscription ended with %v", err)
	}
	if diff := cmp.Diff([]int64{3, 4, 5, 6, 7, 8}, positions); diff != "" {
		t.Errorf("positions (-want +got):\n%s", diff)
	}
}

func testTenants(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	env := NewEnv(t, newStore, ledger.Options{})
	guid := "77777777777777777777777777777777"
	for _, tenant := range []string{"a", "b", "a"} {
		if _, err := env.Ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, Chat(t, tenant, guid, tenant)); err != nil {
			t.Fatal(err)
		}
	}
	for tenant, want := range map[string]int64{"a": 2, "b": 1} {
		n, err := env.Store.TreeSize(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("tenant %s log size %d, want %d", tenant, n, want)
		}
		evs, err := env.Ledger.ReadStream(ctx, tenant, domain.SessionStream(guid), 0)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(evs)) != want {
			t.Errorf("tenant %s reads %d events of the shared stream name, want %d", tenant, len(evs), want)
		}
	}
	tenants, err := env.Store.Tenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a", "b"}, tenants); diff != "" {
		t.Error(diff)
	}
	if err := env.Ledger.CheckpointAll(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := env.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Tenants != 2 || rep.Checkpoints != 2 || rep.Positions != 3 {
		t.Errorf("report %+v", rep)
	}
}

// testCheckpointFork: saving a checkpoint of a size already stored is a
// no-op with the same root and ErrCheckpointFork with another, whatever
// the store.
func testCheckpointFork(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	st := newStore(t)
	first := ledger.Checkpoint{Tenant: "fork", Size: 3, Root: tlog.Hash{1, 2, 3}, Note: []byte("first\n"), CreatedAt: time.Now().UTC()}
	if err := st.SaveCheckpoint(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveCheckpoint(ctx, first); err != nil {
		t.Fatalf("the same checkpoint again: %v, want nil", err)
	}
	fork := first
	fork.Root = tlog.Hash{9, 9, 9}
	if err := st.SaveCheckpoint(ctx, fork); !errors.Is(err, ledger.ErrCheckpointFork) {
		t.Fatalf("another root at a stored size: %v, want ErrCheckpointFork", err)
	}
	latest, err := st.LatestCheckpoint(ctx, "fork")
	if err != nil {
		t.Fatal(err)
	}
	if latest.Root != first.Root {
		t.Fatalf("stored root after the fork: %x, want %x", latest.Root, first.Root)
	}
}
