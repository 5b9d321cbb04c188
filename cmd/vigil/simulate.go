package main

import (
	"bytes"
	"context"
	"crypto/md5"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/vigilhq/vigil/domain"
)

// consentAll is the request_consent action of the one-time prompt in
// docs/api.md ("all"). The domain calls it one_time_prompt; the API
// contract is what the simulator speaks.
const consentAll = "all"

// simLockoutThreshold is the lockout threshold the simulator sets on its
// group, so that it knows when to expect 423.
const simLockoutThreshold = 5

// simMaxErrors is how many unexpected error messages the summary shows.
const simMaxErrors = 5

// simConfig is the command line of vigil simulate.
type simConfig struct {
	url         string
	key         string
	ingestKey   string
	sessions    int
	concurrency int
	seed        uint64
	timeout     time.Duration
	quiet       bool
	relay       string        // HOST:PORT of the relay; empty: no relay traffic
	ca          string        // CA file the relay's certificate is checked against
	relayTLS    *tls.Config   // from ca, set when relay is
	p2pTimeout  time.Duration // how long the applet waits for a direct TCP connection (simp2p.go)
	mediaKey    string        // API key of role media: Rescue Lens traffic (simlens.go); empty: none
}

func runSimulate(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	// --profile callcentre is the load of callcentre.go; the default
	// profile ("sessions") is the one below.
	profile, rest, err := splitProfile(args)
	switch {
	case err == nil && profile == "callcentre":
		return runCallCentre(ctx, rest, env, stdout, stderr)
	case err != nil || (profile != "" && profile != "sessions"):
		fmt.Fprintf(stderr, "vigil simulate: --profile %q: want sessions or callcentre\n", profile)
		return errUsage
	}
	args = rest
	cfg, err := parseSimulateFlags(args, env, stderr)
	if err != nil {
		return err
	}
	sim, err := newSimulator(cfg, stderr)
	if err != nil {
		return err
	}
	rep, err := sim.run(ctx)
	if err != nil {
		return err
	}
	writeSimReport(stdout, rep)
	switch {
	case rep.interrupted:
		return exitError{code: 130, msg: "simulate: interrupted"}
	case rep.errors > 0:
		return exitError{code: 1, msg: fmt.Sprintf("simulate: %d unexpected errors", rep.errors)}
	}
	return nil
}

// parseSimulateFlags reads the flags of vigil simulate, each defaulting to
// its VIGIL_SIMULATE_* variable. Bad values answer errUsage after a message
// on stderr.
func parseSimulateFlags(args []string, env func(string) string, stderr io.Writer) (simConfig, error) {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vigil simulate --key ADMIN_KEY --ingest-key INGEST_KEY [--url URL] [--sessions N] [--concurrency C] [--seed S] [--timeout D] [--quiet] [--relay HOST:PORT [--ca FILE]]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Drives realistic support sessions through the HTTP API of a running server (docs/api.md).")
		fmt.Fprintln(stderr, "API keys come from 'vigil apikey create': one of role admin, one of role ingest.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	bad := func(format string, a ...any) (simConfig, error) {
		fmt.Fprintf(stderr, "vigil simulate: "+format+"\n", a...)
		return simConfig{}, errUsage
	}

	cfg := simConfig{
		url:         "http://127.0.0.1:8080",
		sessions:    100,
		concurrency: 8,
		timeout:     30 * time.Second,
	}
	if v := env("VIGIL_SIMULATE_URL"); v != "" {
		cfg.url = v
	} else if v, err := localAPIURL(env); err == nil {
		// The server's own address, as 'vigil serve' reads it.
		cfg.url = v
	}
	cfg.key = env("VIGIL_SIMULATE_KEY")
	cfg.ingestKey = env("VIGIL_SIMULATE_INGEST_KEY")
	cfg.mediaKey = env("VIGIL_SIMULATE_MEDIA_KEY")
	for _, e := range []struct {
		name string
		dst  *int
	}{{"VIGIL_SIMULATE_SESSIONS", &cfg.sessions}, {"VIGIL_SIMULATE_CONCURRENCY", &cfg.concurrency}} {
		if v := env(e.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return bad("%s=%q is not a number", e.name, v)
			}
			*e.dst = n
		}
	}
	if v := env("VIGIL_SIMULATE_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return bad("VIGIL_SIMULATE_SEED=%q is not a number", v)
		}
		cfg.seed = n
	}
	if v := env("VIGIL_SIMULATE_QUIET"); v != "" {
		q, err := strconv.ParseBool(v)
		if err != nil {
			return bad("VIGIL_SIMULATE_QUIET=%q is not a boolean", v)
		}
		cfg.quiet = q
	}
	if v := env("VIGIL_SIMULATE_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return bad("VIGIL_SIMULATE_TIMEOUT=%q is not a duration", v)
		}
		cfg.timeout = d
	}

	fs.StringVar(&cfg.url, "url", cfg.url, "base URL of the Vigil HTTP API (VIGIL_SIMULATE_URL; default: from VIGIL_HTTP_ADDR, as vigil serve listens)")
	// Keys are secrets: fs.Func keeps them out of -help's defaults.
	fs.Func("key", "admin API key vk_… (VIGIL_SIMULATE_KEY); required", func(v string) error { cfg.key = v; return nil })
	fs.Func("media-key", "API key vk_… of role media: half the sessions also hold a Rescue Lens conference (VIGIL_SIMULATE_MEDIA_KEY)", func(v string) error { cfg.mediaKey = v; return nil })
	fs.Func("ingest-key", "ingest API key vk_… for the customer side (VIGIL_SIMULATE_INGEST_KEY); required", func(v string) error { cfg.ingestKey = v; return nil })
	fs.IntVar(&cfg.sessions, "sessions", cfg.sessions, "number of support sessions to run (VIGIL_SIMULATE_SESSIONS)")
	fs.IntVar(&cfg.concurrency, "concurrency", cfg.concurrency, "sessions run at once (VIGIL_SIMULATE_CONCURRENCY)")
	fs.Uint64Var(&cfg.seed, "seed", cfg.seed, "seed of the scenario choices; 0 picks one and prints it (VIGIL_SIMULATE_SEED)")
	fs.DurationVar(&cfg.timeout, "timeout", cfg.timeout, "timeout of each HTTP request (VIGIL_SIMULATE_TIMEOUT)")
	fs.BoolVar(&cfg.quiet, "quiet", cfg.quiet, "no progress bar or setup messages on stderr (VIGIL_SIMULATE_QUIET)")
	cfg.relay, cfg.ca = env("VIGIL_SIMULATE_RELAY"), env("VIGIL_SIMULATE_CA")
	fs.StringVar(&cfg.relay, "relay", cfg.relay, "HOST:PORT of the relay: each session also pairs an applet and a console through it and pushes data both ways (VIGIL_SIMULATE_RELAY)")
	fs.DurationVar(&cfg.p2pTimeout, "p2p-timeout", 10*time.Second, "with --relay: how long the applet waits for a direct TCP connection before the UDP rendezvous (the whitepaper's 10 s)")
	fs.StringVar(&cfg.ca, "ca", cfg.ca, "PEM file of the CA (or self-signed certificate) the relay is trusted by; default: relay-cert.pem in VIGIL_DATA_DIR (VIGIL_SIMULATE_CA)")
	if err := parseFlags(fs, args); err != nil {
		return simConfig{}, err
	}

	u, err := url.Parse(cfg.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return bad("--url %q: want http(s)://host[:port][/prefix]", cfg.url)
	}
	cfg.url = strings.TrimRight(u.String(), "/")
	switch {
	case cfg.key == "":
		return bad("--key (VIGIL_SIMULATE_KEY) is required: an admin API key from 'vigil apikey create'")
	case !strings.HasPrefix(cfg.key, "vk_"):
		return bad("--key is not an API key (want vk_<id>_<secret>)")
	case cfg.ingestKey == "":
		return bad("--ingest-key (VIGIL_SIMULATE_INGEST_KEY) is required: an ingest API key from 'vigil apikey create', used for the customer side")
	case !strings.HasPrefix(cfg.ingestKey, "vk_"):
		return bad("--ingest-key is not an API key (want vk_<id>_<secret>)")
	case cfg.key == cfg.ingestKey:
		return bad("--key and --ingest-key must differ: one admin key, one ingest key")
	case cfg.sessions < 1:
		return bad("--sessions must be at least 1, not %d", cfg.sessions)
	case cfg.concurrency < 1:
		return bad("--concurrency must be at least 1, not %d", cfg.concurrency)
	case cfg.timeout <= 0:
		return bad("--timeout must be positive")
	}
	if cfg.relay != "" {
		tc, err := simRelayTLS(cfg.relay, cfg.ca, env("VIGIL_DATA_DIR"))
		if err != nil {
			return bad("--relay: %v", err)
		}
		cfg.relayTLS = tc
	}
	return cfg, nil
}

