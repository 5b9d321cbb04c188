package eventstoredb_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vigilhq/vigil/adapters/eventstoredb"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// These tests play several processes (stores) on one namespace of the
// in-process fake: see fake_test.go for what that does and does not show.

// process is one more ledger over its own store, sharing env's keys, master
// key and signer as the processes of one deployment do.
func process(tb testing.TB, env *ledgertest.Env, st *eventstoredb.Store) *ledger.Ledger {
	tb.Helper()
	l := ledger.New(st, ledger.NewSealer(st, env.Ring, 0), env.Signer, ledger.Options{Origin: "vigil.test"})
	go l.Run(context.Background())
	tb.Cleanup(l.Close)
	return l
}

// deployment is a fake server with one namespace, its shared key store and
// a first process.
type deployment struct {
	fake   *eventstoredb.FakeServer
	prefix string
	keys   *eventstoredb.MemKeys
	env    *ledgertest.Env
}

func newDeployment(t *testing.T) *deployment {
	d := &deployment{fake: eventstoredb.NewFakeServer(t), prefix: prefix(t), keys: eventstoredb.NewMemKeys()}
	d.env = ledgertest.NewEnv(t, func(tb testing.TB) ledger.Store { return d.open(tb) }, ledger.Options{})
	return d
}

func (d *deployment) open(tb testing.TB) *eventstoredb.Store {
	return open(tb, d.fake.URL(), d.prefix, d.keys)
}

