// Command webhookbench measures the webhook deliveries of docs/performance.md
// (issue 8): deliveries per second to one local receiver, and the time from
// commit to delivery at a sustained append rate. The receiver is an
// httptest server on loopback (allowed with the allow-CIDR 127.0.0.1/32,
// as VIGIL_WEBHOOK_ALLOW_CIDRS allows it); the fan-out and the deliverer are
// the production ones (webhooks.Fanout under a projections.Runner,
// webhooks.Deliverer with adapters/webhook). It creates and drops its own
// database.
//
//	go run ./bench/webhookbench [-n 20000] [-rate 1000] [-probe 20s]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/adapters/webhook"
	"github.com/vigilhq/vigil/bench/internal/stack"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/projections"
	"github.com/vigilhq/vigil/webhooks"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "webhookbench:", err)
		os.Exit(1)
	}
}

const tenant = "bench"

// receiver counts deliveries and records when each event first arrived.
type receiver struct {
	srv   *httptest.Server
	n     atomic.Int64
	mu    sync.Mutex
	first map[string]time.Time // event id -> first receipt
}

func newReceiver() *receiver {
	rc := &receiver{first: map[string]time.Time{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		at := time.Now()
		var p struct {
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &p)
		rc.mu.Lock()
		if _, ok := rc.first[p.Data.ID]; !ok {
			rc.first[p.Data.ID] = at
		}
		rc.mu.Unlock()
		rc.n.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	return rc
}

func run() error {
	server := flag.String("db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server URL")
	n := flag.Int("n", 20000, "events delivered in the throughput measurement")
	rate := flag.Int("rate", 1000, "events/s appended during the latency measurement")
	probe := flag.Duration("probe", 20*time.Second, "how long to append at that rate")
	workers := flag.Int("workers", 64, "deliverer workers (and requests at once to the one endpoint)")
	flag.Parse()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	s, err := stack.Open(ctx, *server, "webhookbench", logger)
	if err != nil {
		return err
	}
	defer s.Close()
	pool, st, l := s.Pool, s.Store, s.Ledger
	st.Listen()

	cfg := webhooks.Config{Pool: pool, Ledger: l, Logger: logger}
	svc := webhooks.NewService(cfg)
	p := service.Principal{Tenant: tenant, Role: service.RoleIntegration, CredentialID: "bench"}
	opts := webhooks.DelivererOptions{Workers: *workers, PerEndpoint: *workers, Rate: 1e6, Timeout: 10 * time.Second}
	sender := webhook.New(webhook.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, MaxIdlePerHost: *workers})

	var pgVersion string
	_ = pool.QueryRow(ctx, "SHOW server_version").Scan(&pgVersion)
	fmt.Printf("Go %s, GOMAXPROCS=%d; PostgreSQL %s\n\n", runtime.Version(), runtime.GOMAXPROCS(0), pgVersion)
	fmt.Printf("`go run ./bench/webhookbench -n %d -rate %d -probe %s -workers %d`\n\n", *n, *rate, *probe, *workers)

	// 1. Throughput: n deliveries queued, then one deliverer sends them.
	rc := newReceiver()
	defer rc.srv.Close()
	if _, err := svc.Create(ctx, p, webhooks.NewSubscription{URL: rc.srv.URL, EventTypes: []string{"session.created"}}); err != nil {
		return err
	}
	if err := appendSessions(ctx, l, "tp", *n, 32); err != nil {
		return err
	}
	fan := webhooks.NewFanout(cfg)
	runner := projections.NewRunner(pool, st, projections.Options{Logger: logger}, fan)
	start := time.Now()
	if err := runner.CatchUp(ctx); err != nil {
		return err
	}
	fanD := time.Since(start)
	d := webhooks.NewDeliverer(cfg, sender, opts)
	dctx, stopD := context.WithCancel(ctx)
	ddone := make(chan struct{})
	start = time.Now()
	go func() { defer close(ddone); _ = d.Run(dctx) }()
	if err := waitDelivered(ctx, pool, int64(*n), 5*time.Minute); err != nil {
		stopD()
		return err
	}
	sendD := time.Since(start)
	stopD()
	<-ddone
	fmt.Println("| measurement | value | goal |")
	fmt.Println("|---|---:|---|")
	fmt.Printf("| fan-out of %d committed events into deliveries (one runner batch loop) | %.0f events/s | |\n", *n, float64(*n)/fanD.Seconds())
	fmt.Printf("| deliveries/s to one local receiver (%d queued, %d workers, signed, each recorded in the log) | **%.0f** | ≥ 2,000 |\n",
		*n, *workers, float64(*n)/sendD.Seconds())

	// 2. Latency at a sustained rate: fan-out and deliverer follow the log.
	if _, err := pool.Exec(ctx, `DELETE FROM webhook_deliveries`); err != nil {
		return err
	}
	rc2 := newReceiver()
	defer rc2.srv.Close()
	if _, err := pool.Exec(ctx, `UPDATE webhook_subscriptions SET state = 'disabled'`); err != nil {
		return err
	}
	if _, err := svc.Create(ctx, p, webhooks.NewSubscription{URL: rc2.srv.URL, EventTypes: []string{"session.created"}}); err != nil {
		return err
	}
	d2 := webhooks.NewDeliverer(cfg, sender, opts)
	fan2 := webhooks.NewFanout(cfg)
	fan2.Wake = d2.Wake
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = projections.NewRunner(pool, st, projections.Options{Logger: logger}, fan2).Run(rctx)
	}()
	go func() { defer wg.Done(); _ = d2.Run(rctx) }()
	acks, achieved, err := sustained(ctx, l, *rate, *probe)
	if err != nil {
		stop()
		wg.Wait()
		return err
	}
	end := time.Now().Add(2 * time.Minute)
	for {
		rc2.mu.Lock()
		got := len(rc2.first)
		rc2.mu.Unlock()
		if got >= len(acks) || time.Now().After(end) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	wg.Wait()
	var lat []time.Duration
	missing := 0
	rc2.mu.Lock()
	for id, ack := range acks {
		at, ok := rc2.first[id]
		if !ok {
			missing++
			continue
		}
		lat = append(lat, max(at.Sub(ack), 0))
	}
	rc2.mu.Unlock()
	slices.Sort(lat)
	if len(lat) == 0 {
		return fmt.Errorf("nothing delivered in the latency measurement")
	}
	q := func(f float64) time.Duration { return lat[min(int(f*float64(len(lat))), len(lat)-1)] }
	fmt.Printf("| appends at a sustained rate (one session.created per append, %s) | %.0f events/s (%d events) | 1,000 events/s |\n", *probe, achieved, len(acks))
	fmt.Printf("| commit → delivery p50 (receipt − append acknowledgement) | %.1f ms | |\n", ms(q(0.50)))
	fmt.Printf("| commit → delivery p99 | **%.1f ms** | < 500 ms |\n", ms(q(0.99)))
	fmt.Printf("| commit → delivery max | %.1f ms | |\n", ms(lat[len(lat)-1]))
	fmt.Printf("| events not delivered within 2 min of the last append | %d | 0 |\n", missing)
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func created(guid string) (domain.Event, error) {
	return domain.NewEvent(domain.Meta{Tenant: tenant, Stream: domain.SessionStream(guid), Actor: domain.Actor{Kind: domain.ActorSystem, ID: "bench"}},
		domain.SessionCreated{GUID: guid, PIN: "123456", Queue: "general", GroupID: "g1"})
}

// appendSessions appends n session.created events with callers goroutines.
func appendSessions(ctx context.Context, l *ledger.Ledger, prefix string, n, callers int) error {
	var wg sync.WaitGroup
	errc := make(chan error, callers)
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += callers {
				ev, err := created(fmt.Sprintf("%s-%07d", prefix, i))
				if err == nil {
					_, err = l.Append(ctx, ev.Stream, ledger.NoStream, ev)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// sustained appends one event per tick at rate for d and returns each
// event's acknowledgement time by event id, and the rate achieved.
func sustained(ctx context.Context, l *ledger.Ledger, rate int, d time.Duration) (map[string]time.Time, float64, error) {
	var mu sync.Mutex
	acks := map[string]time.Time{}
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	// Paced by the clock, not by a ticker: a 1 ms ticker drifts below the
	// rate, so each pass appends the events due since the start.
	start := time.Now()
	for i := 0; time.Since(start) < d; i++ {
		for float64(i) >= time.Since(start).Seconds()*float64(rate) {
			time.Sleep(200 * time.Microsecond)
		}
		ev, err := created(fmt.Sprintf("lat-%07d", i))
		if err != nil {
			return nil, 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := l.Append(ctx, ev.Stream, ledger.NoStream, ev)
			at := time.Now()
			if err != nil {
				select {
				case errc <- err:
				default:
				}
				return
			}
			mu.Lock()
			acks[out[0].ID.String()] = at
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	select {
	case err := <-errc:
		return nil, 0, err
	default:
	}
	return acks, float64(len(acks)) / el.Seconds(), nil
}

func waitDelivered(ctx context.Context, pool *pgxpool.Pool, n int64, limit time.Duration) error {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		var done int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'`).Scan(&done); err != nil {
			return err
		}
		if done >= n {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not every delivery done within %s", limit)
}
