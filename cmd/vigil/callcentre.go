package main

// The call-centre profile of vigil simulate (issue 15): N logged-in
// technicians, each issuing commands at Poisson times around a mean
// interval, open-loop, for a duration; the report states the sustained
// command rate, latency percentiles measured from each command's scheduled
// time, errors, the server's CPU and RSS and the database growth per
// session.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/schollz/progressbar/v3"
)

// splitProfile takes --profile NAME (or --profile=NAME, one dash or two)
// out of the simulate arguments.
func splitProfile(args []string) (profile string, rest []string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "profile" {
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return "", nil, errors.New("flag needs an argument: -profile")
			}
			i++
			val = args[i]
		}
		profile = val
	}
	return profile, rest, nil
}

// ccConfig is the command line of vigil simulate --profile callcentre.
type ccConfig struct {
	url, key, ingestKey string
	technicians         int
	duration            time.Duration
	interval            time.Duration // mean gap between one technician's commands
	groupSize           int
	connections         int
	setupConcurrency    int
	timeout             time.Duration
	seed                uint64
	quiet               bool
	serverPID           int
	databaseURL         string
	state               string
	setupOnly           bool
	breakChance         float64
	sharedShare         float64
}

func parseCallCentreFlags(args []string, env func(string) string, stderr io.Writer) (ccConfig, error) {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vigil simulate --profile callcentre --key ADMIN_KEY --ingest-key INGEST_KEY [--technicians N] [--duration D] [--interval I] [flags]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Models a call centre: N technicians log in, then each sends commands at Poisson times")
		fmt.Fprintln(stderr, "(mean gap --interval) through whole support sessions, open-loop, for --duration.")
		fmt.Fprintln(stderr, "Latency is measured from each command's scheduled time (no coordinated omission).")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	bad := func(format string, a ...any) (ccConfig, error) {
		fmt.Fprintf(stderr, "vigil simulate: "+format+"\n", a...)
		return ccConfig{}, errUsage
	}
	cfg := ccConfig{
		url: "http://127.0.0.1:8080", technicians: 100, duration: time.Minute, interval: 5 * time.Second,
		groupSize: 50, connections: 256, setupConcurrency: 4, timeout: 30 * time.Second,
		databaseURL: env("VIGIL_DATABASE_URL"), breakChance: 0.01, sharedShare: 0.2,
		key: env("VIGIL_SIMULATE_KEY"), ingestKey: env("VIGIL_SIMULATE_INGEST_KEY"),
	}
	if v := env("VIGIL_SIMULATE_URL"); v != "" {
		cfg.url = v
	} else if v, err := localAPIURL(env); err == nil {
		cfg.url = v
	}
	fs.StringVar(&cfg.url, "url", cfg.url, "base URL of the Vigil HTTP API (VIGIL_SIMULATE_URL)")
	fs.Func("key", "admin API key vk_… (VIGIL_SIMULATE_KEY); required", func(v string) error { cfg.key = v; return nil })
	fs.Func("ingest-key", "ingest API key vk_… for the customer side (VIGIL_SIMULATE_INGEST_KEY); required", func(v string) error { cfg.ingestKey = v; return nil })
	fs.IntVar(&cfg.technicians, "technicians", cfg.technicians, "logged-in technicians")
	fs.DurationVar(&cfg.duration, "duration", cfg.duration, "how long the load runs after the setup")
	fs.DurationVar(&cfg.interval, "interval", cfg.interval, "mean gap between two commands of one technician (the rate is technicians/interval)")
	fs.IntVar(&cfg.groupSize, "group-size", cfg.groupSize, "technicians per group (a shared queue is a group's)")
	fs.IntVar(&cfg.connections, "connections", cfg.connections, "most HTTP connections open to the server at once")
	fs.IntVar(&cfg.setupConcurrency, "setup-concurrency", cfg.setupConcurrency, "technicians created and logged in at once during the setup (each costs one scrypt on the server)")
	fs.DurationVar(&cfg.timeout, "timeout", cfg.timeout, "timeout of each HTTP request")
	fs.Uint64Var(&cfg.seed, "seed", cfg.seed, "seed of the scenario choices; 0 picks one")
	fs.BoolVar(&cfg.quiet, "quiet", cfg.quiet, "no progress line or setup messages on stderr")
	fs.IntVar(&cfg.serverPID, "server-pid", cfg.serverPID, "PID of the server, for its CPU and RSS; default: the process listening on --url's port, when it is local")
	fs.StringVar(&cfg.databaseURL, "database-url", cfg.databaseURL, "PostgreSQL URL of the server's database, for its growth per session (VIGIL_DATABASE_URL); empty: not measured")
	fs.StringVar(&cfg.state, "state", cfg.state, "JSON file of the created groups and technicians: read when it exists (no creation), written otherwise; it holds passwords")
	fs.BoolVar(&cfg.setupOnly, "setup-only", cfg.setupOnly, "create the technicians (and write --state), then stop")
	fs.Float64Var(&cfg.breakChance, "break-chance", cfg.breakChance, "chance that a technician goes idle after a session: logs out, pauses, logs in again")
	fs.Float64Var(&cfg.sharedShare, "shared", cfg.sharedShare, "share of sessions that arrive on the group's shared queue (the others are private)")
	if err := parseFlags(fs, args); err != nil {
		return ccConfig{}, err
	}
	u, err := url.Parse(cfg.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("--url %q: want http(s)://host[:port][/prefix]", cfg.url)
	}
	cfg.url = strings.TrimRight(u.String(), "/")
	switch {
	case !strings.HasPrefix(cfg.key, "vk_"):
		return bad("--key (VIGIL_SIMULATE_KEY) is required: an admin API key vk_…")
	case !strings.HasPrefix(cfg.ingestKey, "vk_"):
		return bad("--ingest-key (VIGIL_SIMULATE_INGEST_KEY) is required: an ingest API key vk_…")
	case cfg.technicians < 2:
		return bad("--technicians must be at least 2")
	case cfg.duration <= 0 || cfg.interval <= 0 || cfg.timeout <= 0:
		return bad("--duration, --interval and --timeout must be positive")
	case cfg.groupSize < 2:
		return bad("--group-size must be at least 2 (a transfer needs a colleague)")
	case cfg.connections < 1 || cfg.setupConcurrency < 1:
		return bad("--connections and --setup-concurrency must be at least 1")
	case cfg.breakChance < 0 || cfg.breakChance > 1 || cfg.sharedShare < 0 || cfg.sharedShare > 1:
		return bad("--break-chance and --shared are between 0 and 1")
	}
	return cfg, nil
}

