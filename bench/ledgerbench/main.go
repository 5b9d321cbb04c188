// Command ledgerbench measures the ledger's append and verify throughput on
// PostgreSQL beside raw baselines taken in the same run, and prints a
// markdown table for docs/performance.md.
//
// It creates a randomly named database on the server given by -db, migrates
// it, and drops it at the end. The baselines write rows of the events
// table's shape into scratch tables without triggers: with CopyFrom inside a
// transaction, as the postgres store does, and with one single-row INSERT per
// transaction. The ledger cases append realistic chat events (sealed
// personal text on session streams, one subject key per session) through
// ledger.Append with -concurrency callers at 1, 10 and 100 events per call.
// Verify runs over the resulting log beside SHA-256 over the same leaf
// encodings in memory.
//
// Usage:
//
//	go run ./bench/ledgerbench [-db url] [-events n] [-concurrency n] [-tenants n]
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ledgerbench:", err)
		os.Exit(1)
	}
}

type config struct {
	db            string
	events        int
	concurrency   int
	tenants       int
	maxDuration   time.Duration
	sessionEvents int
	copyBatch     int
	writerBatch   int
	cases         map[string]bool
	cpuprofile    string
	trace         bool
	asyncCommit   bool
}

var allCases = []string{"copy", "insert", "copy-1w", "append1", "append10", "append100", "verify"}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("ledgerbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.db, "db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server `url`; a scratch database is created on it and dropped")
	fs.IntVar(&c.events, "events", 100000, "events (rows) per measurement")
	fs.IntVar(&c.concurrency, "concurrency", 32, "concurrent callers (baseline goroutines and ledger.Append callers)")
	fs.IntVar(&c.tenants, "tenants", 3, "tenants the sessions are spread over")
	fs.DurationVar(&c.maxDuration, "max-duration", 30*time.Second, "stop a measurement after this long even if fewer than -events were written")
	fs.IntVar(&c.sessionEvents, "session-events", 100, "chat events per session (one subject key and one stream per session)")
	fs.IntVar(&c.copyBatch, "copy-batch", 100, "rows per CopyFrom transaction in the concurrent COPY baseline")
	fs.IntVar(&c.writerBatch, "writer-batch", 2000, "rows per CopyFrom transaction in the single-writer COPY baseline (the ledger's default MaxBatchEvents)")
	cases := fs.String("cases", strings.Join(allCases, ","), "comma-separated measurements to run, of "+strings.Join(allCases, ","))
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the measurements to `file`")
	fs.BoolVar(&c.asyncCommit, "async-commit", false, "the ledger's store commits asynchronously and the ledger acknowledges after a Sync (postgres.Options.AsyncCommit)")
	fs.BoolVar(&c.trace, "trace", false, "time every statement on the ledger's connections and print a breakdown per append case")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.events <= 0 || c.concurrency <= 0 || c.tenants <= 0 || c.sessionEvents <= 0 || c.copyBatch <= 0 || c.writerBatch <= 0 || c.maxDuration <= 0 {
		return c, errors.New("-events, -concurrency, -tenants, -session-events, -copy-batch, -writer-batch and -max-duration must be positive")
	}
	c.cases = map[string]bool{}
	for _, name := range strings.Split(*cases, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(allCases, name) {
			return c, fmt.Errorf("unknown case %q (want some of %s)", name, strings.Join(allCases, ","))
		}
		c.cases[name] = true
	}
	return c, nil
}

// result is one row of the table. A row with label is a baseline that rows
// naming it in ref are compared against.
type result struct {
	what   string
	events int64
	dur    time.Duration
	label  string
	ref    string
	note   string
}