// simulator runs one simulation. Its counters are safe for concurrent use
// by the session workers.
type simulator struct {
	cfg    simConfig
	c      *simClient
	stderr io.Writer
	runID  string

	groupID string
	techs   []*simTech // the workers; at least two

	idem      atomic.Uint64
	completed atomic.Int64

	mu        sync.Mutex
	refusals  map[string]int
	errors    int
	firstErrs []string
	gateways  map[string]int // relayed sessions by gateway (simgateways.go)
}

// simTech is a technician the simulator created and logged in.
type simTech struct {
	id, email, name, password, token string
}

// simReport is the outcome of a run.
type simReport struct {
	runID       string
	seed        uint64
	sessions    int
	completed   int
	requests    int
	elapsed     time.Duration
	latencies   []time.Duration // sorted
	refusals    map[string]int  // expected refusals by error code
	errors      int
	retried     int // attempts repeated after a 503 (simClient.do)
	firstErrs   []string
	interrupted bool
	gateways    map[string]int // relayed sessions by the gateway that carried them
}

func newSimulator(cfg simConfig, stderr io.Writer) (*simulator, error) {
	if cfg.seed == 0 {
		var b [8]byte
		if _, err := crand.Read(b[:]); err != nil {
			return nil, err
		}
		cfg.seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	// The run id makes names unique across runs against one tenant, so a
	// run never depends on what an earlier one left behind; it comes from
	// crypto/rand, not the seed, so that replaying a seed still works.
	var b [4]byte
	if _, err := crand.Read(b[:]); err != nil {
		return nil, err
	}
	return &simulator{
		cfg:      cfg,
		c:        newSimClient(cfg.url, cfg.concurrency, cfg.timeout),
		stderr:   stderr,
		runID:    hex.EncodeToString(b[:]),
		refusals: map[string]int{},
	}, nil
}

func (s *simulator) logf(format string, a ...any) {
	if !s.cfg.quiet {
		fmt.Fprintf(s.stderr, "vigil simulate: "+format+"\n", a...)
	}
}

// run sets up the group and technicians, drives the sessions and returns
// the report. It returns an error only when the setup fails, since then
// there is nothing to report.
func (s *simulator) run(ctx context.Context) (simReport, error) {
	start := time.Now()
	if err := s.setup(ctx); err != nil {
		if ctx.Err() != nil {
			return simReport{}, exitError{code: 130, msg: "simulate: interrupted during setup"}
		}
		return simReport{}, fmt.Errorf("simulate: set up: %w", err)
	}
	s.logf("run %s (seed %d): group %s, %d technicians; %d sessions, %d at a time",
		s.runID, s.cfg.seed, s.groupID, len(s.techs), s.cfg.sessions, s.cfg.concurrency)

	var bar *progressbar.ProgressBar
	if !s.cfg.quiet {
		bar = progressbar.NewOptions(s.cfg.sessions,
			progressbar.OptionSetWriter(s.stderr),
			progressbar.OptionSetDescription("sessions"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("sessions"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(s.stderr) }),
		)
	}

	jobs := make(chan int)
	var wg sync.WaitGroup
	for range s.cfg.concurrency {
		wg.Go(func() {
			for i := range jobs {
				if err := s.runSession(ctx, i); err != nil && ctx.Err() == nil {
					s.unexpected(fmt.Sprintf("session %d: %v", i, err))
				} else if err == nil {
					s.completed.Add(1)
				}
				if bar != nil {
					_ = bar.Add(1)
				}
			}
		})
	}
feed:
	for i := range s.cfg.sessions {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if bar != nil && ctx.Err() != nil {
		_ = bar.Exit()
		fmt.Fprintln(s.stderr)
	}

	if ctx.Err() == nil {
		for _, t := range s.techs {
			if err := s.c.logout(ctx, t.token); err != nil {
				s.unexpected(fmt.Sprintf("logout %s: %v", t.email, err))
			}
		}
	}

	lat := s.c.latencies()
	slices.Sort(lat)
	s.mu.Lock()
	defer s.mu.Unlock()
	return simReport{
		runID:       s.runID,
		seed:        s.cfg.seed,
		sessions:    s.cfg.sessions,
		completed:   int(s.completed.Load()),
		requests:    len(lat),
		elapsed:     time.Since(start),
		latencies:   lat,
		refusals:    maps.Clone(s.refusals),
		errors:      s.errors,
		retried:     s.c.retries(),
		firstErrs:   slices.Clone(s.firstErrs),
		interrupted: ctx.Err() != nil,
		gateways:    maps.Clone(s.gateways),
	}, nil
}

// unexpected counts an unexpected error and keeps the first few messages.
func (s *simulator) unexpected(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errors++
	if len(s.firstErrs) < simMaxErrors {
		s.firstErrs = append(s.firstErrs, msg)
	}
}

// expect checks that err is the refusal the contract promises (status and
// code), counting it as an expected refusal; anything else, success
// included, is returned as an error.
func (s *simulator) expect(err error, status int, code string) error {
	var ae *apiError
	if err == nil {
		return fmt.Errorf("want %d %s, got success", status, code)
	}
	if !errors.As(err, &ae) || ae.Status != status || ae.Code != code {
		return fmt.Errorf("want %d %s: %w", status, code, err)
	}
	s.mu.Lock()
	s.refusals[code]++
	s.mu.Unlock()
	return nil
}

// idemKey returns a fresh Idempotency-Key, unique to the run.
func (s *simulator) idemKey() string {
	return fmt.Sprintf("sim-%s-%d", s.runID, s.idem.Add(1))
}

// setup creates the group and the technicians, runs the failed logins and
// the lockout sequence, and logs the workers in.
func (s *simulator) setup(ctx context.Context) error {
	g, err := s.c.createGroup(ctx, s.cfg.key, s.idemKey(), newSimGroup("simulate "+s.runID))
	if err != nil {
		return fmt.Errorf("create group: %w", err)
	}
	s.groupID = g.ID

	n := max(2, s.cfg.concurrency/4)
	for i := range n {
		t, err := s.createTech(ctx, fmt.Sprintf("tech%d", i+1), fmt.Sprintf("Sim Technician %d", i+1))
		if err != nil {
			return err
		}
		s.techs = append(s.techs, t)
	}
	victim, err := s.createTech(ctx, "lockout", "Sim Lockout Victim")
	if err != nil {
		return err
	}

	// An unknown e-mail fails like a wrong password.
	_, err = s.c.login(ctx, simLoginRequest{Email: "nobody-" + s.runID + "@simulate.vigil.test", Password: simPassword()})
	if err := s.expect(err, http.StatusUnauthorized, "unauthenticated"); err != nil {
		s.unexpected("login with an unknown e-mail: " + err.Error())
	}
	for i, t := range s.techs {
		if i%2 == 0 {
			// A typo before the right password: one failure, well under
			// the threshold.
			_, err := s.c.login(ctx, simLoginRequest{Email: t.email, Password: t.password + "x"})
			if err := s.expect(err, http.StatusUnauthorized, "unauthenticated"); err != nil {
				s.unexpected(fmt.Sprintf("wrong password for %s: %v", t.email, err))
			}
		}
		if err := s.logIn(ctx, t); err != nil {
			return err
		}
	}
	if err := s.lockout(ctx, victim); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.unexpected("lockout sequence: " + err.Error())
	}
	return nil
}

func (s *simulator) createTech(ctx context.Context, local, name string) (*simTech, error) {
	t := &simTech{
		email:    fmt.Sprintf("sim-%s-%s@simulate.vigil.test", s.runID, local),
		name:     name,
		password: simPassword(),
	}
	r, err := s.c.createTechnician(ctx, s.cfg.key, s.idemKey(), simTechnicianRequest{
		Email: t.email, Name: t.name, GroupID: s.groupID, Password: t.password,
	})
	if err != nil {
		return nil, fmt.Errorf("create technician %s: %w", t.email, err)
	}
	if r.ID == "" || r.GroupID != s.groupID {
		return nil, fmt.Errorf("create technician %s: answer has id %q and group %q, want the group %s", t.email, r.ID, r.GroupID, s.groupID)
	}
	t.id = r.ID
	return t, nil
}

func (s *simulator) logIn(ctx context.Context, t *simTech) error {
	r, err := s.c.login(ctx, simLoginRequest{Email: t.email, Password: t.password})
	if err != nil {
		return fmt.Errorf("log in %s: %w", t.email, err)
	}
	switch {
	case !strings.HasPrefix(r.Token, "vt_"):
		return fmt.Errorf("log in %s: the answer has no vt_ token", t.email)
	case r.TechnicianID != t.id:
		return fmt.Errorf("log in %s: technician_id %q, want %q", t.email, r.TechnicianID, t.id)
	case r.Scope == "totp_enroll":
		return fmt.Errorf("log in %s: scope totp_enroll, but the group does not require a second factor", t.email)
	}
	t.token = r.Token
	return nil
}

// lockout fails victim's password until the server locks it out, checks
// that the right password is refused too, has an admin unlock it and logs
// it in.
func (s *simulator) lockout(ctx context.Context, victim *simTech) error {
	locked := false
	for i := 1; i <= simLockoutThreshold+1 && !locked; i++ {
		_, err := s.c.login(ctx, simLoginRequest{Email: victim.email, Password: simPassword()})
		if i >= simLockoutThreshold && s.expect(err, http.StatusLocked, "locked_out") == nil {
			locked = true
			continue
		}
		if err := s.expect(err, http.StatusUnauthorized, "unauthenticated"); err != nil {
			return fmt.Errorf("failed login %d of %s: %w", i, victim.email, err)
		}
	}
	if !locked {
		return fmt.Errorf("%s not locked out after %d wrong passwords (threshold %d)", victim.email, simLockoutThreshold+1, simLockoutThreshold)
	}
	_, err := s.c.login(ctx, simLoginRequest{Email: victim.email, Password: victim.password})
	if err := s.expect(err, http.StatusLocked, "locked_out"); err != nil {
		return fmt.Errorf("right password while locked out: %w", err)
	}
	u, err := s.c.unlock(ctx, s.cfg.key, s.idemKey(), victim.id)
	if err != nil {
		return fmt.Errorf("unlock %s: %w", victim.email, err)
	}
	if u.ID != victim.id || u.Locked {
		return fmt.Errorf("unlock %s: answer %+v, want id %s and locked false", victim.email, u, victim.id)
	}
	if err := s.logIn(ctx, victim); err != nil {
		return fmt.Errorf("after unlock: %w", err)
	}
	// Unlocked, the victim works like any other technician.
	s.techs = append(s.techs, victim)
	return nil
}

// simSession is one session's script state.
type simSession struct {
	s      *simulator
	r      *rand.Rand
	src    *rand.ChaCha8
	id     string
	holder *simTech
	all    bool            // the one-time prompt was granted
	asked  map[string]bool // per-action consents granted
}

var (
	simPlatforms = []string{"windows", "windows", "windows", "macos", "linux", "android", "ios"}
	simCustomers = []struct{ name, email string }{
		{"Ada Lovelace", "ada@example.com"}, {"Grace Hopper", "grace@example.com"},
		{"Alan Turing", "alan@example.org"}, {"Katherine Johnson", "katherine@example.net"},
		{"Edsger Dijkstra", "edsger@example.org"}, {"Barbara Liskov", "barbara@example.com"},
	}
	simFiles      = []string{"install.log", "screenshot.png", "driver-update.exe", "config.yaml", "report.pdf", "crash.dmp"}
	simTechChat   = []string{"Hello, I am connecting to your computer now.", "Can you see my cursor?", "I am sending you the updated driver.", "Please restart the application.", "That should fix it."}
	simCustChat   = []string{"Hi, my printer stopped working.", "Yes, I can see it.", "Thank you!", "It works now.", "Where do I click?"}
	simNotes      = []string{"Printer driver reinstalled.", "Customer informed about the update policy.", "Escalated to level 2.", "Cleared the print spool."}
	simCloseWhy   = []string{"resolved", "customer left", "escalated", "follow-up scheduled"}
	simSessionHex = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)
	simPIN        = regexp.MustCompile(`^[0-9]{6}$`)
)