func (d *deployment) verify(t *testing.T, ctx context.Context) ledger.VerifyReport {
	t.Helper()
	rep, err := ledger.Verify(ctx, d.open(t), ledger.VerifyOptions{Verifiers: note.VerifierList(d.env.Verifier), Origin: "vigil.test"})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestProcessesShareOneLog(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	ledgers := []*ledger.Ledger{d.env.Ledger, process(t, d.env, d.open(t)), process(t, d.env, d.open(t))}
	shared := fmt.Sprintf("%032x", 999)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		positions []int64
		conflicts int
	)
	for w := 0; w < 9; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := ledgers[w%len(ledgers)]
			tenant := fmt.Sprintf("t%d", w%2)
			for i := 0; i < 30; i++ {
				guid := fmt.Sprintf("%032x", w+1)
				if i%3 == 0 {
					guid = shared // every process on one stream too
				}
				out, err := l.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, ledgertest.Chat(t, tenant, guid, fmt.Sprint(w, i)))
				mu.Lock()
				switch {
				case err == nil:
					for _, e := range out {
						positions = append(positions, e.Position)
					}
				case errors.Is(err, domain.ErrConcurrency):
					conflicts++ // AnyVersion gave up under contention; allowed, not expected
				default:
					t.Error(err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(positions, func(i, j int) bool { return positions[i] < positions[j] })
	for i, p := range positions {
		if p != int64(i+1) {
			t.Fatalf("positions acknowledged across processes are not 1..n: index %d holds %d", i, p)
		}
	}
	if conflicts > 0 {
		t.Logf("%d AnyVersion appends gave up under contention", conflicts)
	}
	for _, l := range ledgers {
		if err := l.CheckpointAll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rep := d.verify(t, ctx)
	if rep.Positions != int64(len(positions)) || rep.Events != int64(len(positions)) || rep.Tenants != 2 {
		t.Errorf("verify report %+v, %d acknowledged", rep, len(positions))
	}
	// Every process sees the same log.
	var heads []int64
	for _, l := range ledgers {
		h, err := l.Store().Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		heads = append(heads, h)
	}
	if diff := cmp.Diff([]int64{rep.Positions, rep.Positions, rep.Positions}, heads); diff != "" {
		t.Errorf("heads (-want +got):\n%s", diff)
	}
}

// A commit that appended its events but could not order them (a crash, or
// the order stream unreachable) leaves events without positions; the next
// commit of any process orders them, and a retry with the same ids gets
// them back.
func TestCrashBetweenAppendAndOrder(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	guid := fmt.Sprintf("%032x", 1)
	stream := domain.SessionStream(guid)
	order := d.prefix + "_order"
	d.fake.SetFailAppend(func(name string) error {
		if name == order {
			return status.Error(codes.Unavailable, "injected: order stream unreachable")
		}
		return nil
	})
	lost := ledgertest.Chat(t, "t1", guid, "appended, never ordered")
	if _, err := d.env.Ledger.Append(ctx, stream, ledger.NoStream, lost); err == nil {
		t.Fatal("append succeeded although its events could not be ordered")
	}
	d.fake.SetFailAppend(nil)

	// Another process retries with the same id and the stale expected
	// version: the event is stored once, with position 1.
	other := process(t, d.env, d.open(t))
	out, err := other.Append(ctx, stream, ledger.NoStream, lost)
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Position != 1 || out[0].Version != 1 || out[0].ID != lost.ID {
		t.Errorf("retry got position %d version %d", out[0].Position, out[0].Version)
	}
	// The first process goes on where the log is.
	next, err := d.env.Ledger.Append(ctx, stream, ledger.AnyVersion, ledgertest.Chat(t, "t1", guid, "next"))
	if err != nil {
		t.Fatal(err)
	}
	if next[0].Position != 2 || next[0].Version != 2 {
		t.Errorf("next append got position %d version %d", next[0].Position, next[0].Version)
	}
	if rep := d.verify(t, ctx); rep.Positions != 2 {
		t.Errorf("verify report %+v", rep)
	}
}

// Leftovers that nobody retries are ordered by the next commit, before the
// commit's own events.
func TestLeftoversOrderedByNextCommit(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	order := d.prefix + "_order"
	d.fake.SetFailAppend(func(name string) error {
		if name == order {
			return status.Error(codes.Unavailable, "injected")
		}
		return nil
	})
	a := fmt.Sprintf("%032x", 1)
	if _, err := d.env.Ledger.Append(ctx, domain.SessionStream(a), ledger.AnyVersion, ledgertest.Chat(t, "t1", a, "left over")); err == nil {
		t.Fatal("append succeeded although its events could not be ordered")
	}
	d.fake.SetFailAppend(nil)
	st := d.open(t)
	// Not ordered yet: not visible.
	if evs, err := st.ReadStream(ctx, "t1", domain.SessionStream(a), 0); err != nil || len(evs) != 0 {
		t.Fatalf("unordered events visible: %d, %v", len(evs), err)
	}
	b := fmt.Sprintf("%032x", 2)
	out, err := process(t, d.env, st).Append(ctx, domain.SessionStream(b), ledger.AnyVersion, ledgertest.Chat(t, "t1", b, "new"))
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Position != 2 || out[0].Seq != 1 {
		t.Errorf("new event at position %d seq %d, want 2 and 1 after the leftover", out[0].Position, out[0].Seq)
	}
	evs, err := st.ReadStream(ctx, "t1", domain.SessionStream(a), 0)
	if err != nil || len(evs) != 1 || evs[0].Position != 1 {
		t.Fatalf("leftover after the next commit: %+v, %v", evs, err)
	}
	d.verify(t, ctx)
}

// The v4 client closes itself for good when a node discovery fails; the
// store replaces it.
func TestServerRestart(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	guid := fmt.Sprintf("%032x", 1)
	stream := domain.SessionStream(guid)
	if _, err := d.env.Ledger.Append(ctx, stream, ledger.AnyVersion, ledgertest.Chat(t, "t1", guid, "before")); err != nil {
		t.Fatal(err)
	}
	d.fake.Stop()
	// A read sees the server gone and makes the client rediscover the node;
	// the rediscovery fails, and the client closes itself for good.
	for i := 0; i < 3; i++ {
		if i == 2 {
			time.Sleep(1100 * time.Millisecond) // replaced clients are at least a second old
		}
		_, err := d.env.Store.Head(ctx)
		if !errors.Is(err, eventstoredb.ErrUnavailable) {
			t.Fatalf("head %d with the server down: %v, want ErrUnavailable", i, err)
		}
		t.Logf("head %d with the server down: %v", i, err)
	}
	d.fake.Restart(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := d.env.Ledger.Append(ctx, stream, ledger.AnyVersion, ledgertest.Chat(t, "t1", guid, "after"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after the restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.verify(t, ctx)
}

// An event written into the namespace by something else stops the writer:
// it cannot be given a place without guessing.
func TestForeignEventStopsCommits(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	guid := fmt.Sprintf("%032x", 1)
	d.fake.Write(d.prefix+"-t1-session-"+guid, "something.else", []byte(`{}`), []byte(`{"not":"vigil"}`))
	_, err := d.env.Ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, ledgertest.Chat(t, "t1", guid, "x"))
	if !errors.Is(err, eventstoredb.ErrInconsistent) {
		t.Fatalf("append after a foreign event: %v, want ErrInconsistent", err)
	}
	// Streams outside the namespace are none of its business.
	d2 := newDeployment(t)
	d2.fake.Write("orders-42", "order.placed", []byte(`{}`), nil)
	d2.fake.Write(d2.prefix+"x-t1-session-"+guid, "other.prefix", []byte(`{}`), nil)
	if _, err := d2.env.Ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, ledgertest.Chat(t, "t1", guid, "x")); err != nil {
		t.Fatal(err)
	}
}

func TestAppendSizeLimit(t *testing.T) {
	ctx := context.Background()
	fake := eventstoredb.NewFakeServer(t)
	p := prefix(t)
	st, err := eventstoredb.Open(ctx, fake.URL(), eventstoredb.Options{Keys: eventstoredb.NewMemKeys(), Prefix: p, MaxAppendBytes: 8192})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mk := func(guid string, n int) *ledger.AppendRequest {
		r := &ledger.AppendRequest{Tenant: "t1", Stream: domain.SessionStream(guid), ExpectedVersion: ledger.AnyVersion}
		for i := 0; i < n; i++ {
			e := ledgertest.Chat(t, "t1", guid, "x")
			e.Stream = r.Stream
			e.RecordedAt = time.Now()
			r.Events = append(r.Events, e)
		}
		return r
	}
	var reqs []*ledger.AppendRequest
	for i := 0; i < 6; i++ {
		reqs = append(reqs, mk(fmt.Sprintf("%032x", i+1), 8))
	}
	big := mk(fmt.Sprintf("%032x", 99), 40)
	reqs = append(reqs, big)
	before := fake.Appends(p + "_order")
	if err := st.Commit(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	if domain.ErrorCode(big.Err) != domain.CodeInvalid {
		t.Errorf("oversized request: %v, want an invalid error", big.Err)
	}
	var positions []int64
	for _, r := range reqs[:6] {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		for _, e := range r.Events {
			positions = append(positions, e.Position)
		}
	}
	sort.Slice(positions, func(i, j int) bool { return positions[i] < positions[j] })
	if len(positions) != 48 || positions[0] != 1 || positions[47] != 48 {
		t.Errorf("positions %v", positions)
	}
	if n := fake.Appends(p+"_order") - before; n < 3 {
		t.Errorf("48 order records went in %d appends of at most 8192 bytes", n)
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	ctx := context.Background()
	fake := eventstoredb.NewFakeServer(t)
	for name, opts := range map[string]eventstoredb.Options{
		"NoKeys":       {},
		"PrefixDash":   {Keys: eventstoredb.NewMemKeys(), Prefix: "a-b"},
		"PrefixUnder":  {Keys: eventstoredb.NewMemKeys(), Prefix: "a_b"},
		"PrefixLong":   {Keys: eventstoredb.NewMemKeys(), Prefix: "abcdefghijklmnopqrstuvwxyz0123456789"},
		"TinyAppends":  {Keys: eventstoredb.NewMemKeys(), MaxAppendBytes: 100},
		"PrefixDollar": {Keys: eventstoredb.NewMemKeys(), Prefix: "$all"},
	} {
		t.Run(name, func(t *testing.T) {
			if st, err := eventstoredb.Open(ctx, fake.URL(), opts); err == nil {
				st.Close()
				t.Fatal("opened")
			}
		})
	}
}

func TestOpenFailsFastWhenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fake := eventstoredb.NewFakeServer(t)
	url := fake.URL()
	fake.Stop() // nothing listens there now
	start := time.Now()
	_, err := eventstoredb.Open(ctx, url, eventstoredb.Options{Keys: eventstoredb.NewMemKeys()})
	if !errors.Is(err, eventstoredb.ErrUnavailable) {
		t.Fatalf("open: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("open took %s to fail", d)
	}
	// A passwordless URL here; the password is tested in conn_test.go.
	t.Log(err)
}

func TestClosedStore(t *testing.T) {
	ctx := context.Background()
	st := open(t, eventstoredb.NewFakeServer(t).URL(), prefix(t), eventstoredb.NewMemKeys())
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Head(ctx); !errors.Is(err, eventstoredb.ErrClosed) {
		t.Errorf("head after close: %v", err)
	}
	if err := st.Commit(ctx, nil); !errors.Is(err, eventstoredb.ErrClosed) {
		t.Errorf("commit after close: %v", err)
	}
	if err := st.WaitForAppend(ctx, 5); !errors.Is(err, eventstoredb.ErrClosed) {
		t.Errorf("wait after close: %v", err)
	}
}

func TestCheckpointsIdempotentBySize(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	a, b := d.open(t), d.open(t)
	cp := func(size int64) ledger.Checkpoint {
		return ledger.Checkpoint{Tenant: "t1", Size: size, Note: []byte(fmt.Sprintf("vigil.test/t1\n%d\nroot\n", size)), CreatedAt: time.Now()}
	}
	if _, err := a.LatestCheckpoint(ctx, "t1"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("latest of none: %v", err)
	}
	// Two processes save the same sizes at once, and a smaller one late.
	var wg sync.WaitGroup
	for _, st := range []*eventstoredb.Store{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, size := range []int64{10, 20, 5, 20, 10} {
				if err := st.SaveCheckpoint(ctx, cp(size)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for _, st := range []*eventstoredb.Store{a, b} {
		cps, err := st.Checkpoints(ctx, "t1")
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int64
		for _, c := range cps {
			sizes = append(sizes, c.Size)
		}
		if diff := cmp.Diff([]int64{5, 10, 20}, sizes); diff != "" {
			t.Errorf("sizes (-want +got):\n%s", diff)
		}
		latest, err := st.LatestCheckpoint(ctx, "t1")
		if err != nil || latest.Size != 20 || string(latest.Note) != string(cp(20).Note) {
			t.Errorf("latest %+v, %v", latest, err)
		}
	}
	if n := len(d.fake.Events(d.prefix + "_checkpoints-t1")); n != 3 {
		t.Errorf("%d checkpoint events stored for 3 sizes", n)
	}
}

func TestLookups(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	guid := fmt.Sprintf("%032x", 7)
	out, err := d.env.Ledger.Append(ctx, domain.SessionStream(guid), ledger.NoStream,
		ledgertest.Chat(t, "t1", guid, "a"), ledgertest.Chat(t, "t1", guid, "b"))
	if err != nil {
		t.Fatal(err)
	}
	other := d.open(t) // another process
	got, err := other.EventByID(ctx, out[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Position != 2 || got.Seq != 1 || got.Version != 2 || got.LeafHash != out[1].LeafHash {
		t.Errorf("event by id: %+v", got)
	}
	if _, err := other.EventByID(ctx, [16]byte{1}); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if evs, err := other.ReadAll(ctx, 1, 10); err != nil || len(evs) != 1 || evs[0].Position != 2 {
		t.Errorf("read all after 1: %d events, %v", len(evs), err)
	}
	if evs, err := other.ReadAll(ctx, 2, 10); err != nil || len(evs) != 0 {
		t.Errorf("read all after the head: %d events, %v", len(evs), err)
	}
	if evs, err := other.ReadStream(ctx, "t1", domain.SessionStream(guid), 1); err != nil || len(evs) != 1 || evs[0].Version != 2 {
		t.Errorf("read stream after 1: %v, %v", evs, err)
	}
	if evs, err := other.ReadStream(ctx, "t1", domain.SessionStream("none"), 0); err != nil || len(evs) != 0 {
		t.Errorf("read of a stream that does not exist: %v, %v", evs, err)
	}
	if _, err := other.ReadHashes(ctx, "t1", []int64{0, 1, 2}); err != nil {
		t.Errorf("hashes of a tree of 2: %v", err)
	}
	if _, err := other.ReadHashes(ctx, "t1", []int64{3}); err == nil {
		t.Error("hash beyond the tree read")
	}
	if _, err := other.ReadHashes(ctx, "t2", []int64{0}); err == nil {
		t.Error("hash of an empty tenant read")
	}
	var seqs []int64
	if err := other.ScanLog(ctx, "t1", 1, 100, func(e *domain.Event, sealed []byte) error {
		if e.Sealed != nil || len(sealed) == 0 {
			t.Error("scan gives decoded sealed fields")
		}
		seqs = append(seqs, e.Seq)
		return nil
	}); err != nil || len(seqs) != 1 || seqs[0] != 1 {
		t.Errorf("scan from seq 1: %v, %v", seqs, err)
	}
}