func (r result) rate() float64 { return float64(r.events) / r.dur.Seconds() }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "ledgerbench: "+format+"\n", a...) }
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	db, err := createDatabase(ctx, cfg.db)
	if err != nil {
		return err
	}
	logf("created database %s", db.name)
	defer func() {
		if derr := db.drop(); derr != nil && err == nil {
			err = derr
		}
	}()

	pool, err := postgres.Open(ctx, db.url)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		return err
	}
	server, err := serverInfo(ctx, pool)
	if err != nil {
		return err
	}

	// The baselines get a connection per goroutine; the ledger uses the pool
	// postgres.Open configures, as vigil does.
	bcfg, err := pgxpool.ParseConfig(db.url)
	if err != nil {
		return err
	}
	bcfg.MaxConns = int32(cfg.concurrency)
	bpool, err := pgxpool.NewWithConfig(ctx, bcfg)
	if err != nil {
		return err
	}
	defer bpool.Close()

	// Build every workload first, so that neither the timings nor the CPU
	// profile include making events.
	logf("generating workloads")
	rng := mrand.New(mrand.NewPCG(1, 2))
	var rows [][]any
	if cfg.cases["copy"] || cfg.cases["insert"] || cfg.cases["copy-1w"] {
		sessions, err := genSessions(cfg.events, cfg.sessionEvents, cfg.tenants, rng)
		if err != nil {
			return err
		}
		rows = baselineRows(sessions)
	}
	appendSessions := map[int][]*session{}
	for _, batch := range []int{1, 10, 100} {
		if cfg.cases[fmt.Sprintf("append%d", batch)] {
			if appendSessions[batch], err = genSessions(cfg.events, cfg.sessionEvents, cfg.tenants, rng); err != nil {
				return err
			}
		}
	}

	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	var results []result
	var details []string
	measure := func(name string, total int, fn func(deadline time.Time, tick func(int64)) (int64, time.Duration, error)) (int64, time.Duration, error) {
		logf("%s: %d events, at most %s", name, total, cfg.maxDuration)
		tick, stop := progress(stderr, name, time.Now())
		n, d, err := fn(time.Now().Add(cfg.maxDuration), tick)
		stop()
		if err != nil {
			return n, d, fmt.Errorf("%s: %w", name, err)
		}
		logf("%s: %d events in %.2f s, %.0f events/s", name, n, d.Seconds(), float64(n)/d.Seconds())
		return n, d, ctx.Err()
	}

	// Baselines.
	if cfg.cases["copy"] {
		n, d, err := measure("baseline copy", len(rows), func(dl time.Time, tick func(int64)) (int64, time.Duration, error) {
			return copyBaseline(ctx, bpool, rows, cfg.concurrency, cfg.copyBatch, dl, tick)
		})
		if err != nil {
			return err
		}
		results = append(results, result{what: fmt.Sprintf("B1 baseline: raw COPY, %d goroutines × %d rows/tx", cfg.concurrency, cfg.copyBatch), events: n, dur: d, label: "B1"})
	}
	if cfg.cases["copy-1w"] {
		n, d, err := measure("baseline copy single writer", len(rows), func(dl time.Time, tick func(int64)) (int64, time.Duration, error) {
			return copyBaseline(ctx, bpool, rows, 1, cfg.writerBatch, dl, tick)
		})
		if err != nil {
			return err
		}
		results = append(results, result{what: fmt.Sprintf("B3 baseline: raw COPY, 1 writer × %d rows/tx (the ledger's writer shape)", cfg.writerBatch), events: n, dur: d, label: "B3", ref: "B1"})
	}
	if cfg.cases["insert"] {
		n, d, err := measure("baseline insert", len(rows), func(dl time.Time, tick func(int64)) (int64, time.Duration, error) {
			return insertBaseline(ctx, bpool, rows, cfg.concurrency, dl, tick)
		})
		if err != nil {
			return err
		}
		results = append(results, result{what: fmt.Sprintf("B2 baseline: raw single-row INSERT per tx, %d goroutines", cfg.concurrency), events: n, dur: d, label: "B2", ref: "B1"})
	}

	// Ledger appends, all into one ledger, whose log Verify then checks.
	var (
		appendRates []result
		verifiers   note.Verifiers
	)
	var traces []func(io.Writer)
	if cfg.cases["append1"] || cfg.cases["append10"] || cfg.cases["append100"] {
		// With -trace, the ledger gets its own pool, configured as
		// postgres.Open configured the first one, plus the tracer.
		lpool := pool
		var tracer *sqlTracer
		if cfg.trace {
			tracer = newSQLTracer()
			pc := pool.Config()
			pc.ConnConfig.Tracer = queryTracer{tracer}
			if lpool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
				return err
			}
			defer lpool.Close()
		}
		st := postgres.NewStore(lpool, postgres.Options{Logger: logger, AsyncCommit: cfg.asyncCommit})
		defer st.Close()
		bl, err := startLedger(ctx, st, logger)
		if err != nil {
			return err
		}
		verifiers = note.VerifierList(bl.verifier)
		for _, batch := range []int{1, 10, 100} {
			if !cfg.cases[fmt.Sprintf("append%d", batch)] {
				continue
			}
			sessions := appendSessions[batch]
			before := bl.store.snapshot()
			bl.store.maxCommit.Store(0)
			scansBefore, err := tableScans(ctx, pool)
			if err != nil {
				_ = bl.close()
				return err
			}
			if tracer != nil {
				tracer.reset()
			}
			acquireBefore := lpool.Stat()
			n, d, err := measure(fmt.Sprintf("ledger.Append batch %d", batch), cfg.events, func(dl time.Time, tick func(int64)) (int64, time.Duration, error) {
				return appendCase(ctx, bl.ledger, sessions, cfg.concurrency, batch, dl, tick)
			})
			if err != nil {
				_ = bl.close()
				return err
			}
			s := bl.store.snapshot().sub(before)
			ways := st.CommitStats()
			logf("ledger.Append batch %d: commits so far: %d in one round trip, %d refused and redone, %d the reading way", batch, ways.Fast, ways.Fallbacks, ways.Reading)
			acquireAfter := lpool.Stat()
			if tracer != nil {
				title := fmt.Sprintf("Statements during ledger.Append, %d events/call (%d commits; %d of %d connection acquires waited for a free connection of %d, %.2f s in all):",
					batch, s.commits, acquireAfter.EmptyAcquireCount()-acquireBefore.EmptyAcquireCount(), acquireAfter.AcquireCount()-acquireBefore.AcquireCount(),
					acquireAfter.MaxConns(), (acquireAfter.EmptyAcquireWaitTime() - acquireBefore.EmptyAcquireWaitTime()).Seconds())
				stats := tracer.reset()
				traces = append(traces, func(w io.Writer) { printSQLStats(w, title, stats, s.commits) })
			}
			scansAfter, err := tableScans(ctx, pool)
			if err != nil {
				_ = bl.close()
				return err
			}
			scans := scansAfter.sub(scansBefore)
			r := result{what: fmt.Sprintf("ledger.Append, %d callers × %d events/call", cfg.concurrency, batch), events: n, dur: d, ref: "B1"}
			results = append(results, r)
			appendRates = append(appendRates, r)
			if s.commits > 0 {
				details = append(details, fmt.Sprintf("| %d | %d | %.1f | %.1f | %.2f | %.2f | %.0f%% | %d | %d | %d | %d |",
					batch, s.commits, float64(s.reqs)/float64(s.commits), float64(s.events)/float64(s.commits),
					float64(s.nanos)/float64(s.commits)/1e6, float64(bl.store.maxCommit.Load())/1e6,
					100*float64(s.nanos)/float64(d), s.keyLookups, s.keyCreates, scans.seqScans, scans.seqRows))
			}
		}
		logf("closing the ledger (final checkpoints)")
		if err := bl.close(); err != nil {
			return err
		}
	}

	// Verify.
	var verifyRate float64
	if cfg.cases["verify"] {
		if verifiers == nil {
			logf("verify: no append case ran; verifying an empty log")
		}
		st := postgres.NewStore(pool, postgres.Options{Logger: logger})
		defer st.Close()
		logf("ledger.Verify")
		rep, err := ledger.Verify(ctx, st, ledger.VerifyOptions{Verifiers: verifiers, Origin: benchOrigin})
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		logf("ledger.Verify: %d events, %d hashes, %d checkpoints in %.2f s", rep.Events, rep.Hashes, rep.Checkpoints, rep.Duration.Seconds())
		scanned, scan, err := scanLeaves(ctx, st)
		if err != nil {
			return err
		}
		lv, err := loadLeaves(ctx, st)
		if err != nil {
			return err
		}
		if int64(lv.n()) != scanned {
			return fmt.Errorf("two scans of the log found %d and %d events", scanned, lv.n())
		}
		if int64(lv.n()) != rep.Events {
			return fmt.Errorf("verify checked %d events, the scan found %d", rep.Events, lv.n())
		}
		n := int64(lv.n())
		if n > 0 {
			results = append(results,
				result{what: "H: crypto/sha256 over the leaf encodings in memory, 1 goroutine", events: n, dur: rawSHA256(lv), label: "H",
					note: fmt.Sprintf("%.0f bytes/leaf", float64(len(lv.arena))/float64(n))},
				result{what: "leaf hash + Merkle frontier in memory (Verify's hashing, no I/O)", events: n, dur: merkleCompute(lv), ref: "H"},
				result{what: "store.ScanLog + ledger.AppendLeaf (Verify's reading, no hashing)", events: n, dur: scan, ref: "H"},
				result{what: fmt.Sprintf("ledger.Verify (%d tenants, %d checkpoints)", rep.Tenants, rep.Checkpoints), events: rep.Events, dur: rep.Duration, ref: "H"},
			)
			verifyRate = float64(rep.Events) / rep.Duration.Seconds()
		}
	}

	printReport(stdout, cfg, server, results, details, appendRates, verifyRate)
	for _, t := range traces {
		t(stdout)
	}
	return nil
}