// runSession drives session i through its script and returns the first
// unexpected error. The script is a function of the seed and i alone, so a
// seed replays the same sessions whatever the scheduling.
func (s *simulator) runSession(ctx context.Context, i int) error {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], s.cfg.seed)
	binary.LittleEndian.PutUint64(seed[8:], uint64(i))
	src := rand.NewChaCha8(seed)
	ss := &simSession{s: s, r: rand.New(src), src: src, asked: map[string]bool{}}
	return ss.play(ctx, i)
}

func (ss *simSession) pick(xs []string) string { return xs[ss.r.IntN(len(xs))] }
func (ss *simSession) chance(p float64) bool   { return ss.r.Float64() < p }

func (ss *simSession) play(ctx context.Context, i int) error {
	s := ss.s
	creator := s.techs[i%len(s.techs)]
	cust := simCustomers[ss.r.IntN(len(simCustomers))]
	req := simSessionRequest{
		Queue:        "private",
		Channel:      "web",
		Customer:     &simCustomer{Name: cust.name, Email: cust.email},
		CustomFields: map[string]string{"cfield0": fmt.Sprintf("ticket %d", 4000+i)},
		TrackingID:   fmt.Sprintf("SIM-%s-%d", s.runID, i),
	}
	shared := ss.chance(0.2)
	if shared {
		req.Queue = "shared"
	}
	created, err := s.c.createSession(ctx, creator.token, s.idemKey(), req)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	if !simSessionHex.MatchString(created.ID) {
		return fmt.Errorf("create: session id %q is not 32 hex digits", created.ID)
	}
	if created.PIN != "" && !simPIN.MatchString(created.PIN) {
		return fmt.Errorf("create: pin %q is not 6 digits", created.PIN)
	}
	ss.id = created.ID

	if err := ss.customer(ctx, simCommand{Type: "connect_customer", Platform: ss.pick(simPlatforms), IP: ss.ip(), AppletVersion: "7.4." + strconv.Itoa(ss.r.IntN(10))}); err != nil {
		return err
	}
	ss.holder = creator
	if shared {
		// Anyone of the group takes a shared-queue session.
		ss.holder = s.techs[ss.r.IntN(len(s.techs))]
	}
	if err := ss.tech(ctx, simCommand{Type: "pick_up"}); err != nil {
		return err
	}
	if s.cfg.relay != "" {
		if err := s.relaySession(ctx, ss); err != nil {
			return fmt.Errorf("relay: %w", err)
		}
	}
	if s.cfg.mediaKey != "" && ss.chance(0.5) {
		if err := ss.lens(ctx); err != nil {
			return fmt.Errorf("lens: %w", err)
		}
	}
	if err := ss.chat(ctx, 1); err != nil {
		return err
	}

	switch x := ss.r.Float64(); {
	case x < 0.15:
		// The customer refuses remote control; the attempt is refused
		// and audited.
		if err := ss.tech(ctx, simCommand{Type: "request_consent", Action: "remote_control"}); err != nil {
			return err
		}
		if err := ss.customer(ctx, simCommand{Type: "deny_consent", Action: "remote_control"}); err != nil {
			return err
		}
		err := ss.s.c.command(ctx, ss.holder.token, s.idemKey(), ss.id, simCommand{Type: "start", Action: "remote_control"})
		if err := s.expect(err, http.StatusConflict, "consent_required"); err != nil {
			return fmt.Errorf("start remote_control after deny_consent: %w", err)
		}
		if ss.chance(0.5) {
			// Talked into it after all: asked again per action below.
			return ss.work(ctx)
		}
		if err := ss.tech(ctx, simCommand{Type: "note", Text: "Customer declined remote control."}); err != nil {
			return err
		}
		return ss.close(ctx)
	case x < 0.55:
		if err := ss.tech(ctx, simCommand{Type: "request_consent", Action: consentAll}); err != nil {
			return err
		}
		if err := ss.customer(ctx, simCommand{Type: "grant_consent", Action: consentAll}); err != nil {
			return err
		}
		ss.all = true
	}
	return ss.work(ctx)
}

