// Command erasebench measures how long erasing one data subject takes, and
// whether that grows with the size of the log: it writes a log through the
// ledger, projects it, erases a few sessions (immediately: keys destroyed,
// reporting rows purged, subject_erased appended, receipt signed), then
// grows the log tenfold and erases a few more. It creates and drops its own
// database.
//
//	go run ./bench/erasebench [-events 100000] [-factor 10] [-erasures 20]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/bench/internal/gen"
	"github.com/vigilhq/vigil/bench/internal/stack"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/projections"
	"golang.org/x/mod/sumdb/note"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "erasebench:", err)
		os.Exit(1)
	}
}

func run() error {
	server := flag.String("db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server URL")
	events := flag.Int("events", 100000, "events in the log at the first measurement")
	factor := flag.Int("factor", 10, "how many times larger the log is at the second measurement")
	erasures := flag.Int("erasures", 20, "sessions erased at each size")
	flag.Parse()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	s, err := stack.Open(ctx, *server, "erasebench", logger)
	if err != nil {
		return err
	}
	defer s.Close()
	pool, st, sealer, l, signer, verifier := s.Pool, s.Store, s.Sealer, s.Ledger, s.Signer, s.Verifier
	runner := projections.NewRunner(pool, st, projections.Options{Logger: logger}, projections.NewReporting(sealer), projections.NewSubjects())
	gdpr := compliance.NewGDPR(compliance.GDPRConfig{Pool: pool, Ledger: l, Credentials: st, Signer: signer, Logger: logger})
	p := service.Principal{Tenant: "tenant-0", Role: service.RoleAdmin, CredentialID: "bench", Scope: service.ScopeFull}

	var pgVersion string
	_ = pool.QueryRow(ctx, "SHOW server_version").Scan(&pgVersion)
	fmt.Printf("Go %s, GOMAXPROCS=%d; PostgreSQL %s\n\n", runtime.Version(), runtime.GOMAXPROCS(0), pgVersion)
	fmt.Printf("`go run ./bench/erasebench -events %d -factor %d -erasures %d`\n\n", *events, *factor, *erasures)
	fmt.Println("| log size (events) | sessions erased | p50 | p90 | max | log verifies |")
	fmt.Println("|---:|---:|---:|---:|---:|---|")

	written := int64(0)
	for _, size := range []int{*events, *events * *factor} {
		n, err := gen.WriteSessions(ctx, l, size-int(written), 3, 32)
		if err != nil {
			return err
		}
		written += n
		if err := runner.CatchUp(ctx); err != nil {
			return err
		}
		// Sessions of tenant-0, taken from the middle of the log.
		rows, err := pool.Query(ctx, `SELECT guid FROM rpt_sessions WHERE tenant = 'tenant-0' AND customer_name_ref IS NOT NULL
			ORDER BY created_position LIMIT $1 OFFSET (SELECT count(*) / 2 FROM rpt_sessions WHERE tenant = 'tenant-0')`, *erasures)
		if err != nil {
			return err
		}
		guids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		var took []time.Duration
		zero := time.Duration(0)
		for _, g := range guids {
			start := time.Now()
			e, err := gdpr.RequestErasure(ctx, p, compliance.ErasureRequest{Subject: "session:" + g, Delay: &zero, Reason: "bench"})
			if err != nil {
				return fmt.Errorf("erase %s: %w", g, err)
			}
			took = append(took, time.Since(start))
			if e.State != compliance.ErasureDone {
				fmt.Fprintf(os.Stderr, "erasure of %s ended in state %q\n", g, e.State)
			}
		}
		slices.Sort(took)
		pct := func(q float64) time.Duration { return took[int(math.Ceil(q*float64(len(took))))-1] }
		if err := l.CheckpointAll(ctx); err != nil {
			return err
		}
		verdict := "yes"
		if _, err := ledger.Verify(ctx, st, ledger.VerifyOptions{Verifiers: note.VerifierList(verifier), Origin: "vigil.bench"}); err != nil {
			verdict = "NO: " + err.Error()
		}
		fmt.Printf("| %d | %d | %s | %s | %s | %s |\n", written, len(took),
			pct(0.5).Round(100*time.Microsecond), pct(0.9).Round(100*time.Microsecond), pct(1).Round(100*time.Microsecond), verdict)
	}
	return nil
}
