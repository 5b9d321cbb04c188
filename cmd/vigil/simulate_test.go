package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigilhq/vigil/domain"
)

const (
	simTestAdminKey  = "vk_admin01_s3cretAdminKeyValue"
	simTestIngestKey = "vk_ingest01_s3cretIngestKeyValue"
)

func TestSimulateFlags(t *testing.T) {
	base := []string{"--key", simTestAdminKey, "--ingest-key", simTestIngestKey}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // substring of stderr; "" for success
		want    simConfig
	}{
		{
			name: "defaults",
			args: base,
			want: simConfig{url: "http://127.0.0.1:8080", key: simTestAdminKey, ingestKey: simTestIngestKey, sessions: 100, concurrency: 8, timeout: 30 * time.Second, p2pTimeout: 10 * time.Second},
		},
		{
			name: "environment",
			env: map[string]string{
				"VIGIL_SIMULATE_URL": "https://vigil.example.com/api/", "VIGIL_SIMULATE_KEY": simTestAdminKey,
				"VIGIL_SIMULATE_INGEST_KEY": simTestIngestKey, "VIGIL_SIMULATE_SESSIONS": "7",
				"VIGIL_SIMULATE_CONCURRENCY": "3", "VIGIL_SIMULATE_SEED": "42", "VIGIL_SIMULATE_TIMEOUT": "5s",
				"VIGIL_SIMULATE_QUIET": "true",
			},
			want: simConfig{url: "https://vigil.example.com/api", key: simTestAdminKey, ingestKey: simTestIngestKey, sessions: 7, concurrency: 3, seed: 42, timeout: 5 * time.Second, quiet: true, p2pTimeout: 10 * time.Second},
		},
		{
			name: "flags win over the environment",
			args: append([]string{"--url", "http://10.0.0.1:9090", "--sessions", "5", "--concurrency", "2", "--seed", "9", "--quiet"}, base...),
			env:  map[string]string{"VIGIL_SIMULATE_URL": "http://other:1", "VIGIL_SIMULATE_SESSIONS": "70", "VIGIL_SIMULATE_KEY": "vk_x_y"},
			want: simConfig{url: "http://10.0.0.1:9090", key: simTestAdminKey, ingestKey: simTestIngestKey, sessions: 5, concurrency: 2, seed: 9, timeout: 30 * time.Second, quiet: true, p2pTimeout: 10 * time.Second},
		},
		{name: "no key", args: []string{"--ingest-key", simTestIngestKey}, wantErr: "--key (VIGIL_SIMULATE_KEY) is required"},
		{name: "no ingest key", args: []string{"--key", simTestAdminKey}, wantErr: "--ingest-key (VIGIL_SIMULATE_INGEST_KEY) is required"},
		{name: "key not an API key", args: []string{"--key", "vt_tech_token", "--ingest-key", simTestIngestKey}, wantErr: "--key is not an API key"},
		{name: "ingest key not an API key", args: []string{"--key", simTestAdminKey, "--ingest-key", "secret"}, wantErr: "--ingest-key is not an API key"},
		{name: "same key twice", args: []string{"--key", simTestAdminKey, "--ingest-key", simTestAdminKey}, wantErr: "must differ"},
		{name: "zero sessions", args: append([]string{"--sessions", "0"}, base...), wantErr: "--sessions must be at least 1"},
		{name: "zero concurrency", args: append([]string{"--concurrency", "0"}, base...), wantErr: "--concurrency must be at least 1"},
		{name: "negative timeout", args: append([]string{"--timeout", "-1s"}, base...), wantErr: "--timeout must be positive"},
		{name: "not a number", args: append([]string{"--sessions", "many"}, base...), wantErr: "invalid value"},
		{name: "bad environment number", args: base, env: map[string]string{"VIGIL_SIMULATE_CONCURRENCY": "x"}, wantErr: `VIGIL_SIMULATE_CONCURRENCY="x" is not a number`},
		{name: "url without scheme", args: append([]string{"--url", "127.0.0.1:8080"}, base...), wantErr: "--url"},
		{name: "ftp url", args: append([]string{"--url", "ftp://127.0.0.1"}, base...), wantErr: "--url"},
		{name: "stray argument", args: append(slices.Clone(base), "extra"), wantErr: `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			got, err := parseSimulateFlags(tt.args, envFunc(tt.env), &stderr)
			if tt.wantErr != "" {
				var ee exitError
				if !errors.As(err, &ee) || ee.code != 2 {
					t.Fatalf("err = %v, want a usage error (exit 2)", err)
				}
				if !strings.Contains(stderr.String(), tt.wantErr) {
					t.Errorf("stderr = %q, want it to mention %q", stderr.String(), tt.wantErr)
				}
				for _, k := range []string{simTestAdminKey, simTestIngestKey} {
					if strings.Contains(stderr.String(), k) {
						t.Errorf("stderr shows a key: %q", stderr.String())
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v (stderr %q)", err, stderr.String())
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(simConfig{})); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSimulateHelpHidesKeys(t *testing.T) {
	var stdout, stderr bytes.Buffer
	env := envFunc(map[string]string{"VIGIL_SIMULATE_KEY": simTestAdminKey, "VIGIL_SIMULATE_INGEST_KEY": simTestIngestKey})
	err := run(context.Background(), []string{"simulate", "-h"}, env, &stdout, &stderr)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 0 {
		t.Fatalf("err = %v, want exit 0", err)
	}
	help := stderr.String()
	for _, want := range []string{"-sessions", "-concurrency", "-ingest-key", "VIGIL_SIMULATE_URL"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, simTestAdminKey) || strings.Contains(help, simTestIngestKey) {
		t.Errorf("help shows a key from the environment:\n%s", help)
	}
}

func TestSimulatePercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		values []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value p50", ms(7), 50, 7 * time.Millisecond},
		{"one value p100", ms(7), 100, 7 * time.Millisecond},
		{"p50 of four is the second", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p51 of four is the third", ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{"p90 of ten is the ninth", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
		{"p99 of ten is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p90 of 1..100", ms(hundred...), 90, 90 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100 is the max", ms(hundred...), 100, 100 * time.Millisecond},
		{"p0 is the min", ms(3, 5), 0, 3 * time.Millisecond},
		{"above 100 is the max", ms(3, 5), 150, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.values, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.values, tt.p, got, tt.want)
			}
		})
	}
}

func TestSimulateReportFormat(t *testing.T) {
	var b bytes.Buffer
	writeSimReport(&b, simReport{
		runID: "0a1b2c3d", seed: 42, sessions: 10, completed: 9, requests: 400,
		elapsed:   2 * time.Second,
		latencies: []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 40 * time.Millisecond},
		refusals:  map[string]int{"unauthenticated": 3, "consent_required": 2},
		errors:    7, firstErrs: []string{"session 3: boom", "session 4: bang"},
	})
	want := `run:                 0a1b2c3d (seed 42)
sessions completed:  9/10
requests sent:       400
elapsed:             2.000 s
requests per second: 200.0
latency p50:         2.000 ms
latency p90:         40.000 ms
latency p99:         40.000 ms
latency max:         40.000 ms
expected refusals:   5 (consent_required 2, unauthenticated 3)
unexpected errors:   7
  session 3: boom
  session 4: bang
  (first 2 shown)
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}

// TestSimulateAgainstFake runs the whole simulation against a test double
// of the HTTP API of docs/api.md that checks every request it gets. The
// real server is exercised separately; this checks the simulator speaks
// the contract.
func TestSimulateAgainstFake(t *testing.T) {
	for _, lockAt := range []int{simLockoutThreshold, simLockoutThreshold + 1} {
		t.Run(fmt.Sprintf("locked at failure %d", lockAt), func(t *testing.T) {
			f := newFakeVigil(lockAt)
			srv := httptest.NewServer(f)
			defer srv.Close()

			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{"simulate", "--url", srv.URL, "--sessions", "40", "--concurrency", "8", "--seed", "7"},
				envFunc(map[string]string{"VIGIL_SIMULATE_KEY": simTestAdminKey, "VIGIL_SIMULATE_INGEST_KEY": simTestIngestKey}),
				&stdout, &stderr)
			f.mu.Lock()
			defer f.mu.Unlock()
			for _, p := range f.problems {
				t.Errorf("fake server: %s", p)
			}
			if err != nil {
				t.Fatalf("simulate: %v\nstdout:\n%s", err, stdout.String())
			}
			out := stdout.String()
			checkSimReportLines(t, out)
			if !strings.Contains(out, "sessions completed:  40/40\n") {
				t.Errorf("not every session completed:\n%s", out)
			}
			if !strings.Contains(out, "unexpected errors:   0\n") {
				t.Errorf("unexpected errors:\n%s", out)
			}
			if want := fmt.Sprintf("requests sent:       %d\n", f.requests); !strings.Contains(out, want) {
				t.Errorf("report does not count the %d requests the server got:\n%s", f.requests, out)
			}
			// Each refusal the server gave is an expected refusal of the
			// report, code by code.
			for code, n := range f.refused {
				if want := fmt.Sprintf("%s %d", code, n); !strings.Contains(out, want) {
					t.Errorf("report lacks %q:\n%s", want, out)
				}
			}
			for _, code := range []string{"unauthenticated", "locked_out", "consent_required", "session_closed"} {
				if f.refused[code] == 0 {
					t.Errorf("the server never refused with %s", code)
				}
			}
			for _, k := range []string{
				"cmd connect_customer", "cmd pick_up", "cmd request_consent", "cmd grant_consent", "cmd deny_consent",
				"cmd start", "cmd end", "cmd send_file", "cmd receive_file", "cmd chat", "cmd note", "cmd transfer",
				"cmd close", "cmd start_recording", "cmd stop_recording", "cmd view_system_info",
				"consent all", "consent per action", "closed by customer", "closed by technician",
				"chat from customer", "chat from technician", "end by customer", "shared pick-up by another",
				"command after transfer", "unlock", "logout",
			} {
				if f.counts[k] == 0 {
					t.Errorf("the simulation never produced %q (counts %v)", k, f.counts)
				}
			}
			if n := f.counts["session created"]; n != 40 {
				t.Errorf("%d sessions created, want 40", n)
			}
			for id, s := range f.sessions {
				if !s.closed {
					t.Errorf("session %s left open", id)
				}
			}
			// max(2, 8/4) workers plus the lockout victim.
			if len(f.techs) != 3 || f.counts["logout"] != 3 {
				t.Errorf("%d technicians, %d logouts; want 3 and 3", len(f.techs), f.counts["logout"])
			}
			if n := strings.Count(stderr.String(), "40/40"); n == 0 {
				t.Errorf("no progress bar on stderr: %q", stderr.String())
			}
			for _, secret := range append([]string{simTestAdminKey, simTestIngestKey}, f.secrets()...) {
				if strings.Contains(out, secret) || strings.Contains(stderr.String(), secret) {
					t.Errorf("a key, password or token appears in the output")
				}
			}
		})
	}
}