func runCallCentre(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseCallCentreFlags(args, env, stderr)
	if err != nil {
		return err
	}
	if cfg.seed == 0 {
		cfg.seed = uint64(time.Now().UnixNano()) | 1
	}
	cc := &callCentre{cfg: cfg, stderr: stderr, c: newSimClient(cfg.url, cfg.connections, cfg.timeout)}
	cc.c.http.Transport.(*http.Transport).MaxConnsPerHost = cfg.connections
	cc.c.http.Transport.(*http.Transport).MaxIdleConnsPerHost = cfg.connections
	cc.c.http.Transport.(*http.Transport).MaxIdleConns = cfg.connections
	cc.runID = strconv.FormatUint(uint64(time.Now().UnixNano())&0xffffffff, 16)
	rep, err := cc.run(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return exitError{code: 130, msg: "simulate: interrupted during setup"}
		}
		return fmt.Errorf("simulate --profile callcentre: %w", err)
	}
	writeCallCentreReport(stdout, rep)
	switch {
	case rep.interrupted:
		return exitError{code: 130, msg: "simulate: interrupted"}
	case rep.errors > 0:
		return exitError{code: 1, msg: fmt.Sprintf("simulate: %d unexpected errors", rep.errors)}
	}
	return nil
}

type callCentre struct {
	cfg    ccConfig
	c      *simClient
	stderr io.Writer
	runID  string
	idem   atomic.Uint64

	groups []string
	techs  []*ccTech
	byGrp  [][]*ccTech
	srv    *procWatch

	cmds, logins ccRecorder
	sessions     atomic.Int64
	closed       atomic.Int64

	mu        sync.Mutex
	refusals  map[string]int
	errors    int
	firstErrs []string
}

// ccTech is one technician of the call centre. The token is swapped when
// he logs in again after a break, while colleagues may use it for a
// session transferred to him.
type ccTech struct {
	ID       string `json:"id"`
	Email    string `json:"email"`
	Password string `json:"password"`
	Group    int    `json:"group"`
	token    atomic.Pointer[string]

	// A technician goes on a break (logs out) only while no colleague's
	// session is being handed to him, and is handed none while away.
	mu      sync.Mutex
	away    bool
	holding int
}

// leave marks t away unless he holds a transferred session.
func (t *ccTech) leave() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.holding > 0 {
		return false
	}
	t.away = true
	return true
}

func (t *ccTech) back() {
	t.mu.Lock()
	t.away = false
	t.mu.Unlock()
}

