// Command exportbench measures auditor exports (docs/performance.md): it
// writes a log of support sessions through the ledger into a database of its
// own, exports the tenant's whole log as a bundle (compliance.Auditor.Export
// to a file), verifies the bundle offline (compliance.VerifyBundle), and
// prints each rate in events/s and MB/s beside raw SHA-256 over the same
// bytes in the same run. It creates and drops its own database.
//
//	go run ./bench/exportbench [-events 1000000]
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/bench/internal/stack"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "exportbench:", err)
		os.Exit(1)
	}
}

const tenant = "bench"

func run() error {
	server := flag.String("db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server URL")
	events := flag.Int("events", 1000000, "events to write and export")
	workers := flag.Int("workers", 32, "concurrent appenders")
	flag.Parse()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	s, err := stack.Open(ctx, *server, "exportbench", logger)
	if err != nil {
		return err
	}
	defer s.Close()
	pool, l, verifier := s.Pool, s.Ledger, s.Verifier

	var pgVersion string
	_ = pool.QueryRow(ctx, "SHOW server_version").Scan(&pgVersion)
	fmt.Printf("Go %s, GOMAXPROCS=%d; PostgreSQL %s\n\n", runtime.Version(), runtime.GOMAXPROCS(0), pgVersion)
	fmt.Printf("`go run ./bench/exportbench -events %d`\n\n", *events)

	start := time.Now()
	n, err := writeSessions(ctx, l, *events, *workers)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %d events in %s\n", n, time.Since(start).Round(time.Millisecond))

	dir, err := os.MkdirTemp("", "exportbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "bundle.jsonl")

	// Export.
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	start = time.Now()
	res, err := compliance.NewAuditor(l).Export(ctx, compliance.ExportRequest{Tenant: tenant, To: -1, Actor: domain.Actor{Kind: domain.ActorSystem, ID: "exportbench"}}, f)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	f.Close()
	exportD := time.Since(start)

	// Offline verify, from a file as the command does.
	runtime.GC()
	f, _ = os.Open(path)
	start = time.Now()
	rep, err := compliance.VerifyBundle(bufio.NewReaderSize(f, 1<<20), compliance.BundleVerifyOptions{Verifiers: note.VerifierList(verifier)})
	verifyD := time.Since(start)
	f.Close()
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}

	// Raw SHA-256 over the same bytes: the bundle file, and the leaves alone.
	f, _ = os.Open(path)
	h := sha256.New()
	start = time.Now()
	size, err := io.Copy(h, bufio.NewReaderSize(f, 1<<20))
	shaD := time.Since(start)
	f.Close()
	if err != nil {
		return err
	}

	mb := float64(res.Bytes) / 1e6
	row := func(what string, d time.Duration) {
		fmt.Printf("| %s | %d | %.1f | %.2f | %.0f | %.1f |\n", what, res.Count, mb, d.Seconds(), float64(res.Count)/d.Seconds(), mb/d.Seconds())
	}
	fmt.Println("| what | events | MB | seconds | events/s | MB/s |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	row("export (PostgreSQL → bundle file, ciphertext, `Auditor.Export`)", exportD)
	row("offline verify (bundle file → report, `VerifyBundle`)", verifyD)
	row(fmt.Sprintf("raw SHA-256 over the bundle file (%d bytes)", size), shaD)
	fmt.Printf("\nverify recomputed %d leaves, %d privileged actions with consent, %d streams.\n", rep.Events, rep.PrivilegedActions, rep.Streams)
	return nil
}

// writeSessions appends sessions of 10 events (created, picked up, consent
// asked and given, 4 chat messages with sealed text, remote control started
// and ended) until about n events are written, each session in one append.
func writeSessions(ctx context.Context, l *ledger.Ledger, n, workers int) (int64, error) {
	var (
		written  atomic.Int64
		wg       sync.WaitGroup
		firstErr error
		once     sync.Once
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for written.Add(10) <= int64(n) {
				if err := oneSession(ctx, l); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return l.Store().TreeSize(ctx, tenant)
}

func oneSession(ctx context.Context, l *ledger.Ledger) error {
	guid := strings.ReplaceAll(uuid.NewString(), "-", "")
	stream := domain.SessionStream(guid)
	var evs []domain.Event
	add := func(kind domain.ActorKind, p domain.Payload) uuid.UUID {
		e, err := domain.NewEvent(domain.Meta{Tenant: tenant, Stream: stream, Actor: domain.Actor{Kind: kind, ID: "t1"}}, p)
		if err != nil {
			panic(err)
		}
		evs = append(evs, e)
		return e.ID
	}
	add(domain.ActorSystem, domain.SessionCreated{GUID: guid, PIN: "123456", Queue: domain.QueueShared, GroupID: "g1", CustomerName: "Customer " + guid[:8], CustomerEmail: guid[:8] + "@example.com"})
	add(domain.ActorTechnician, domain.SessionPickedUp{TechnicianID: "t1", GroupID: "g1"})
	req := add(domain.ActorTechnician, domain.ConsentRequested{TechnicianID: "t1", Action: domain.ActionRemoteControl})
	grant := add(domain.ActorCustomer, domain.ConsentGranted{Action: domain.ActionRemoteControl, RequestEventID: req})
	for i := 0; i < 4; i++ {
		add(domain.ActorCustomer, domain.ChatMessage{From: domain.ChatFromCustomer, Text: "my printer does not print, message " + guid})
	}
	add(domain.ActorTechnician, domain.RemoteControlStarted{TechnicianID: "t1", ConsentEventID: grant})
	add(domain.ActorTechnician, domain.RemoteControlEnded{Reason: "technician"})
	_, err := l.Append(ctx, stream, ledger.NoStream, evs...)
	return err
}
