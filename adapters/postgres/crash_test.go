package postgres_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"golang.org/x/mod/sumdb/note"
)

// The crash test re-executes the test binary as a child that appends in a
// loop and prints every acknowledged event; the parent kills it with SIGKILL
// mid-flight and checks that everything acknowledged survived.
func TestMain(m *testing.M) {
	if os.Getenv("VIGIL_CRASH_CHILD") == "1" {
		crashChild()
		return
	}
	os.Exit(m.Run())
}

func crashKeys(masterB64, skey string) (*ledger.Keyring, note.Signer, error) {
	raw, err := base64.StdEncoding.DecodeString(masterB64)
	if err != nil {
		return nil, nil, err
	}
	mk, err := ledger.NewMasterKey(raw)
	if err != nil {
		return nil, nil, err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, nil, err
	}
	return ledger.NewKeyring(mk), signer, nil
}

func crashChild() {
	ctx := context.Background()
	ring, signer, err := crashKeys(os.Getenv("VIGIL_CRASH_MASTER"), os.Getenv("VIGIL_CRASH_SKEY"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	pool, err := postgres.Open(ctx, os.Getenv("VIGIL_CRASH_DB"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	st := postgres.NewStore(pool, postgres.Options{})
	l := ledger.New(st, ledger.NewSealer(st, ring, 0), signer, ledger.Options{Origin: "vigil.test", CheckpointInterval: 50 * time.Millisecond})
	go l.Run(ctx)
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			guid := fmt.Sprintf("%032x", w+1)
			for i := 0; ; i++ {
				e, err := domain.NewEvent(domain.Meta{Tenant: fmt.Sprintf("t%d", w%2), Stream: domain.SessionStream(guid), Actor: domain.Actor{Kind: domain.ActorCustomer}},
					domain.ChatMessage{From: "customer", Text: fmt.Sprintf("worker %d message %d", w, i)})
				if err != nil {
					panic(err)
				}
				got, err := l.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, e)
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(4)
				}
				mu.Lock()
				// Acknowledged: the line is written only after Append
				// returned, and flushed at once.
				fmt.Fprintf(out, "ack %s %d\n", got[0].ID, got[0].Position)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestCrashKeepsAcknowledgedAppends(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test re-executes the test binary")
	}
	db := pgtest.New(t)
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	master := base64.StdEncoding.EncodeToString(raw)
	skey, vkey, err := note.GenerateKey(rand.Reader, "vigil.test")
	if err != nil {
		t.Fatal(err)
	}

	acked := map[uuid.UUID]int64{}
	for round := 0; round < 2; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "VIGIL_CRASH_CHILD=1", "VIGIL_CRASH_DB="+db.URL, "VIGIL_CRASH_MASTER="+master, "VIGIL_CRASH_SKEY="+skey)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		killAt := 400 + round*300
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 || f[0] != "ack" {
				continue
			}
			pos, _ := strconv.ParseInt(f[2], 10, 64)
			acked[uuid.MustParse(f[1])] = pos
			n++
			if n == killAt {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		err = cmd.Wait()
		if n < killAt {
			t.Fatalf("child stopped after %d acks: %v\n%s", n, err, stderr.String())
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child was not killed by SIGKILL: %v", err)
		}
	}

	ctx := context.Background()
	st := postgres.NewStore(db.Pool, postgres.Options{})
	defer st.Close()
	for id, pos := range acked {
		e, err := st.EventByID(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged event %s lost: %v", id, err)
		}
		if e.Position != pos {
			t.Fatalf("acknowledged event %s moved from %d to %d", id, pos, e.Position)
		}
	}
	// After the restart, appending goes on from a consistent state.
	ring, signer, err := crashKeys(master, skey)
	if err != nil {
		t.Fatal(err)
	}
	l := ledger.New(st, ledger.NewSealer(st, ring, 0), signer, ledger.Options{Origin: "vigil.test"})
	go l.Run(ctx)
	guid := fmt.Sprintf("%032x", 1)
	if _, err := l.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, ledgertest.Chat(t, "t0", guid, "after the crash")); err != nil {
		t.Fatal(err)
	}
	if err := l.CheckpointAll(ctx); err != nil {
		t.Fatal(err)
	}
	l.Close()
	verifier, _ := note.NewVerifier(vkey)
	rep, err := ledger.Verify(ctx, st, ledger.VerifyOptions{Verifiers: note.VerifierList(verifier), Origin: "vigil.test"})
	if err != nil {
		t.Fatalf("verify after crash: %v", err)
	}
	if rep.Events < int64(len(acked))+1 {
		t.Fatalf("log holds %d events, %d were acknowledged", rep.Events, len(acked))
	}
	t.Logf("%d acknowledged appends survived two SIGKILLs; %d events, %d checkpoints verify", len(acked), rep.Events, rep.Checkpoints)
}
