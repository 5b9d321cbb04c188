// Command projbench measures the projections of docs/performance.md: it
// writes a realistic log through the ledger (sessions of about 25 events
// with sealed chat, files, consents, actions), then measures the rebuild
// rate of every projection, and the time from commit to projection while
// the log grows at a sustained rate. It creates and drops its own
// database.
//
//	go run ./bench/projbench [-events 1000000] [-rate 5000] [-probe 20s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/adapters/postgres"
	gql "github.com/vigilhq/vigil/api/graphql"
	"github.com/vigilhq/vigil/bench/internal/gen"
	"github.com/vigilhq/vigil/bench/internal/stack"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/projections"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "projbench:", err)
		os.Exit(1)
	}
}

func run() error {
	server := flag.String("db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server URL")
	events := flag.Int("events", 1000000, "events to write before the rebuild")
	rate := flag.Int("rate", 5000, "events/s appended during the lag measurement")
	probe := flag.Duration("probe", 20*time.Second, "how long to measure lag at that rate")
	tenants := flag.Int("tenants", 3, "tenants")
	clients := flag.Int("clients", 16, "concurrent GraphQL clients")
	queryFor := flag.Duration("query", 10*time.Second, "how long each query is measured")
	flag.Parse()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	s, err := stack.Open(ctx, *server, "projbench", logger)
	if err != nil {
		return err
	}
	defer s.Close()
	pool, st, sealer, l := s.Pool, s.Store, s.Sealer, s.Ledger
	runner := projections.NewRunner(pool, st, projections.Options{Logger: logger}, projections.NewReporting(sealer), projections.NewSubjects())

	var pgVersion string
	_ = pool.QueryRow(ctx, "SHOW server_version").Scan(&pgVersion)
	fmt.Printf("Go %s, GOMAXPROCS=%d; PostgreSQL %s\n\n", runtime.Version(), runtime.GOMAXPROCS(0), pgVersion)
	fmt.Printf("`go run ./bench/projbench -events %d -rate %d -probe %s`\n\n", *events, *rate, *probe)

	// 1. The log.
	start := time.Now()
	n, err := gen.WriteSessions(ctx, l, *events, *tenants, 32)
	if err != nil {
		return err
	}
	d := time.Since(start)
	fmt.Fprintf(os.Stderr, "wrote %d events in %s\n", n, d)
	fmt.Println("| what | events | seconds | events/s |")
	fmt.Println("|---|---:|---:|---:|")
	fmt.Printf("| write the log through ledger.Append (32 callers, whole sessions per append) | %d | %.1f | %.0f |\n", n, d.Seconds(), float64(n)/d.Seconds())

	// 2. Rebuild each projection from 0.
	for _, p := range runner.Projections() {
		start := time.Now()
		done, err := runner.Rebuild(ctx, p, nil)
		if err != nil {
			return err
		}
		d := time.Since(start)
		fmt.Printf("| rebuild `%s` from position 0 | %d | %.1f | %.0f |\n", p.Name(), done, d.Seconds(), float64(done)/d.Seconds())
	}
	var sessions int
	_ = pool.QueryRow(ctx, "SELECT count(*) FROM rpt_sessions").Scan(&sessions)
	fmt.Printf("\n%d sessions in rpt_sessions.\n\n", sessions)

	// 3. GraphQL query latency under concurrent clients, over real HTTP.
	if err := queryLatency(ctx, st, l, sealer, *clients, *queryFor); err != nil {
		return err
	}

	// 4. Lag at a sustained rate: the runner follows the log while probes
	// measure the time from an append's acknowledgement to its projection.
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = runner.Run(rctx) }()
	lat, achieved, err := measureLag(ctx, l, pool, *rate, *probe, *tenants)
	stop()
	<-done
	if err != nil {
		return err
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(math.Ceil(p*float64(len(lat))))-1]
	}
	fmt.Println("| lag: commit → applied by both projections | probes | achieved events/s | p50 | p99 | max |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	fmt.Printf("| sustained ingest of %d events/s for %s | %d | %.0f | %s | %s | %s |\n", *rate, *probe, len(lat), achieved,
		pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), pct(1).Round(time.Millisecond))
	return nil
}