func TestSimulateSeedReplaysTheSameScript(t *testing.T) {
	script := func() []string {
		f := newFakeVigil(simLockoutThreshold)
		srv := httptest.NewServer(f)
		defer srv.Close()
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"simulate", "--url", srv.URL, "--sessions", "12", "--concurrency", "4", "--seed", "99", "--quiet",
			"--key", simTestAdminKey, "--ingest-key", simTestIngestKey}, envFunc(nil), &stdout, &stderr)
		if err != nil {
			t.Fatalf("simulate: %v\n%s", err, stdout.String())
		}
		if stderr.Len() != 0 {
			t.Errorf("--quiet, yet stderr has %q", stderr.String())
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		var out []string
		for _, s := range f.sessions {
			out = append(out, s.tracking[strings.LastIndex(s.tracking, "-"):]+": "+strings.Join(s.script, ","))
		}
		slices.Sort(out)
		return out
	}
	a, b := script(), script()
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, different sessions (-first +second):\n%s", diff)
	}
}

func TestSimulateReportsUnexpectedErrors(t *testing.T) {
	f := newFakeVigil(simLockoutThreshold)
	f.fail = "note"
	srv := httptest.NewServer(f)
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"simulate", "--url", srv.URL, "--sessions", "10", "--concurrency", "3", "--seed", "1", "--quiet",
		"--key", simTestAdminKey, "--ingest-key", simTestIngestKey}, envFunc(nil), &stdout, &stderr)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("err = %v, want exit 1", err)
	}
	out := stdout.String()
	checkSimReportLines(t, out)
	if !strings.Contains(out, "sessions completed:  0/10\n") || !strings.Contains(out, "unexpected errors:   10\n") {
		t.Errorf("want 0 sessions completed and 10 errors:\n%s", out)
	}
	if !strings.Contains(out, "(note): 500 internal: internal error") || !strings.Contains(out, "(first 5 shown)") {
		t.Errorf("the report does not show the first errors:\n%s", out)
	}
}

func TestSimulateStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFakeVigil(simLockoutThreshold)
	f.onSession = func(n int) {
		if n == 3 {
			cancel()
		}
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"simulate", "--url", srv.URL, "--sessions", "100000", "--concurrency", "4", "--quiet",
			"--key", simTestAdminKey, "--ingest-key", simTestIngestKey}, envFunc(nil), &stdout, &stderr)
	}()
	select {
	case err := <-done:
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 130 {
			t.Fatalf("err = %v, want exit 130", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("simulate did not stop after the context was cancelled")
	}
	if out := stdout.String(); !strings.Contains(out, "(interrupted)") || !strings.Contains(out, "unexpected errors:   0\n") {
		t.Errorf("want an interrupted report without errors:\n%s", out)
	}
}

// checkSimReportLines checks the shape of every line of the summary.
func checkSimReportLines(t *testing.T, out string) {
	t.Helper()
	ms := `\d+\.\d{3} ms`
	for _, re := range []string{
		`(?m)^run:                 [0-9a-f]{8} \(seed \d+\)$`,
		`(?m)^sessions completed:  \d+/\d+( \(interrupted\))?$`,
		`(?m)^requests sent:       \d+$`,
		`(?m)^elapsed:             \d+\.\d{3} s$`,
		`(?m)^requests per second: \d+\.\d$`,
		`(?m)^latency p50:         ` + ms + `$`,
		`(?m)^latency p90:         ` + ms + `$`,
		`(?m)^latency p99:         ` + ms + `$`,
		`(?m)^latency max:         ` + ms + `$`,
		`(?m)^expected refusals:   \d+( \(([a-z_]+ \d+)(, [a-z_]+ \d+)*\))?$`,
		`(?m)^unexpected errors:   \d+$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("report has no line matching %s:\n%s", re, out)
		}
	}
}

// fakeVigil is a test double of the HTTP API of docs/api.md: just enough
// state to answer the simulator as the contract says, and a strict check
// of every request, recorded in problems.
type fakeVigil struct {
	lockAt    int            // the failure that answers 423
	fail      string         // a command type answered 500
	onSession func(n int)    // called after each session is created
	mu        sync.Mutex     // guards everything below
	problems  []string       // contract violations seen
	requests  int            // requests received
	refused   map[string]int // refusals given, by code
	counts    map[string]int // what happened, for coverage checks
	groups    map[string]fakeGroup
	techs     map[string]*fakeTech // by id
	tokens    map[string]*fakeTech
	sessions  map[string]*fakeSession
	idemKeys  map[string]bool
}

type fakeGroup struct{ policy domain.GroupPolicy }

type fakeTech struct {
	id, group, email, password string
	failures                   int
	locked                     bool
}

type fakeSession struct {
	creator, holder    string
	shared             bool
	transferred        bool
	connected, closed  bool
	all                bool
	pending, consented map[string]bool
	active             map[string]bool
	tracking           string
	script             []string
}

func newFakeVigil(lockAt int) *fakeVigil {
	return &fakeVigil{
		lockAt: lockAt, refused: map[string]int{}, counts: map[string]int{}, groups: map[string]fakeGroup{},
		techs: map[string]*fakeTech{}, tokens: map[string]*fakeTech{}, sessions: map[string]*fakeSession{},
		idemKeys: map[string]bool{},
	}
}

func (f *fakeVigil) secrets() []string {
	var out []string
	for _, t := range f.techs {
		out = append(out, t.password)
	}
	for tok := range f.tokens {
		out = append(out, tok)
	}
	return out
}

var (
	fakeLowerHex = func(n int) *regexp.Regexp { return regexp.MustCompile(fmt.Sprintf(`^[0-9a-f]{%d}$`, n)) }
	fakeMD5      = fakeLowerHex(32)
	fakeSHA256   = fakeLowerHex(64)
	fakePath     = regexp.MustCompile(`^/v1/(groups|technicians|auth/login|auth/logout|sessions|technicians/([^/]+)/unlock|sessions/([^/]+)/commands)$`)
)

// fakeErr is an error answer of the contract.
type fakeErr struct {
	status    int
	code, msg string
	problem   bool // the request broke the contract
}

func (f *fakeVigil) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	status, body, e := f.serve(r)
	if e != nil {
		if e.problem {
			f.problems = append(f.problems, fmt.Sprintf("%s %s: %s", r.Method, r.URL.Path, e.msg))
		} else if e.status != http.StatusInternalServerError {
			f.refused[e.code]++
		}
		status, body = e.status, map[string]any{"error": map[string]string{"code": e.code, "message": e.msg}}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if body != nil {
		_ = json.NewEncoder(w).Encode(body)
	}
}

func fakeBad(format string, a ...any) *fakeErr {
	return &fakeErr{status: http.StatusBadRequest, code: "invalid", msg: fmt.Sprintf(format, a...), problem: true}
}

func fakeRefuse(status int, code, msg string) *fakeErr {
	return &fakeErr{status: status, code: code, msg: msg}
}

// fakeDecode decodes a JSON object into dst, refusing unknown fields and
// trailing data, after checking that every required key is present.
func fakeDecode(r *http.Request, dst any, required ...string) *fakeErr {
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return fakeBad("Content-Type %q", ct)
	}
	var raw map[string]json.RawMessage
	var buf bytes.Buffer
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20)).Decode(&raw); err != nil {
		return fakeBad("body is not a JSON object: %v", err)
	}
	for _, k := range required {
		if _, ok := raw[k]; !ok {
			return fakeBad("missing field %q", k)
		}
	}
	_ = json.NewEncoder(&buf).Encode(raw)
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return fakeBad("body: %v", err)
	}
	return nil
}

func (f *fakeVigil) serve(r *http.Request) (int, any, *fakeErr) {
	if r.Method != http.MethodPost {
		return 0, nil, fakeBad("the simulator only POSTs")
	}
	m := fakePath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		return 0, nil, &fakeErr{status: 404, code: "not_found", msg: "no such path", problem: true}
	}
	cred, hasAuth := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if m[1] == "auth/login" {
		if r.Header.Get("Authorization") != "" {
			return 0, nil, fakeBad("login with an Authorization header")
		}
		return f.login(r)
	}
	if !hasAuth || cred == "" {
		return 0, nil, &fakeErr{status: 401, code: "unauthenticated", msg: "no credential", problem: true}
	}
	idem := r.Header.Get("Idempotency-Key")
	if m[1] != "auth/logout" {
		if idem == "" || len(idem) > 200 || strings.IndexFunc(idem, func(c rune) bool { return c < 0x21 || c > 0x7e }) >= 0 {
			return 0, nil, fakeBad("Idempotency-Key %q: want 1–200 printable characters", idem)
		}
		if f.idemKeys[idem] {
			return 0, nil, fakeBad("Idempotency-Key %q reused", idem)
		}
		f.idemKeys[idem] = true
	}
	admin := func() *fakeErr {
		if cred != simTestAdminKey {
			return &fakeErr{status: 403, code: "forbidden", msg: "admin role needed", problem: true}
		}
		return nil
	}
	switch {
	case m[1] == "groups":
		if e := admin(); e != nil {
			return 0, nil, e
		}
		return f.createGroup(r)
	case m[1] == "technicians":
		if e := admin(); e != nil {
			return 0, nil, e
		}
		return f.createTech(r)
	case m[2] != "":
		if e := admin(); e != nil {
			return 0, nil, e
		}
		t := f.techs[m[2]]
		if t == nil {
			return 0, nil, &fakeErr{status: 404, code: "not_found", msg: "no technician", problem: true}
		}
		if r.ContentLength > 0 {
			var body struct{}
			if e := fakeDecode(r, &body); e != nil {
				return 0, nil, e
			}
		}
		t.locked, t.failures = false, 0
		f.counts["unlock"]++
		return 200, map[string]any{"id": t.id, "locked": false, "disabled": false}, nil
	case m[1] == "auth/logout":
		t := f.tokens[cred]
		if t == nil {
			return 0, nil, &fakeErr{status: 401, code: "unauthenticated", msg: "unknown token", problem: true}
		}
		delete(f.tokens, cred)
		f.counts["logout"]++
		return 204, nil, nil
	case m[1] == "sessions":
		return f.createSession(r, cred)
	default:
		return f.command(r, cred, m[3])
	}
}

func (f *fakeVigil) createGroup(r *http.Request) (int, any, *fakeErr) {
	var g struct {
		Name        string             `json:"name"`
		Permissions map[string]bool    `json:"permissions"`
		Policy      domain.GroupPolicy `json:"policy"`
		IPAllowlist []string           `json:"ip_allowlist"`
	}
	if e := fakeDecode(r, &g, "name"); e != nil {
		return 0, nil, e
	}
	var granted []string
	for p, ok := range g.Permissions {
		if !domain.Permission(p).Valid() {
			return 0, nil, fakeBad("unknown permission %q", p)
		}
		if ok {
			granted = append(granted, p)
		}
	}
	if len(granted) != len(domain.Permissions()) {
		return 0, nil, fakeBad("%d permissions granted, the simulator wants all %d", len(granted), len(domain.Permissions()))
	}
	if !g.Policy.OneTimePromptAllowed || g.Policy.LockoutThreshold != simLockoutThreshold || g.Policy.RequireSecondFactor {
		return 0, nil, fakeBad("policy %+v: want the one-time prompt, threshold %d, no second factor", g.Policy, simLockoutThreshold)
	}
	id := fakeID()
	f.groups[id] = fakeGroup{policy: g.Policy}
	return 201, map[string]any{"id": id, "name": g.Name, "permissions": g.Permissions, "policy": g.Policy, "ip_allowlist": g.IPAllowlist}, nil
}

func (f *fakeVigil) createTech(r *http.Request) (int, any, *fakeErr) {
	var t struct {
		Email              string `json:"email"`
		Name               string `json:"name"`
		GroupID            string `json:"group_id"`
		Password           string `json:"password"`
		MustChangePassword bool   `json:"must_change_password"`
	}
	if e := fakeDecode(r, &t, "email", "name", "group_id", "password"); e != nil {
		return 0, nil, e
	}
	g, ok := f.groups[t.GroupID]
	if !ok {
		return 0, nil, fakeBad("unknown group %q", t.GroupID)
	}
	for _, o := range f.techs {
		if o.email == t.Email {
			return 0, nil, &fakeErr{status: 409, code: "conflict", msg: "e-mail taken", problem: true}
		}
	}
	if err := g.policy.Password.Check(t.Password); err != nil || len(t.Password) < 16 {
		return 0, nil, &fakeErr{status: 422, code: "weak_password", msg: fmt.Sprint(err), problem: true}
	}
	if t.MustChangePassword {
		return 0, nil, fakeBad("the simulator cannot change passwords")
	}
	tech := &fakeTech{id: fakeID(), group: t.GroupID, email: t.Email, password: t.Password}
	f.techs[tech.id] = tech
	return 201, map[string]any{"id": tech.id, "group_id": tech.group, "email": tech.email, "name": t.Name}, nil
}

func (f *fakeVigil) login(r *http.Request) (int, any, *fakeErr) {
	var l struct {
		Email       string `json:"email"`
		Password    string `json:"password"`
		TOTP        string `json:"totp"`
		NewPassword string `json:"new_password"`
		Tenant      string `json:"tenant"`
	}
	if e := fakeDecode(r, &l, "email", "password"); e != nil {
		return 0, nil, e
	}
	var t *fakeTech
	for _, o := range f.techs {
		if o.email == l.Email {
			t = o
		}
	}
	switch {
	case t == nil:
		return 0, nil, fakeRefuse(401, "unauthenticated", "wrong e-mail or password")
	case t.locked:
		return 0, nil, fakeRefuse(423, "locked_out", "locked out")
	case l.Password != t.password:
		t.failures++
		f.counts["failed login"]++
		if t.failures >= f.lockAt {
			t.locked = true
			return 0, nil, fakeRefuse(423, "locked_out", "locked out")
		}
		if t.failures >= simLockoutThreshold {
			t.locked = true // locked by this failure, said from the next login on
		}
		return 0, nil, fakeRefuse(401, "unauthenticated", "wrong e-mail or password")
	}
	t.failures = 0
	tok := "vt_" + t.id + "_" + fakeID()
	f.tokens[tok] = t
	return 200, map[string]any{"token": tok, "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "technician_id": t.id, "scope": "full"}, nil
}

func (f *fakeVigil) createSession(r *http.Request, cred string) (int, any, *fakeErr) {
	t := f.tokens[cred]
	if t == nil {
		return 0, nil, &fakeErr{status: 403, code: "forbidden", msg: "the simulator's technicians create sessions", problem: true}
	}
	var s struct {
		Queue        string `json:"queue"`
		Channel      string `json:"channel"`
		GroupID      string `json:"group_id"`
		TechnicianID string `json:"technician_id"`
		Customer     *struct{ Name, Email string }
		CustomFields map[string]string `json:"custom_fields"`
		TrackingID   string            `json:"tracking_id"`
	}
	if e := fakeDecode(r, &s, "queue"); e != nil {
		return 0, nil, e
	}
	switch {
	case s.Queue != "private" && s.Queue != "shared":
		return 0, nil, fakeBad("queue %q", s.Queue)
	case s.GroupID != "" || s.TechnicianID != "":
		return 0, nil, fakeBad("group_id and technician_id are for ingest keys only")
	case s.Customer == nil || s.Customer.Name == "" || !strings.Contains(s.Customer.Email, "@"):
		return 0, nil, fakeBad("customer %+v", s.Customer)
	}
	for k, v := range s.CustomFields {
		n, err := strconv.Atoi(strings.TrimPrefix(k, "cfield"))
		limit := 64
		if n == 0 {
			limit = 128
		}
		if !strings.HasPrefix(k, "cfield") || err != nil || n < 0 || n > 5 || len(v) > limit {
			return 0, nil, fakeBad("custom field %q=%q", k, v)
		}
	}
	id := fakeID()
	f.sessions[id] = &fakeSession{creator: t.id, shared: s.Queue == "shared", tracking: s.TrackingID,
		pending: map[string]bool{}, consented: map[string]bool{}, active: map[string]bool{}}
	f.counts["session created"]++
	if f.onSession != nil {
		f.onSession(f.counts["session created"])
	}
	return 201, map[string]any{"id": id, "pin": "123456"}, nil
}

// fakeCommands lists the fields of each command type of docs/api.md and
// who sends it: "t" technician, "c" customer (ingest key), "tc" both.
var fakeCommands = map[string]struct {
	required, optional []string
	who                string
}{
	"connect_customer":    {[]string{"platform"}, []string{"ip", "applet_version"}, "c"},
	"pick_up":             {nil, nil, "t"},
	"request_consent":     {[]string{"action"}, nil, "t"},
	"grant_consent":       {[]string{"action"}, nil, "c"},
	"deny_consent":        {[]string{"action"}, nil, "c"},
	"start":               {[]string{"action"}, nil, "t"},
	"end":                 {[]string{"action"}, nil, "tc"},
	"send_file":           {[]string{"name", "size", "md5", "sha256"}, nil, "t"},
	"receive_file":        {[]string{"name", "size", "md5", "sha256"}, nil, "t"},
	"reboot":              {nil, nil, "t"},
	"reconnected":         {nil, nil, "t"},
	"view_system_info":    {nil, nil, "t"},
	"request_credentials": {nil, nil, "t"},
	"deploy_script":       {[]string{"name", "sha256"}, nil, "t"},
	"send_url":            {[]string{"url"}, nil, "t"},
	"chat":                {[]string{"from", "text"}, nil, "tc"},
	"note":                {[]string{"text"}, nil, "t"},
	"set_custom_fields":   {[]string{"custom_fields"}, nil, "tc"},
	"transfer":            {[]string{"to_technician"}, nil, "t"},
	"start_recording":     {nil, []string{"recording_id"}, "t"},
	"stop_recording":      {nil, []string{"recording_id"}, "t"},
	"close":               {nil, []string{"reason"}, "tc"},
}

// fakeConsentOf maps privileged commands to the consent they rely on.
var fakeConsentOf = map[string]string{
	"send_file": "send_file", "receive_file": "receive_file", "reboot": "reboot", "reconnected": "reboot",
	"view_system_info": "system_info", "request_credentials": "request_credentials",
	"deploy_script": "deploy_script", "send_url": "send_url",
}

var fakeContinuous = []string{"remote_control", "desktop_view", "file_manager", "private_session", "screen_share", "clipboard_sync"}

func (f *fakeVigil) command(r *http.Request, cred, id string) (int, any, *fakeErr) {
	s := f.sessions[id]
	if s == nil {
		return 0, nil, &fakeErr{status: 404, code: "not_found", msg: "no session " + id, problem: true}
	}
	var raw map[string]json.RawMessage
	if e := fakeDecode(r, &raw, "type"); e != nil {
		return 0, nil, e
	}
	var typ string
	_ = json.Unmarshal(raw["type"], &typ)
	spec, ok := fakeCommands[typ]
	if !ok {
		return 0, nil, fakeBad("unknown command type %q", typ)
	}
	for _, k := range spec.required {
		if _, ok := raw[k]; !ok {
			return 0, nil, fakeBad("%s without %q", typ, k)
		}
	}
	for k := range raw {
		if k != "type" && !slices.Contains(spec.required, k) && !slices.Contains(spec.optional, k) {
			return 0, nil, fakeBad("%s with unknown field %q", typ, k)
		}
	}
	var c struct {
		Type, Platform, IP, Action, Name, MD5, SHA256, URL, From, Text, Reason string
		AppletVersion                                                          string `json:"applet_version"`
		Size                                                                   int64
		ToTechnician                                                           string `json:"to_technician"`
		RecordingID                                                            string `json:"recording_id"`
	}
	b, _ := json.Marshal(raw)
	if err := json.Unmarshal(b, &c); err != nil {
		return 0, nil, fakeBad("%s: wrong field types: %v", typ, err)
	}

	// Who sends it: the customer's ingest key, or the holding technician.
	var tech *fakeTech
	switch {
	case cred == simTestIngestKey:
		if !strings.Contains(spec.who, "c") {
			return 0, nil, &fakeErr{status: 403, code: "forbidden", msg: typ + " from the ingest key", problem: true}
		}
	case f.tokens[cred] != nil:
		tech = f.tokens[cred]
		if !strings.Contains(spec.who, "t") {
			return 0, nil, &fakeErr{status: 403, code: "forbidden", msg: typ + " from a technician", problem: true}
		}
	default:
		return 0, nil, &fakeErr{status: 401, code: "unauthenticated", msg: "unknown credential", problem: true}
	}
	if typ == "chat" && (tech == nil) != (c.From == "customer") {
		return 0, nil, fakeBad("chat from %q with the wrong credential", c.From)
	}
	if f.fail == typ {
		return 0, nil, &fakeErr{status: 500, code: "internal", msg: "internal error"}
	}
	if s.closed {
		return 0, nil, fakeRefuse(409, "session_closed", "session is closed")
	}
	s.script = append(s.script, strings.TrimSpace(typ+" "+c.Action))
	f.counts["cmd "+typ]++
	if tech != nil && typ != "pick_up" {
		if s.holder != tech.id {
			return 0, nil, &fakeErr{status: 403, code: "forbidden", msg: "technician does not hold the session", problem: true}
		}
		if s.transferred {
			f.counts["command after transfer"]++
		}
	}
	if c.Action != "" && c.Action != consentAll && !slices.Contains(fakeContinuous, c.Action) && !slices.Contains(slices.Collect(maps.Values(fakeConsentOf)), c.Action) {
		return 0, nil, fakeBad("unknown action %q", c.Action)
	}

	switch typ {
	case "connect_customer":
		if s.connected || c.Platform == "" {
			return 0, nil, fakeBad("connect twice or without a platform")
		}
		if c.IP != "" && !regexp.MustCompile(`^[0-9a-f:.]+$`).MatchString(c.IP) {
			return 0, nil, fakeBad("ip %q", c.IP)
		}
		s.connected = true
	case "pick_up":
		switch {
		case !s.connected || s.holder != "":
			return 0, nil, &fakeErr{status: 409, code: "conflict", msg: "not pickable", problem: true}
		case !s.shared && tech.id != s.creator:
			return 0, nil, &fakeErr{status: 403, code: "forbidden", msg: "another's private session", problem: true}
		}
		if tech.id != s.creator {
			f.counts["shared pick-up by another"]++
		}
		s.holder = tech.id
	case "request_consent":
		s.pending[c.Action] = true
		if c.Action == consentAll {
			f.counts["consent all"]++
		} else {
			f.counts["consent per action"]++
		}
	case "grant_consent", "deny_consent":
		if !s.pending[c.Action] {
			return 0, nil, &fakeErr{status: 409, code: "conflict", msg: "no pending request for " + c.Action, problem: true}
		}
		delete(s.pending, c.Action)
		granted := typ == "grant_consent"
		if c.Action == consentAll {
			s.all = granted
		} else {
			s.consented[c.Action] = granted
		}
	case "start":
		if !s.all && !s.consented[c.Action] {
			return 0, nil, fakeRefuse(409, "consent_required", "the customer has not consented to "+c.Action)
		}
		if s.active[c.Action] {
			return 0, nil, &fakeErr{status: 409, code: "conflict", msg: "already running", problem: true}
		}
		s.active[c.Action] = true
	case "end":
		if !s.active[c.Action] {
			return 0, nil, &fakeErr{status: 409, code: "conflict", msg: c.Action + " is not running", problem: true}
		}
		if tech == nil {
			f.counts["end by customer"]++
		}
		delete(s.active, c.Action)
	case "send_file", "receive_file":
		if c.Name == "" || c.Size <= 0 || !fakeMD5.MatchString(c.MD5) || !fakeSHA256.MatchString(c.SHA256) {
			return 0, nil, fakeBad("%s name %q size %d md5 %q sha256 %q", typ, c.Name, c.Size, c.MD5, c.SHA256)
		}
	case "deploy_script":
		if c.Name == "" || !fakeSHA256.MatchString(c.SHA256) {
			return 0, nil, fakeBad("deploy_script name %q sha256 %q", c.Name, c.SHA256)
		}
	case "send_url":
		if !strings.HasPrefix(c.URL, "https://") {
			return 0, nil, fakeBad("url %q", c.URL)
		}
	case "chat":
		if c.Text == "" {
			return 0, nil, fakeBad("empty chat")
		}
		f.counts["chat from "+c.From]++
	case "note":
		if c.Text == "" {
			return 0, nil, fakeBad("empty note")
		}
	case "transfer":
		to := f.techs[c.ToTechnician]
		if to == nil || to.id == tech.id {
			return 0, nil, fakeBad("transfer to %q", c.ToTechnician)
		}
		s.holder, s.transferred = to.id, true
		s.all, s.consented, s.active = false, map[string]bool{}, map[string]bool{}
	case "close":
		s.closed = true
		if tech == nil {
			f.counts["closed by customer"]++
		} else {
			f.counts["closed by technician"]++
		}
	}
	if a, ok := fakeConsentOf[typ]; ok && !s.all && !s.consented[a] {
		return 0, nil, fakeRefuse(409, "consent_required", "the customer has not consented to "+a)
	}
	return 200, map[string]any{"events": []map[string]any{{"id": fakeID(), "type": "session." + typ, "version": len(s.script), "position": f.requests}}}, nil
}

func fakeID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// TestSimulateRetriesUnavailable: a write with an Idempotency-Key answered
// 503 (a failover) is sent again after Retry-After, as is its repeat
// answered 409 "still running"; one without a key is not; the call's
// latency is counted once.
func TestSimulateRetriesUnavailable(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	answers := []int{http.StatusServiceUnavailable, http.StatusServiceUnavailable, http.StatusConflict, http.StatusCreated}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		seen = append(seen, fmt.Sprintf("%s %s %v", r.Header.Get("Idempotency-Key"), r.URL.Path, body["n"]))
		w.Header().Set("Retry-After", "0")
		status := http.StatusServiceUnavailable
		if r.Header.Get("Idempotency-Key") != "" {
			status, answers = answers[0], answers[1:]
		}
		w.WriteHeader(status)
		switch status {
		case http.StatusCreated:
			_, _ = w.Write([]byte(`{"ok":true}`))
		case http.StatusConflict:
			_, _ = w.Write([]byte(`{"error":{"code":"conflict","message":"a request with this Idempotency-Key is still running"}}`))
		default:
			_, _ = w.Write([]byte(`{"error":{"code":"unavailable","message":"the database is out of reach"}}`))
		}
	}))
	defer srv.Close()
	c := newSimClient(srv.URL, 1, 5*time.Second)
	ctx := context.Background()
	var out struct{ OK bool }
	if err := c.do(ctx, simCall{method: http.MethodPost, path: "/v1/x", idem: "k1", want: http.StatusCreated, in: map[string]int{"n": 7}, out: &out}); err != nil || !out.OK {
		t.Fatalf("call with a key: %v, %+v; want success after the retries", err, out)
	}
	if got := c.retries(); got != 3 {
		t.Errorf("retried %d times, want 3 (503, 503, 409 still running)", got)
	}
	for _, s := range seen {
		if s != "k1 /v1/x 7" {
			t.Errorf("an attempt was sent as %q, want the same key, path and body every time", s)
		}
	}
	var ae *apiError
	if err := c.do(ctx, simCall{method: http.MethodPost, path: "/v1/y", want: http.StatusCreated, in: map[string]int{"n": 1}}); !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable {
		t.Errorf("call without a key: %v, want the 503 at once", err)
	}
	if got := len(c.latencies()); got != 2 {
		t.Errorf("%d latencies, want 2 (one per call)", got)
	}
}