func printReport(w io.Writer, cfg config, server string, results []result, details []string, appends []result, verifyRate float64) {
	fmt.Fprintf(w, "Go %s %s/%s, GOMAXPROCS=%d, %d CPUs; %s\n\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU(), server)
	fmt.Fprintf(w, "`go run ./bench/ledgerbench -events %d -concurrency %d -tenants %d` (%d chat events per session, at most %s per measurement)\n\n",
		cfg.events, cfg.concurrency, cfg.tenants, cfg.sessionEvents, cfg.maxDuration)
	labels := map[string]result{}
	for _, r := range results {
		if r.label != "" {
			labels[r.label] = r
		}
	}
	fmt.Fprintln(w, "| what | events | seconds | events/s | ratio vs baseline |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|")
	for _, r := range results {
		what := r.what
		if r.note != "" {
			what += " (" + r.note + ")"
		}
		ratio := "—"
		switch {
		case r.label != "" && r.ref == "":
			ratio = "1.00 (" + r.label + ")"
		case r.ref != "":
			if b, ok := labels[r.ref]; ok {
				ratio = fmt.Sprintf("%.3f of %s", r.rate()/b.rate(), r.ref)
			}
		}
		fmt.Fprintf(w, "| %s | %d | %.2f | %s | %s |\n", what, r.events, r.dur.Seconds(), thousands(r.rate()), ratio)
	}
	if len(details) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Group commit (the ledger's single writer, measured around Store.Commit):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| events/call | commits | requests/commit | events/commit | mean commit ms | max commit ms | writer busy | key lookups | key creates | seq scans of events | rows read by them |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, d := range details {
			fmt.Fprintln(w, d)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Goals:")
	fmt.Fprintln(w)
	for _, r := range appends {
		fmt.Fprintf(w, "- append ≥ 30,000 events/s with %d callers, %s: %s events/s, %s\n", cfg.concurrency, strings.TrimPrefix(r.what, fmt.Sprintf("ledger.Append, %d callers × ", cfg.concurrency)), thousands(r.rate()), met(r.rate() >= 30000))
	}
	// Issue 15: single-event appends at least twice raw single-row
	// INSERTs at the same concurrency, in the same run.
	for _, b := range results {
		if b.label != "B2" {
			continue
		}
		for _, r := range appends {
			if strings.HasSuffix(r.what, "× 1 events/call") {
				fmt.Fprintf(w, "- single-event appends ≥ 2× raw single-row INSERTs (B2) at %d callers: %.2f×, %s\n", cfg.concurrency, r.rate()/b.rate(), met(r.rate() >= 2*b.rate()))
			}
		}
	}
	if verifyRate > 0 {
		fmt.Fprintf(w, "- verify ≥ 200,000 events/s: %s events/s, %s\n", thousands(verifyRate), met(verifyRate >= 200000))
	}
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// thousands formats f rounded, with comma separators.
func thousands(f float64) string {
	s := fmt.Sprintf("%.0f", f)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// progress returns a tick function that records the events done so far and
// a stop function; in between, a line goes to w every five seconds.
func progress(w io.Writer, name string, start time.Time) (func(int64), func()) {
	var done atomic.Int64
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				n := done.Load()
				fmt.Fprintf(w, "ledgerbench: %s: %d events, %.0f/s\n", name, n, float64(n)/time.Since(start).Seconds())
			case <-stop:
				return
			}
		}
	}()
	return func(n int64) { done.Store(n) }, func() { close(stop); <-finished }
}

// scans counts sequential scans of the events table (pg_stat_user_tables),
// which an append path should never need.
type scans struct{ seqScans, seqRows int64 }

func (a scans) sub(b scans) scans { return scans{a.seqScans - b.seqScans, a.seqRows - b.seqRows} }

func tableScans(ctx context.Context, pool *pgxpool.Pool) (scans, error) {
	var s scans
	// Backends flush their statistics about once a second; wait for that.
	time.Sleep(1100 * time.Millisecond)
	err := pool.QueryRow(ctx, `SELECT coalesce(seq_scan, 0), coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = 'events'`).Scan(&s.seqScans, &s.seqRows)
	if err != nil {
		return s, fmt.Errorf("table statistics: %w", err)
	}
	return s, nil
}

func serverInfo(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var version, syncCommit, fsync, sharedBuffers string
	err := pool.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('synchronous_commit'),
		current_setting('fsync'), current_setting('shared_buffers')`).Scan(&version, &syncCommit, &fsync, &sharedBuffers)
	if err != nil {
		return "", fmt.Errorf("server settings: %w", err)
	}
	return fmt.Sprintf("PostgreSQL %s (synchronous_commit=%s, fsync=%s, shared_buffers=%s)", version, syncCommit, fsync, sharedBuffers), nil
}

// database is the run's scratch database.
type database struct {
	name  string
	url   string
	admin *pgx.ConnConfig
}

// createDatabase creates a randomly named database on the server of
// serverURL and returns it; drop removes it. It is pgtest.New without
// testing.TB.
func createDatabase(ctx context.Context, serverURL string) (*database, error) {
	raw := make([]byte, 6)
	_, _ = crand.Read(raw)
	name := "vigil_bench_" + hex.EncodeToString(raw)
	cfg, err := pgx.ParseConfig(serverURL)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	admin, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Host, err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if _, err := admin.Exec(cctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	u.Path = "/" + name
	return &database{name: name, url: u.String(), admin: cfg}, nil
}

// drop drops the database, closing any connection still open to it.
func (d *database) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.ConnectConfig(ctx, d.admin)
	if err != nil {
		return fmt.Errorf("drop %s: %w", d.name, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop %s: %w", d.name, err)
	}
	return nil
}