// work is the body of a session with consent: remote control, files, chat,
// a note, perhaps a transfer, then the close.
func (ss *simSession) work(ctx context.Context) error {
	s := ss.s
	recording := ""
	if ss.chance(0.3) {
		recording = fmt.Sprintf("rec-%s-%s", s.runID, ss.id[:8])
		if err := ss.tech(ctx, simCommand{Type: "start_recording", RecordingID: recording}); err != nil {
			return err
		}
	}
	if err := ss.privileged(ctx, "remote_control", simCommand{Type: "start", Action: "remote_control"}); err != nil {
		return err
	}
	if ss.chance(0.3) {
		if err := ss.privileged(ctx, "system_info", simCommand{Type: "view_system_info"}); err != nil {
			return err
		}
	}
	for range 1 + ss.r.IntN(3) {
		if err := ss.privileged(ctx, "send_file", ss.file("send_file")); err != nil {
			return err
		}
	}
	for range ss.r.IntN(3) {
		if err := ss.privileged(ctx, "receive_file", ss.file("receive_file")); err != nil {
			return err
		}
	}
	if ss.chance(0.2) {
		if err := ss.privileged(ctx, "send_url", simCommand{Type: "send_url", URL: "https://support.example.com/kb/" + strconv.Itoa(100+ss.r.IntN(900))}); err != nil {
			return err
		}
	}
	if ss.chance(0.15) {
		script := ss.bytes(200 + ss.r.IntN(4000))
		sum := sha256.Sum256(script)
		if err := ss.privileged(ctx, "deploy_script", simCommand{Type: "deploy_script", Name: "fix-spooler.ps1", SHA256: hex.EncodeToString(sum[:])}); err != nil {
			return err
		}
	}
	if err := ss.chat(ctx, 1+ss.r.IntN(4)); err != nil {
		return err
	}
	end := simCommand{Type: "end", Action: "remote_control"}
	if ss.chance(0.3) {
		if err := ss.customer(ctx, end); err != nil {
			return err
		}
	} else if err := ss.tech(ctx, end); err != nil {
		return err
	}
	if ss.chance(0.1) {
		if err := ss.privileged(ctx, "reboot", simCommand{Type: "reboot"}); err != nil {
			return err
		}
		if err := ss.tech(ctx, simCommand{Type: "reconnected"}); err != nil {
			return err
		}
	}
	if recording != "" {
		if err := ss.tech(ctx, simCommand{Type: "stop_recording", RecordingID: recording}); err != nil {
			return err
		}
	}
	if err := ss.tech(ctx, simCommand{Type: "note", Text: ss.pick(simNotes)}); err != nil {
		return err
	}
	if len(s.techs) > 1 && ss.chance(0.25) {
		to := s.techs[ss.r.IntN(len(s.techs))]
		for to == ss.holder {
			to = s.techs[ss.r.IntN(len(s.techs))]
		}
		if err := ss.tech(ctx, simCommand{Type: "transfer", ToTechnician: to.id}); err != nil {
			return err
		}
		// The transfer hands the session over directly: no pick-up.
		ss.holder = to
		if err := ss.chat(ctx, 1); err != nil {
			return err
		}
		if err := ss.tech(ctx, simCommand{Type: "note", Text: "Took over from a colleague."}); err != nil {
			return err
		}
	}
	return ss.close(ctx)
}