// reserve counts a session about to be transferred to t, unless he is away.
func (t *ccTech) reserve() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.away {
		return false
	}
	t.holding++
	return true
}

func (t *ccTech) release() {
	t.mu.Lock()
	t.holding--
	t.mu.Unlock()
}

func (t *ccTech) tok() string { return *t.token.Load() }

type ccState struct {
	URL    string    `json:"url"`
	Groups []string  `json:"groups"`
	Techs  []*ccTech `json:"technicians"`
}

// ccRecorder keeps every latency of a kind, and those since the last
// progress tick.
type ccRecorder struct {
	mu     sync.Mutex
	all    []time.Duration
	window []time.Duration
}

func (r *ccRecorder) add(d time.Duration) {
	r.mu.Lock()
	r.all = append(r.all, d)
	r.window = append(r.window, d)
	r.mu.Unlock()
}

func (r *ccRecorder) takeWindow() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.window
	r.window = nil
	return w
}

func (r *ccRecorder) sorted() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := slices.Clone(r.all)
	slices.Sort(s)
	return s
}

type ccReport struct {
	cfg                       ccConfig
	groups, created           int
	createTime, loginTime     time.Duration
	rssBeforeLogin, rssLogged int64 // bytes; 0 when not measured
	elapsed                   time.Duration
	cmds, logins              []time.Duration
	sessions, closed          int64
	refusals                  map[string]int
	errors                    int
	firstErrs                 []string
	cpuSeconds                float64 // server CPU during the run
	rssEnd, rssPeak           int64
	dbBefore, dbAfter         int64
	projectionsCaughtUp       time.Duration // after the run; <0 when not seen
	interrupted               bool
}

func (cc *callCentre) logf(format string, a ...any) {
	if !cc.cfg.quiet {
		fmt.Fprintf(cc.stderr, "vigil simulate: "+format+"\n", a...)
	}
}

func (cc *callCentre) idemKey() string {
	return fmt.Sprintf("cc-%s-%d", cc.runID, cc.idem.Add(1))
}

func (cc *callCentre) unexpected(msg string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.errors++
	if len(cc.firstErrs) < simMaxErrors {
		cc.firstErrs = append(cc.firstErrs, msg)
	}
}