// measureLag appends sessions at rate events/s for d and, every 100 ms,
// measures how long the last acknowledged position takes to be applied by
// every projection.
func measureLag(ctx context.Context, l *ledger.Ledger, pool interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, rate int, d time.Duration, tenants int) ([]time.Duration, float64, error) {
	var (
		mu       sync.Mutex
		lastPos  int64
		lastAt   time.Time
		lat      []time.Duration
		written  atomic.Int64
		stopping atomic.Bool
	)
	perSession := 18
	interval := time.Duration(float64(time.Second) * float64(perSession) / float64(rate))
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	errc := make(chan error, 1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 10_000_000; !stopping.Load(); i++ {
			<-tick.C
			evs, err := gen.Session(fmt.Sprintf("tenant-%d", i%tenants), i)
			if err != nil {
				errc <- err
				return
			}
			go func() {
				out, err := l.Append(ctx, evs[0].Stream, ledger.NoStream, evs...)
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
				written.Add(int64(len(out)))
				mu.Lock()
				if p := out[len(out)-1].Position; p > lastPos {
					lastPos, lastAt = p, time.Now()
				}
				mu.Unlock()
			}()
		}
	}()
	for time.Since(start) < d {
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		pos, at := lastPos, lastAt
		mu.Unlock()
		if pos == 0 {
			continue
		}
		for {
			var min int64
			if err := pool.QueryRow(ctx, `SELECT coalesce(min(position), 0) FROM projection_positions`).Scan(&min); err != nil {
				return nil, 0, err
			}
			if min >= pos {
				lat = append(lat, time.Since(at))
				break
			}
			if time.Since(at) > 30*time.Second {
				return nil, 0, errors.New("projections fell more than 30 s behind")
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	stopping.Store(true)
	wg.Wait()
	select {
	case err := <-errc:
		return nil, 0, err
	default:
	}
	return lat, float64(written.Load()) / time.Since(start).Seconds(), nil
}

// queryLatency measures two GraphQL queries with clients concurrent HTTP
// clients: the sessions connection filtered by technician (first 50), and
// session(id) with its timeline lists.
func queryLatency(ctx context.Context, st *postgres.Store, l *ledger.Ledger, sealer *ledger.Sealer, clients int, d time.Duration) error {
	// tenant-0 needs an identity to authenticate against.
	if err := st.CreateTenant(ctx, service.TenantRecord{ID: "tenant-0", Name: "Bench", Region: "eu"}); err != nil {
		return err
	}
	svc := service.New(service.Config{Log: l, Identity: st, Idempotency: st, Activity: st, Crypto: sealer, Region: "eu"})
	_, key, err := svc.CreateAPIKey(ctx, "tenant-0", service.RoleAuditor, "bench")
	if err != nil {
		return err
	}
	gs, err := gql.New(gql.Config{Reports: st, Opener: sealer, Index: sealer, Auth: svc, Production: true})
	if err != nil {
		return err
	}
	srv := httptest.NewServer(gs.GraphQL())
	defer srv.Close()
	var ids []string
	rows, err := st.Pool().Query(ctx, `SELECT guid FROM rpt_sessions WHERE tenant = 'tenant-0' ORDER BY guid LIMIT 2000`)
	if err != nil {
		return err
	}
	if ids, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2}}
	queries := []struct {
		name string
		body func(i int) string
	}{
		{"`sessions(filter: {technicianId, status: closed}, first: 50)` with customer name and e-mail opened", func(i int) string {
			return fmt.Sprintf(`{"query":"{ sessions(filter: {technicianId: \"tech-%d\", status: \"closed\"}, first: 50) { edges { node { id status createdAt totalSeconds customerName customerEmail } } pageInfo { hasNextPage endCursor } } }"}`, i%50)
		}},
		{"`session(id)` with chat, files, consents, actions, notes", func(i int) string {
			return fmt.Sprintf(`{"query":"{ session(id: \"%s\") { id status customerName chat(first: 20) { sender text } files { name md5 } consents { kind action } actions { action consentEventId } notes { text } } }"}`, ids[i%len(ids)])
		}},
	}
	fmt.Printf("| GraphQL query, %d concurrent clients over HTTP | queries | queries/s | p50 | p99 | max |\n", clients)
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, q := range queries {
		var mu sync.Mutex
		var lat []time.Duration
		var failed atomic.Int64
		var n atomic.Int64
		start := time.Now()
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Since(start) < d {
					i := int(n.Add(1))
					req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL, strings.NewReader(q.body(i)))
					req.Header.Set("Authorization", "Bearer "+key)
					req.Header.Set("Content-Type", "application/json")
					t0 := time.Now()
					res, err := client.Do(req)
					if err != nil {
						failed.Add(1)
						continue
					}
					b, _ := io.ReadAll(res.Body)
					res.Body.Close()
					took := time.Since(t0)
					if res.StatusCode != 200 || strings.Contains(string(b), `"errors"`) {
						if failed.Add(1) == 1 {
							fmt.Fprintf(os.Stderr, "query failed: %d %s\n", res.StatusCode, b)
						}
						continue
					}
					mu.Lock()
					lat = append(lat, took)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		slices.Sort(lat)
		if len(lat) == 0 {
			return fmt.Errorf("every %s query failed", q.name)
		}
		pct := func(p float64) time.Duration { return lat[int(math.Ceil(p*float64(len(lat))))-1] }
		fmt.Printf("| %s | %d | %.0f | %s | %s | %s |\n", q.name, len(lat), float64(len(lat))/elapsed.Seconds(),
			pct(0.5).Round(100*time.Microsecond), pct(0.99).Round(100*time.Microsecond), pct(1).Round(100*time.Microsecond))
		if f := failed.Load(); f > 0 {
			fmt.Printf("\n%d queries failed.\n", f)
		}
	}
	fmt.Println()
	return nil
}