// privileged performs cmd after making sure the customer consented to
// action: covered by the one-time prompt, or asked for once per session.
func (ss *simSession) privileged(ctx context.Context, action string, cmd simCommand) error {
	if !ss.all && !ss.asked[action] {
		if err := ss.tech(ctx, simCommand{Type: "request_consent", Action: action}); err != nil {
			return err
		}
		if err := ss.customer(ctx, simCommand{Type: "grant_consent", Action: action}); err != nil {
			return err
		}
		ss.asked[action] = true
	}
	return ss.tech(ctx, cmd)
}

func (ss *simSession) close(ctx context.Context) error {
	cmd := simCommand{Type: "close", Reason: ss.pick(simCloseWhy)}
	byCustomer := ss.chance(0.4)
	var err error
	if byCustomer {
		err = ss.customer(ctx, cmd)
	} else {
		err = ss.tech(ctx, cmd)
	}
	if err != nil {
		return err
	}
	if ss.chance(0.1) {
		// A late customer message after the close is refused.
		err := ss.s.c.command(ctx, ss.s.cfg.ingestKey, ss.s.idemKey(), ss.id, simCommand{Type: "chat", From: "customer", Text: "Are you still there?"})
		if err := ss.s.expect(err, http.StatusConflict, "session_closed"); err != nil {
			return fmt.Errorf("chat after close: %w", err)
		}
	}
	return nil
}

