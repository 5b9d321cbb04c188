// Command consolebench measures the server time of the web console's pages
// (api/console) over a log of a million events, for docs/performance.md: it
// writes the log through the ledger (the sessions of bench/internal/gen),
// rebuilds the projections, signs in to the console over HTTPS as an admin
// and loads each page n times one after another, timing each request on
// the server from the session check to the last byte rendered. It creates
// and drops its own database.
//
//	go run ./bench/consolebench [-events 1000000] [-n 50]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vigilhq/vigil/api/console"
	"github.com/vigilhq/vigil/bench/internal/gen"
	"github.com/vigilhq/vigil/bench/internal/stack"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/projections"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "consolebench:", err)
		os.Exit(1)
	}
}

func run() error {
	server := flag.String("db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server URL")
	events := flag.Int("events", 1000000, "events to write")
	n := flag.Int("n", 50, "requests per page")
	tenants := flag.Int("tenants", 3, "tenants")
	flag.Parse()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	s, err := stack.Open(ctx, *server, "consolebench", logger)
	if err != nil {
		return err
	}
	defer s.Close()
	var pgVersion string
	_ = s.Pool.QueryRow(ctx, "SHOW server_version").Scan(&pgVersion)
	fmt.Printf("Go %s, GOMAXPROCS=%d; PostgreSQL %s\n\n", runtime.Version(), runtime.GOMAXPROCS(0), pgVersion)
	fmt.Printf("`go run ./bench/consolebench -events %d -n %d`\n\n", *events, *n)

	start := time.Now()
	written, err := gen.WriteSessions(ctx, s.Ledger, *events, *tenants, 32)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %d events in %s\n", written, time.Since(start).Round(time.Second))
	runner := projections.NewRunner(s.Pool, s.Store, projections.Options{Logger: logger}, projections.NewReporting(s.Sealer), projections.NewSubjects())
	for _, p := range runner.Projections() {
		if _, err := runner.Rebuild(ctx, p, nil); err != nil {
			return err
		}
	}
	if err := s.Ledger.CheckpointAll(ctx); err != nil {
		return err
	}
	var sessions int
	_ = s.Pool.QueryRow(ctx, "SELECT count(*) FROM rpt_sessions WHERE tenant = 'tenant-0'").Scan(&sessions)
	fmt.Printf("%d events in the log; tenant-0 has %d sessions.\n\n", written, sessions)

	// The console of tenant-0, signed in with an admin key.
	if err := s.Store.CreateTenant(ctx, service.TenantRecord{ID: "tenant-0", Name: "Bench", Region: "eu"}); err != nil {
		return err
	}
	svc := service.New(service.Config{Log: s.Ledger, Identity: s.Store, Idempotency: s.Store, Activity: s.Store, Crypto: s.Sealer, Region: "eu"})
	_, key, err := svc.CreateAPIKey(ctx, "tenant-0", service.RoleAdmin, "bench")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	times := map[string][]time.Duration{}
	c, err := console.New(console.Options{Service: svc, Sessions: s.Store, Directory: s.Store, Reports: s.Store, Opener: s.Sealer,
		Index: s.Sealer, Log: s.Ledger, Audit: compliance.NewAuditor(s.Ledger), Logger: logger,
		Timing: func(page string, d time.Duration) {
			mu.Lock()
			times[page] = append(times[page], d)
			mu.Unlock()
		}})
	if err != nil {
		return err
	}
	srv := httptest.NewTLSServer(c)
	defer srv.Close()
	client := srv.Client()
	client.Jar, _ = cookiejar.New(nil)
	if err := signIn(client, srv.URL, key); err != nil {
		return err
	}

	var guid, tech, eventID string
	if err := s.Pool.QueryRow(ctx, `SELECT guid, technician_id FROM rpt_sessions WHERE tenant = 'tenant-0' ORDER BY created_at DESC OFFSET $1 LIMIT 1`, sessions/2).Scan(&guid, &tech); err != nil {
		return err
	}
	if err := s.Pool.QueryRow(ctx, `SELECT id::text FROM events WHERE tenant = 'tenant-0' AND stream = $1 ORDER BY version LIMIT 1`, "session-"+guid).Scan(&eventID); err != nil {
		return err
	}
	// gen gives session i the customer grace<i>@example.com, tenant i%tenants.
	email := fmt.Sprintf("grace%d@example.com", 3*(sessions/2))
	page2, err := nextLink(client, srv.URL+"/console/sessions")
	if err != nil {
		return err
	}
	pages := []struct{ name, path string }{
		{"sessions", "/console/sessions"},
		{"sessions", "/console/sessions?" + url.Values{"technician": {tech}, "status": {"closed"}}.Encode()},
		{"sessions", "/console/sessions?" + url.Values{"email": {email}}.Encode()},
		{"sessions", page2},
		{"session", "/console/sessions/" + guid},
		{"sessions.csv", "/console/sessions.csv?" + url.Values{"technician": {tech}, "from": {"2026-01-01"}, "to": {"2026-01-02"}}.Encode()},
		{"logins", "/console/logins"},
		{"performance", "/console/performance?from=2026-01-01&to=2026-01-31"},
		{"charts", "/console/charts"},
		{"audit", "/console/audit"},
		{"audit.proof", "/console/audit/proof?event=" + eventID},
		{"admin", "/console/admin/groups"},
	}
	fmt.Println("| page | request | n | p50 | p99 | max |")
	fmt.Println("|---|---|---:|---:|---:|---:|")
	for _, p := range pages {
		mu.Lock()
		times = map[string][]time.Duration{}
		mu.Unlock()
		for i := 0; i < *n; i++ {
			res, err := client.Get(srv.URL + p.path)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				return fmt.Errorf("GET %s: %s", p.path, res.Status)
			}
		}
		mu.Lock()
		lat := times[p.name]
		if p.name == "admin" {
			lat = times["groups"]
		}
		mu.Unlock()
		slices.Sort(lat)
		pct := func(q float64) time.Duration {
			if len(lat) == 0 {
				return 0
			}
			return lat[int(math.Ceil(q*float64(len(lat))))-1]
		}
		shown := p.path
		if len(shown) > 70 {
			shown = shown[:70] + "…"
		}
		fmt.Printf("| %s | `%s` | %d | %s | %s | %s |\n", p.name, shown, len(lat), round(pct(0.5)), round(pct(0.99)), round(pct(1)))
	}
	return nil
}

func round(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn posts the API key form as a browser would.
func signIn(client *http.Client, base, key string) error {
	res, err := client.Get(base + "/console/login")
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := csrfField.FindSubmatch(body)
	if m == nil {
		return fmt.Errorf("no CSRF token on the sign-in page")
	}
	form := url.Values{"csrf": {string(m[1])}, "form": {"key"}, "api_key": {key}, "next": {"/console/"}}
	req, _ := http.NewRequest("POST", base+"/console/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	if res, err = client.Do(req); err != nil {
		return err
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), `aria-label="Main"`) {
		return fmt.Errorf("sign-in refused: %s", res.Status)
	}
	return nil
}

var nextHref = regexp.MustCompile(`href="([^"]+)" id="next"`)

func nextLink(client *http.Client, u string) (string, error) {
	res, err := client.Get(u)
	if err != nil {
		return "", err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := nextHref.FindSubmatch(body)
	if m == nil {
		return "", fmt.Errorf("no next page on %s", u)
	}
	return strings.ReplaceAll(string(m[1]), "&amp;", "&"), nil
}