func (cc *callCentre) run(ctx context.Context) (ccReport, error) {
	rep := ccReport{cfg: cc.cfg, projectionsCaughtUp: -1}
	cc.refusals = map[string]int{}
	cc.srv = newProcWatch(cc.cfg.serverPID, cc.cfg.url)
	if cc.srv == nil {
		cc.logf("server process not found: no CPU or RSS figures (give --server-pid)")
	}

	// Setup, part 1: the groups and technicians, or those of --state.
	t0 := time.Now()
	created, err := cc.setupTechnicians(ctx)
	if err != nil {
		return rep, err
	}
	rep.created, rep.groups, rep.createTime = created, len(cc.groups), time.Since(t0)
	if cc.cfg.setupOnly {
		return rep, nil
	}

	// Setup, part 2: every technician logs in. The server's RSS before and
	// after tells the memory a logged-in technician costs.
	rep.rssBeforeLogin = cc.srv.rss()
	t0 = time.Now()
	if err := cc.forEachTech(ctx, "logins", func(t *ccTech) error { return cc.logIn(ctx, t, false) }); err != nil {
		return rep, err
	}
	rep.loginTime = time.Since(t0)
	time.Sleep(time.Second) // let the server's last requests settle
	rep.rssLogged = cc.srv.rss()
	rep.dbBefore = dbSize(ctx, cc.cfg.databaseURL)
	cc.logf("setup: %d groups, %d technicians (%d created in %s), logged in in %s; run %s (seed %d): %.0f commands/s for %s",
		len(cc.groups), len(cc.techs), created, rep.createTime.Round(time.Millisecond), rep.loginTime.Round(time.Millisecond),
		cc.runID, cc.cfg.seed, float64(len(cc.techs))/cc.cfg.interval.Seconds(), cc.cfg.duration)

	// The load.
	cpu0 := cc.srv.cpuSeconds()
	start := time.Now()
	end := start.Add(cc.cfg.duration)
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i, t := range cc.techs {
		wg.Go(func() { cc.console(runCtx, i, t, start, end) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	cc.progress(ctx, start, done)
	cancel()
	<-done
	rep.elapsed = time.Since(start)
	rep.cpuSeconds = cc.srv.cpuSeconds() - cpu0
	rep.rssEnd, rep.rssPeak = cc.srv.rss(), cc.srv.hwm()
	rep.interrupted = ctx.Err() != nil

	// The projections catch up (if /metrics says so) before the database
	// is measured.
	if !rep.interrupted {
		t0 = time.Now()
		if cc.waitProjections(ctx, 2*time.Minute) {
			rep.projectionsCaughtUp = time.Since(t0)
		}
		rep.dbAfter = dbSize(ctx, cc.cfg.databaseURL)
	}

	rep.cmds, rep.logins = cc.cmds.sorted(), cc.logins.sorted()
	rep.sessions, rep.closed = cc.sessions.Load(), cc.closed.Load()
	cc.mu.Lock()
	rep.refusals, rep.errors, rep.firstErrs = cc.refusals, cc.errors, cc.firstErrs
	cc.mu.Unlock()
	return rep, nil
}

// forEachTech runs f for every technician, setupConcurrency at a time,
// with a progress bar; it stops at the first error.
func (cc *callCentre) forEachTech(ctx context.Context, what string, f func(*ccTech) error) error {
	var bar *progressbar.ProgressBar
	if !cc.cfg.quiet {
		bar = progressbar.NewOptions(len(cc.techs), progressbar.OptionSetWriter(cc.stderr), progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(cc.stderr) }))
	}
	jobs := make(chan *ccTech)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range cc.cfg.setupConcurrency {
		wg.Go(func() {
			for t := range jobs {
				if err := f(t); err != nil {
					once.Do(func() { first = err; cancel() })
				}
				if bar != nil {
					_ = bar.Add(1)
				}
			}
		})
	}
feed:
	for _, t := range cc.techs {
		select {
		case jobs <- t:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// setupTechnicians reads --state, or creates the groups and technicians
// (and writes --state). It returns how many it created.
func (cc *callCentre) setupTechnicians(ctx context.Context) (int, error) {
	n := cc.cfg.technicians
	if cc.cfg.state != "" {
		b, err := os.ReadFile(cc.cfg.state)
		switch {
		case err == nil:
			var st ccState
			if err := json.Unmarshal(b, &st); err != nil {
				return 0, fmt.Errorf("--state %s: %w", cc.cfg.state, err)
			}
			if st.URL != cc.cfg.url || len(st.Techs) < n {
				return 0, fmt.Errorf("--state %s holds %d technicians of %s; want %d of %s (remove it to create new ones)", cc.cfg.state, len(st.Techs), st.URL, n, cc.cfg.url)
			}
			cc.groups = st.Groups
			cc.techs = st.Techs[:n]
			cc.index()
			return 0, nil
		case !errors.Is(err, os.ErrNotExist):
			return 0, err
		}
	}
	for g := range (n + cc.cfg.groupSize - 1) / cc.cfg.groupSize {
		grp, err := cc.c.createGroup(ctx, cc.cfg.key, cc.idemKey(), newSimGroup(fmt.Sprintf("callcentre %s team %d", cc.runID, g+1)))
		if err != nil {
			return 0, fmt.Errorf("create group: %w", err)
		}
		cc.groups = append(cc.groups, grp.ID)
	}
	for i := range n {
		cc.techs = append(cc.techs, &ccTech{
			Email:    fmt.Sprintf("cc-%s-%d@simulate.vigil.test", cc.runID, i+1),
			Password: simPassword(),
			Group:    i / cc.cfg.groupSize,
		})
	}
	cc.index()
	err := cc.forEachTech(ctx, "technicians", func(t *ccTech) error {
		r, err := cc.c.createTechnician(ctx, cc.cfg.key, cc.idemKey(), simTechnicianRequest{
			Email: t.Email, Name: "Agent " + strings.TrimSuffix(t.Email, "@simulate.vigil.test"), GroupID: cc.groups[t.Group], Password: t.Password,
		})
		if err != nil {
			return fmt.Errorf("create technician %s: %w", t.Email, err)
		}
		t.ID = r.ID
		return nil
	})
	if err != nil {
		return 0, err
	}
	if cc.cfg.state != "" {
		b, err := json.Marshal(ccState{URL: cc.cfg.url, Groups: cc.groups, Techs: cc.techs})
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(cc.cfg.state, b, 0o600); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (cc *callCentre) index() {
	cc.byGrp = make([][]*ccTech, len(cc.groups))
	for _, t := range cc.techs {
		cc.byGrp[t.Group] = append(cc.byGrp[t.Group], t)
	}
}

// logIn logs t in; during the run (timed) the latency counts among the
// logins.
func (cc *callCentre) logIn(ctx context.Context, t *ccTech, timed bool) error {
	start := time.Now()
	r, err := cc.c.login(ctx, simLoginRequest{Email: t.Email, Password: t.Password})
	if timed {
		cc.logins.add(time.Since(start))
	}
	if err != nil {
		return fmt.Errorf("log in %s: %w", t.Email, err)
	}
	if !strings.HasPrefix(r.Token, "vt_") || r.TechnicianID != t.ID {
		return fmt.Errorf("log in %s: token %.3q…, technician %q; want vt_… and %q", t.Email, r.Token, r.TechnicianID, t.ID)
	}
	t.token.Store(&r.Token)
	return nil
}

// ccStep is one request of a session's script.
type ccStep struct {
	customer bool // with the ingest key; else the holder's token
	cmd      simCommand
	refusal  string  // the expected error code; "" for success
	to       *ccTech // transfer: the new holder
}

// console is technician i's day: sessions one after the other, each
// command at its scheduled time, until end.
func (cc *callCentre) console(ctx context.Context, i int, t *ccTech, start, end time.Time) {
	r := rand.New(rand.NewPCG(cc.cfg.seed, uint64(i)))
	mean := float64(cc.cfg.interval)
	next := start.Add(time.Duration(r.ExpFloat64() * mean))
	// wait sleeps until the scheduled time; false when the run is over.
	wait := func() bool {
		if !next.Before(end) {
			return false
		}
		if d := time.Until(next); d > 0 {
			tm := time.NewTimer(d)
			defer tm.Stop()
			select {
			case <-tm.C:
			case <-ctx.Done():
				return false
			}
		}
		return ctx.Err() == nil
	}
	for n := 0; ; n++ {
		if !wait() {
			return
		}
		if !cc.session(ctx, r, t, n, &next, wait) {
			return
		}
		if r.Float64() < cc.cfg.breakChance && t.leave() {
			// Console inactivity: the technician logs out, is away for a
			// while (mean 60 s), and logs in again.
			if !wait() {
				return
			}
			if err := cc.c.logout(ctx, t.tok()); err != nil && ctx.Err() == nil {
				cc.unexpected(fmt.Sprintf("logout %s: %v", t.Email, err))
			}
			next = next.Add(time.Duration(r.ExpFloat64() * float64(time.Minute)))
			if !wait() {
				// Logged in again at once, so that the next run of a
				// --state finds him as the others.
				_ = cc.logIn(context.WithoutCancel(ctx), t, false)
				return
			}
			if err := cc.logIn(ctx, t, true); err != nil && ctx.Err() == nil {
				cc.unexpected(err.Error())
				return
			}
			t.back()
		}
	}
}

// session plays one session of technician t. Each request waits for its
// scheduled time; next advances by an exponential gap after each. It
// returns false when the run is over.
func (cc *callCentre) session(ctx context.Context, r *rand.Rand, t *ccTech, n int, next *time.Time, wait func() bool) bool {
	mean := float64(cc.cfg.interval)
	advance := func() { *next = next.Add(time.Duration(r.ExpFloat64() * mean)) }

	// The session arrives: on t's private queue, created by his console,
	// or on his group's shared queue, created by the customer's side.
	shared := r.Float64() < cc.cfg.sharedShare
	cust := simCustomers[r.IntN(len(simCustomers))]
	req := map[string]any{
		"queue": "private", "channel": "web",
		"customer":      map[string]string{"name": cust.name, "email": cust.email},
		"custom_fields": map[string]string{"cfield0": fmt.Sprintf("ticket %d", n)},
		"tracking_id":   fmt.Sprintf("CC-%s-%s-%d", cc.runID, t.ID, n),
	}
	cred := t.tok()
	if shared {
		req["queue"], req["group_id"] = "shared", cc.groups[t.Group]
		cred = cc.cfg.ingestKey
	}
	sched := *next
	var created simSessionCreated
	err := cc.c.do(ctx, simCall{method: http.MethodPost, path: "/v1/sessions", label: "create " + req["queue"].(string),
		cred: cred, idem: cc.idemKey(), want: http.StatusCreated, in: req, out: &created})
	cc.cmds.add(time.Since(sched))
	advance()
	if err != nil {
		if ctx.Err() == nil {
			cc.unexpected(fmt.Sprintf("%s: create session: %v", t.Email, err))
		}
		return ctx.Err() == nil
	}
	cc.sessions.Add(1)

	holder := t
	defer func() {
		if holder != t {
			holder.release()
		}
	}()
	for _, st := range cc.script(r, t) {
		if !wait() {
			return false
		}
		if st.to != nil && !st.to.reserve() {
			continue // the colleague is away: no transfer
		}
		cred := holder.tok()
		if st.customer {
			cred = cc.cfg.ingestKey
		}
		sched := *next
		err := cc.c.command(ctx, cred, cc.idemKey(), created.ID, st.cmd)
		cc.cmds.add(time.Since(sched))
		advance()
		if ctx.Err() != nil {
			return false
		}
		if st.refusal != "" {
			var ae *apiError
			if errors.As(err, &ae) && ae.Code == st.refusal {
				cc.mu.Lock()
				cc.refusals[ae.Code]++
				cc.mu.Unlock()
				continue
			}
			cc.unexpected(fmt.Sprintf("session %s %s: want %s, got %v", created.ID, st.cmd.Type, st.refusal, err))
			return true
		}
		if err != nil {
			if st.to != nil {
				st.to.release()
			}
			cc.unexpected(fmt.Sprintf("session %s: %v", created.ID, err))
			return true // the next session starts afresh
		}
		if st.to != nil {
			if holder != t {
				holder.release()
			}
			holder = st.to
		}
		if st.cmd.Type == "close" {
			cc.closed.Add(1)
		}
	}
	return true
}

// script returns the commands of one session after its creation: the
// realistic mix of vigil simulate (customer connection, pick-up, chat,
// consents granted or denied, remote control, files, notes, transfers,
// closes).
func (cc *callCentre) script(r *rand.Rand, t *ccTech) []ccStep {
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	chance := func(p float64) bool { return r.Float64() < p }
	var steps []ccStep
	tech := func(c simCommand) { steps = append(steps, ccStep{cmd: c}) }
	cust := func(c simCommand) { steps = append(steps, ccStep{customer: true, cmd: c}) }
	chat := func(n int) {
		for range n {
			cust(simCommand{Type: "chat", From: "customer", Text: pick(simCustChat)})
			tech(simCommand{Type: "chat", From: "technician", Text: pick(simTechChat)})
		}
	}
	all := false
	asked := map[string]bool{}
	privileged := func(action string, c simCommand) {
		if !all && !asked[action] {
			tech(simCommand{Type: "request_consent", Action: action})
			cust(simCommand{Type: "grant_consent", Action: action})
			asked[action] = true
		}
		tech(c)
	}
	file := func(typ string) simCommand {
		size := int64(1 + r.IntN(256<<10))
		var h [48]byte
		for i := range h {
			h[i] = byte(r.Uint32())
		}
		return simCommand{Type: typ, Name: pick(simFiles), Size: &size, MD5: fmt.Sprintf("%x", h[:16]), SHA256: fmt.Sprintf("%x", h[16:])}
	}
	closeCmd := func() {
		c := simCommand{Type: "close", Reason: pick(simCloseWhy)}
		if chance(0.4) {
			cust(c)
		} else {
			tech(c)
		}
	}

	cust(simCommand{Type: "connect_customer", Platform: pick(simPlatforms), IP: fmt.Sprintf("203.0.113.%d", 1+r.IntN(254)), AppletVersion: "7.4." + strconv.Itoa(r.IntN(10))})
	tech(simCommand{Type: "pick_up"})
	chat(1)
	switch x := r.Float64(); {
	case x < 0.15:
		// Remote control refused by the customer: the attempt is refused
		// and audited.
		tech(simCommand{Type: "request_consent", Action: "remote_control"})
		cust(simCommand{Type: "deny_consent", Action: "remote_control"})
		steps = append(steps, ccStep{cmd: simCommand{Type: "start", Action: "remote_control"}, refusal: "consent_required"})
		if chance(0.5) {
			tech(simCommand{Type: "note", Text: "Customer declined remote control."})
			closeCmd()
			return steps
		}
	case x < 0.55:
		tech(simCommand{Type: "request_consent", Action: consentAll})
		cust(simCommand{Type: "grant_consent", Action: consentAll})
		all = true
	}
	privileged("remote_control", simCommand{Type: "start", Action: "remote_control"})
	if chance(0.3) {
		privileged("system_info", simCommand{Type: "view_system_info"})
	}
	for range 1 + r.IntN(3) {
		privileged("send_file", file("send_file"))
	}
	for range r.IntN(3) {
		privileged("receive_file", file("receive_file"))
	}
	chat(1 + r.IntN(4))
	if chance(0.3) {
		cust(simCommand{Type: "end", Action: "remote_control"})
	} else {
		tech(simCommand{Type: "end", Action: "remote_control"})
	}
	tech(simCommand{Type: "note", Text: pick(simNotes)})
	if team := cc.byGrp[t.Group]; len(team) > 1 && chance(0.25) {
		to := team[r.IntN(len(team))]
		for to == t {
			to = team[r.IntN(len(team))]
		}
		steps = append(steps, ccStep{cmd: simCommand{Type: "transfer", ToTechnician: to.ID}, to: to})
		chat(1)
		tech(simCommand{Type: "note", Text: "Took over from a colleague."})
	}
	closeCmd()
	return steps
}

// progress updates the live progress line every second until done.
func (cc *callCentre) progress(ctx context.Context, start time.Time, done <-chan struct{}) {
	var bar *progressbar.ProgressBar
	secs := int64(math.Ceil(cc.cfg.duration.Seconds()))
	if !cc.cfg.quiet {
		bar = progressbar.NewOptions64(secs, progressbar.OptionSetWriter(cc.stderr), progressbar.OptionSetWidth(20),
			progressbar.OptionSetDescription("callcentre"), progressbar.OptionThrottle(500*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(cc.stderr) }))
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last, cpuLast := time.Now(), cc.srv.cpuSeconds()
	for {
		select {
		case <-done:
			if bar != nil {
				_ = bar.Finish()
			}
			return
		case <-ctx.Done():
			if bar != nil {
				_ = bar.Exit()
				fmt.Fprintln(cc.stderr)
			}
			return
		case now := <-tick.C:
			w := cc.cmds.takeWindow()
			slices.Sort(w)
			dt := now.Sub(last).Seconds()
			cpu := cc.srv.cpuSeconds()
			if bar != nil {
				cc.mu.Lock()
				errs := cc.errors
				cc.mu.Unlock()
				bar.Describe(fmt.Sprintf("%6.0f cmd/s  p50 %s  p99 %s  errors %d  sessions %d  server cpu %.0f%% rss %s",
					float64(len(w))/dt, fmtMS(percentile(w, 50)), fmtMS(percentile(w, 99)), errs, cc.sessions.Load(),
					100*(cpu-cpuLast)/dt, fmtMB(cc.srv.rss())))
				_ = bar.Set64(min(secs, int64(now.Sub(start).Seconds())))
			}
			last, cpuLast = now, cpu
		}
	}
}

// waitProjections polls /metrics until both projections have no lag.
func (cc *callCentre) waitProjections(ctx context.Context, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, cc.cfg.url+"/metrics", nil)
		if err != nil {
			return false
		}
		resp, err := cc.c.http.Do(req)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := string(b)
		if !strings.Contains(m, "vigil_projection_lag_events") {
			return false
		}
		if strings.Contains(m, `vigil_projection_lag_events{projection="reporting"} 0`+"\n") &&
			strings.Contains(m, `vigil_projection_lag_events{projection="subjects"} 0`+"\n") {
			return true
		}
		time.Sleep(500 * time.Millisecond)
	}
	return false
}

// dbSize returns pg_database_size of the database at u, 0 when u is
// empty or it cannot be read.
func dbSize(ctx context.Context, u string) int64 {
	if u == "" {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return 0
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, `SELECT pg_database_size(current_database())`).Scan(&n); err != nil {
		return 0
	}
	return n
}

// procWatch reads a local process's CPU time and memory from /proc. A nil
// procWatch reads zeros.
type procWatch struct{ pid int }

// newProcWatch watches pid, or else the process listening on the port of
// base when base names this machine.
func newProcWatch(pid int, base string) *procWatch {
	if pid > 0 {
		return &procWatch{pid: pid}
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil
	}
	if pid := listenerPID(p); pid > 0 {
		return &procWatch{pid: pid}
	}
	return nil
}

// listenerPID finds the process with a TCP socket listening on port, by
// /proc/net/tcp{,6} and the processes' file descriptors; 0 when none is
// visible.
func listenerPID(port int) int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return 0
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && inodes[l] {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid
		}
	}
	return 0
}

// cpuSeconds is the process's user and system CPU time.
func (p *procWatch) cpuSeconds() float64 {
	if p == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0
	}
	// The command name may hold spaces: the fields start after its ")".
	s := string(b)
	fs := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fs) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(fs[11], 64) // utime: field 14
	k, _ := strconv.ParseFloat(fs[12], 64) // stime: field 15
	return (u + k) / 100                   // USER_HZ is 100 on Linux
}