// chat exchanges n pairs of messages, the customer first.
func (ss *simSession) chat(ctx context.Context, n int) error {
	for range n {
		if err := ss.customer(ctx, simCommand{Type: "chat", From: "customer", Text: ss.pick(simCustChat)}); err != nil {
			return err
		}
		if err := ss.tech(ctx, simCommand{Type: "chat", From: "technician", Text: ss.pick(simTechChat)}); err != nil {
			return err
		}
	}
	return nil
}

func (ss *simSession) tech(ctx context.Context, cmd simCommand) error {
	return ss.s.c.command(ctx, ss.holder.token, ss.s.idemKey(), ss.id, cmd)
}

func (ss *simSession) customer(ctx context.Context, cmd simCommand) error {
	return ss.s.c.command(ctx, ss.s.cfg.ingestKey, ss.s.idemKey(), ss.id, cmd)
}

// file returns a send_file or receive_file command for random contents of
// random size, with their real digests. The bytes themselves are not
// uploaded: the API records transfers, it does not carry them.
func (ss *simSession) file(typ string) simCommand {
	data := ss.bytes(1 + ss.r.IntN(256<<10))
	m := md5.Sum(data)
	h := sha256.Sum256(data)
	size := int64(len(data))
	return simCommand{Type: typ, Name: ss.pick(simFiles), Size: &size, MD5: hex.EncodeToString(m[:]), SHA256: hex.EncodeToString(h[:])}
}

func (ss *simSession) bytes(n int) []byte {
	b := make([]byte, n)
	_, _ = ss.src.Read(b)
	return b
}

// ip returns a customer address from the documentation ranges.
func (ss *simSession) ip() string {
	if ss.chance(0.2) {
		return fmt.Sprintf("2001:db8::%x", 1+ss.r.IntN(0xfffe))
	}
	return fmt.Sprintf("%s.%d", ss.pick([]string{"192.0.2", "198.51.100", "203.0.113"}), 1+ss.r.IntN(254))
}

// simPassword returns a 24-character password from crypto/rand with at
// least one upper-case letter, lower-case letter, digit and symbol, which
// meets any sane policy.
func simPassword() string {
	const (
		upper  = "ABCDEFGHJKLMNPQRSTUVWXYZ"
		lower  = "abcdefghijkmnopqrstuvwxyz"
		digits = "23456789"
		symbol = "!#%+-=?@_"
	)
	classes := []string{upper, lower, digits, symbol}
	all := upper + lower + digits + symbol
	b := make([]byte, 24)
	for i := range b {
		set := all
		if i < len(classes) {
			set = classes[i]
		}
		b[i] = set[randIntN(len(set))]
	}
	// Shuffle so the classes do not sit at fixed places.
	for i := len(b) - 1; i > 0; i-- {
		j := randIntN(i + 1)
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// randIntN returns a uniform int in [0, n) from crypto/rand.
func randIntN(n int) int {
	var b [8]byte
	limit := math.MaxUint64 - math.MaxUint64%uint64(n)
	for {
		if _, err := crand.Read(b[:]); err != nil {
			panic("crypto/rand: " + err.Error()) // crypto/rand.Read does not fail since Go 1.24
		}
		if v := binary.LittleEndian.Uint64(b[:]); v < limit {
			return int(v % uint64(n))
		}
	}
}

// The request and answer bodies of docs/api.md that the simulator uses.
type (
	simGroupRequest struct {
		Name        string             `json:"name"`
		Permissions map[string]bool    `json:"permissions"`
		Policy      domain.GroupPolicy `json:"policy"`
	}
	simGroup struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	simTechnicianRequest struct {
		Email              string `json:"email"`
		Name               string `json:"name"`
		GroupID            string `json:"group_id"`
		Password           string `json:"password"`
		MustChangePassword bool   `json:"must_change_password"`
	}
	simTechnician struct {
		ID      string `json:"id"`
		GroupID string `json:"group_id"`
		Email   string `json:"email"`
		Name    string `json:"name"`
	}
	simUnlocked struct {
		ID       string `json:"id"`
		Locked   bool   `json:"locked"`
		Disabled bool   `json:"disabled"`
	}
	simLoginRequest struct {
		Email    string `json:"email"`
		Password string `json:"password"`
	}
	simLogin struct {
		Token        string `json:"token"`
		ExpiresAt    string `json:"expires_at"`
		TechnicianID string `json:"technician_id"`
		Scope        string `json:"scope"`
	}
	simCustomer struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	simSessionRequest struct {
		Queue        string            `json:"queue"`
		Channel      string            `json:"channel,omitempty"`
		Customer     *simCustomer      `json:"customer,omitempty"`
		CustomFields map[string]string `json:"custom_fields,omitempty"`
		TrackingID   string            `json:"tracking_id,omitempty"`
	}
	simSessionCreated struct {
		ID  string `json:"id"`
		PIN string `json:"pin"`
	}
	// simCommand is any session command; each type sets only its own
	// fields, the others are omitted.
	simCommand struct {
		Type          string `json:"type"`
		Platform      string `json:"platform,omitempty"`
		IP            string `json:"ip,omitempty"`
		AppletVersion string `json:"applet_version,omitempty"`
		Action        string `json:"action,omitempty"`
		Name          string `json:"name,omitempty"`
		Size          *int64 `json:"size,omitempty"`
		MD5           string `json:"md5,omitempty"`
		SHA256        string `json:"sha256,omitempty"`
		URL           string `json:"url,omitempty"`
		From          string `json:"from,omitempty"`
		Text          string `json:"text,omitempty"`
		ToTechnician  string `json:"to_technician,omitempty"`
		RecordingID   string `json:"recording_id,omitempty"`
		Reason        string `json:"reason,omitempty"`
		// p2p (simp2p.go)
		Step      string `json:"step,omitempty"`
		Port      int    `json:"port,omitempty"`
		GatewayID string `json:"gateway_id,omitempty"`
		Outcome   string `json:"outcome,omitempty"`
		Transport string `json:"transport,omitempty"`
		ElapsedMS int64  `json:"elapsed_ms,omitempty"`
	}
	simCommandResult struct {
		Events []struct {
			ID       string `json:"id"`
			Type     string `json:"type"`
			Version  int64  `json:"version"`
			Position int64  `json:"position"`
		} `json:"events"`
	}
)

// newSimGroup returns a group with all fifteen permissions and the
// one-time prompt allowed, otherwise the default policy with the lockout
// threshold the simulator expects.
func newSimGroup(name string) simGroupRequest {
	perms := map[string]bool{}
	for _, p := range domain.Permissions() {
		perms[string(p)] = true
	}
	pol := domain.DefaultGroupPolicy()
	pol.OneTimePromptAllowed = true
	pol.ForcedRecording = false
	pol.StoreChat = true
	pol.StoreCustomerIP = true
	pol.RequireSecondFactor = false
	pol.LockoutThreshold = simLockoutThreshold
	pol.Password.MaxAge = 0
	return simGroupRequest{Name: name, Permissions: perms, Policy: pol}
}

// apiError is an answer other than the one a call wanted: an error of
// docs/api.md ({"error": {"code", "message"}}) or an unexpected status.
type apiError struct {
	Op      string // method, path and command type
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s: %d %s: %s", e.Op, e.Status, e.Code, e.Message)
}

// simClient is a typed client of the HTTP API that records the latency of
// every request. It is safe for concurrent use.
type simClient struct {
	base string
	http *http.Client
	// retryFor bounds how long a call answered 503 (a database failover)
	// is tried again; see do.
	retryFor time.Duration

	mu      sync.Mutex
	lat     []time.Duration
	retried int // attempts repeated after a 503
}

func newSimClient(base string, concurrency int, timeout time.Duration) *simClient {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          2*concurrency + 4,
		MaxIdleConnsPerHost:   2*concurrency + 4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &simClient{base: base, http: &http.Client{Transport: tr, Timeout: timeout}, retryFor: 30 * time.Second}
}

// retries returns how many attempts were repeated after a 503.
func (c *simClient) retries() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.retried
}

func (c *simClient) record(d time.Duration) {
	c.mu.Lock()
	c.lat = append(c.lat, d)
	c.mu.Unlock()
}

func (c *simClient) latencies() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.lat)
}

// simCall is one request: its credential ("" for none), Idempotency-Key
// ("" for none), the status that means success, and the bodies.
type simCall struct {
	method, path, label string
	cred, idem          string
	want                int
	in, out             any
}

func (c *simClient) do(ctx context.Context, call simCall) error {
	op := call.method + " " + call.path
	if call.label != "" {
		op += " (" + call.label + ")"
	}
	var body io.Reader
	if call.in != nil {
		b, err := json.Marshal(call.in)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	var payload []byte
	if body != nil {
		payload, _ = io.ReadAll(body)
	}
	// A 503 means the server could not reach its database (a failover):
	// nothing was done, and it says when to try again (Retry-After). A
	// call that is safe to repeat — a GET, or a write with an
	// Idempotency-Key — is tried again until retryFor has passed; so is a
	// repeat answered 409 "still running" while the server releases the
	// key of the failed attempt. The latency is the whole call's.
	start := time.Now()
	var resp *http.Response
	var raw []byte
	retryable := call.method == http.MethodGet || call.idem != ""
	for attempt := 0; ; attempt++ {
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, call.method, c.base+call.path, rd)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		req.Header.Set("Accept", "application/json")
		if call.in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if call.cred != "" {
			req.Header.Set("Authorization", "Bearer "+call.cred)
		}
		if call.idem != "" {
			req.Header.Set("Idempotency-Key", call.idem)
		}
		resp, err = c.http.Do(req)
		if err == nil {
			raw, err = io.ReadAll(io.LimitReader(resp.Body, 4<<20))
			_, _ = io.Copy(io.Discard, resp.Body) // keep the connection reusable
			resp.Body.Close()
		}
		if err != nil {
			c.record(time.Since(start))
			return fmt.Errorf("%s: %w", op, err)
		}
		again := resp.StatusCode == http.StatusServiceUnavailable ||
			(attempt > 0 && resp.StatusCode == http.StatusConflict && bytes.Contains(raw, []byte("still running")))
		if !retryable || !again || time.Since(start) >= c.retryFor {
			break
		}
		wait := time.Second
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
			wait = min(time.Duration(secs)*time.Second, 5*time.Second)
		}
		c.mu.Lock()
		c.retried++
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			c.record(time.Since(start))
			return fmt.Errorf("%s: %w", op, ctx.Err())
		case <-time.After(max(wait, 100*time.Millisecond)):
		}
	}
	c.record(time.Since(start))

	if resp.StatusCode != call.want {
		ae := &apiError{Op: op, Status: resp.StatusCode}
		var eb struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(raw, &eb) == nil && eb.Error.Code != "" {
			ae.Code, ae.Message = eb.Error.Code, eb.Error.Message
		} else {
			ae.Message = fmt.Sprintf("want %d, body %.200q", call.want, raw)
		}
		return ae
	}
	if call.out != nil {
		if err := json.Unmarshal(raw, call.out); err != nil {
			return fmt.Errorf("%s: decode the answer: %w", op, err)
		}
	}
	return nil
}