func (p *procWatch) status(field string) int64 {
	if p == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			fs := strings.Fields(v)
			if len(fs) > 0 {
				n, _ := strconv.ParseInt(fs[0], 10, 64)
				return n << 10 // kB
			}
		}
	}
	return 0
}

func (p *procWatch) rss() int64 { return p.status("VmRSS") }
func (p *procWatch) hwm() int64 { return p.status("VmHWM") }

func fmtMS(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

func fmtMB(n int64) string {
	return fmt.Sprintf("%.0f MB", float64(n)/(1<<20))
}

// writeCallCentreReport prints the summary of a call-centre run.
func writeCallCentreReport(w io.Writer, r ccReport) {
	line := func(k, format string, a ...any) { fmt.Fprintf(w, "%-26s%s\n", k+":", fmt.Sprintf(format, a...)) }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }
	n := r.cfg.technicians
	line("profile", "callcentre: %d technicians in %d groups, one command each every %s on average (target %.1f commands/s), %s",
		n, r.groups, r.cfg.interval, float64(n)/r.cfg.interval.Seconds(), r.cfg.duration)
	if r.created > 0 {
		line("setup: created", "%d technicians in %.1f s", r.created, r.createTime.Seconds())
	} else {
		line("setup: created", "none (from %s)", r.cfg.state)
	}
	if r.cfg.setupOnly {
		return
	}
	line("setup: logged in", "%d technicians in %.1f s (%.1f logins/s)", n, r.loginTime.Seconds(), float64(n)/r.loginTime.Seconds())
	if r.rssLogged > 0 {
		line("server RSS after logins", "%s (before %s: %+.1f KB per logged-in technician)", fmtMB(r.rssLogged), fmtMB(r.rssBeforeLogin),
			float64(r.rssLogged-r.rssBeforeLogin)/1024/float64(n))
	}
	done := fmt.Sprintf("%.1f s", r.elapsed.Seconds())
	if r.interrupted {
		done += " (interrupted)"
	}
	line("elapsed", "%s", done)
	rate := 0.0
	if r.elapsed > 0 {
		rate = float64(len(r.cmds)) / r.elapsed.Seconds()
	}
	line("commands", "%d (%.1f/s sustained)", len(r.cmds), rate)
	line("sessions", "%d started, %d closed", r.sessions, r.closed)
	line("latency p50", "%s", ms(percentile(r.cmds, 50)))
	line("latency p99", "%s", ms(percentile(r.cmds, 99)))
	line("latency p99.9", "%s", ms(percentile(r.cmds, 99.9)))
	line("latency max", "%s", ms(percentile(r.cmds, 100)))
	if len(r.logins) > 0 {
		line("logins after breaks", "%d, p50 %s, p99 %s", len(r.logins), ms(percentile(r.logins, 50)), ms(percentile(r.logins, 99)))
	}
	total := 0
	var parts []string
	for _, code := range slices.Sorted(func(yield func(string) bool) {
		for c := range r.refusals {
			if !yield(c) {
				return
			}
		}
	}) {
		total += r.refusals[code]
		parts = append(parts, fmt.Sprintf("%s %d", code, r.refusals[code]))
	}
	if total > 0 {
		line("expected refusals", "%d (%s)", total, strings.Join(parts, ", "))
	} else {
		line("expected refusals", "0")
	}
	line("unexpected errors", "%d", r.errors)
	for _, e := range r.firstErrs {
		fmt.Fprintf(w, "  %s\n", e)
	}
	if r.rssEnd > 0 {
		line("server CPU", "%.1f s in %.1f s (%.0f%% of one core)", r.cpuSeconds, r.elapsed.Seconds(), 100*r.cpuSeconds/r.elapsed.Seconds())
		open := r.sessions - r.closed
		per := ""
		if open > 0 && r.rssLogged > 0 {
			per = fmt.Sprintf(", %+.1f KB per session open at the end (%d) over the logged-in RSS", float64(r.rssEnd-r.rssLogged)/1024/float64(open), open)
		}
		line("server RSS", "%s at the end, peak %s%s", fmtMB(r.rssEnd), fmtMB(r.rssPeak), per)
	} else {
		line("server CPU and RSS", "not measured (no local server process)")
	}
	switch {
	case r.dbAfter > 0 && r.sessions > 0:
		line("database growth", "%.1f MB, %.0f bytes per session", float64(r.dbAfter-r.dbBefore)/(1<<20), float64(r.dbAfter-r.dbBefore)/float64(r.sessions))
	default:
		line("database growth", "not measured (no --database-url)")
	}
	if r.projectionsCaughtUp >= 0 {
		line("projections caught up", "%.1f s after the run", r.projectionsCaughtUp.Seconds())
	}
}