func (c *simClient) createGroup(ctx context.Context, adminKey, idem string, g simGroupRequest) (simGroup, error) {
	var out simGroup
	err := c.do(ctx, simCall{method: http.MethodPost, path: "/v1/groups", cred: adminKey, idem: idem, want: http.StatusCreated, in: g, out: &out})
	if err == nil && out.ID == "" {
		err = errors.New("POST /v1/groups: answer without an id")
	}
	return out, err
}

func (c *simClient) createTechnician(ctx context.Context, adminKey, idem string, t simTechnicianRequest) (simTechnician, error) {
	var out simTechnician
	err := c.do(ctx, simCall{method: http.MethodPost, path: "/v1/technicians", cred: adminKey, idem: idem, want: http.StatusCreated, in: t, out: &out})
	return out, err
}

func (c *simClient) unlock(ctx context.Context, adminKey, idem, techID string) (simUnlocked, error) {
	var out simUnlocked
	err := c.do(ctx, simCall{method: http.MethodPost, path: "/v1/technicians/" + url.PathEscape(techID) + "/unlock", cred: adminKey, idem: idem, want: http.StatusOK, out: &out})
	return out, err
}

func (c *simClient) login(ctx context.Context, l simLoginRequest) (simLogin, error) {
	var out simLogin
	err := c.do(ctx, simCall{method: http.MethodPost, path: "/v1/auth/login", want: http.StatusOK, in: l, out: &out})
	return out, err
}

func (c *simClient) logout(ctx context.Context, token string) error {
	return c.do(ctx, simCall{method: http.MethodPost, path: "/v1/auth/logout", cred: token, want: http.StatusNoContent})
}

func (c *simClient) createSession(ctx context.Context, token, idem string, s simSessionRequest) (simSessionCreated, error) {
	var out simSessionCreated
	err := c.do(ctx, simCall{method: http.MethodPost, path: "/v1/sessions", cred: token, idem: idem, want: http.StatusCreated, in: s, out: &out})
	return out, err
}

// command sends one session command with cred, a technician token or the
// ingest key.
func (c *simClient) command(ctx context.Context, cred, idem, sessionID string, cmd simCommand) error {
	var out simCommandResult
	label := cmd.Type
	if cmd.Action != "" {
		label += " " + cmd.Action
	}
	return c.do(ctx, simCall{method: http.MethodPost, path: "/v1/sessions/" + url.PathEscape(sessionID) + "/commands", label: label,
		cred: cred, idem: idem, want: http.StatusOK, in: cmd, out: &out})
}

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted, which must be in ascending order: the smallest value with at
// least p percent of the values at or below it. It returns 0 for no
// values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// writeSimReport prints the summary of a run.
func writeSimReport(w io.Writer, r simReport) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }
	rps := 0.0
	if r.elapsed > 0 {
		rps = float64(r.requests) / r.elapsed.Seconds()
	}
	total := 0
	codes := make([]string, 0, len(r.refusals))
	for code, n := range r.refusals {
		total += n
		codes = append(codes, code)
	}
	sort.Strings(codes)
	refusals := strconv.Itoa(total)
	if total > 0 {
		parts := make([]string, len(codes))
		for i, code := range codes {
			parts[i] = fmt.Sprintf("%s %d", code, r.refusals[code])
		}
		refusals += " (" + strings.Join(parts, ", ") + ")"
	}
	line := func(k, v string) { fmt.Fprintf(w, "%-21s%s\n", k+":", v) }
	line("run", fmt.Sprintf("%s (seed %d)", r.runID, r.seed))
	done := fmt.Sprintf("%d/%d", r.completed, r.sessions)
	if r.interrupted {
		done += " (interrupted)"
	}
	line("sessions completed", done)
	line("requests sent", strconv.Itoa(r.requests))
	line("elapsed", fmt.Sprintf("%.3f s", r.elapsed.Seconds()))
	line("requests per second", fmt.Sprintf("%.1f", rps))
	line("latency p50", ms(percentile(r.latencies, 50)))
	line("latency p90", ms(percentile(r.latencies, 90)))
	line("latency p99", ms(percentile(r.latencies, 99)))
	line("latency max", ms(percentile(r.latencies, 100)))
	line("expected refusals", refusals)
	if len(r.gateways) > 0 {
		ids := slices.Sorted(maps.Keys(r.gateways))
		parts := make([]string, len(ids))
		for i, id := range ids {
			parts[i] = fmt.Sprintf("%s %d", id, r.gateways[id])
		}
		line("relayed by gateway", strings.Join(parts, ", "))
	}
	if r.retried > 0 {
		line("retried after 503", strconv.Itoa(r.retried))
	}
	line("unexpected errors", strconv.Itoa(r.errors))
	for _, e := range r.firstErrs {
		fmt.Fprintf(w, "  %s\n", e)
	}
	if r.errors > len(r.firstErrs) {
		fmt.Fprintf(w, "  (first %d shown)\n", len(r.firstErrs))
	}
}
