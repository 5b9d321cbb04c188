package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
)

// The resource bounds of TestHostileInput, documented in docs/security.md.
// They are bounds on what one hostile request may cost the serve process,
// not timings: a request that is refused early costs milliseconds and a few
// megabytes; one that reaches an unbounded parser or resolver costs
// seconds and hundreds of megabytes.
const (
	hostileCPUPerRequest = 2 * time.Second // CPU time (user+system) of serve per request
	hostileRSSGrowth     = 200 << 20       // RSS growth of serve over one kind of request
	hostilePeakRSS       = 1 << 30         // serve's peak RSS (VmHWM) over the whole test
	hostileWait          = 30 * time.Second
)

// hostileCase is one bad request.
type hostileCase struct {
	name         string
	method, path string
	bearer       string
	body         []byte
	header       map[string]string
	// raw is sent as is on a fresh connection instead: requests net/http
	// refuses before any handler, which answer in the JSON form too
	// (httpapi.JSONErrorListener; this test serves plain HTTP).
	raw []byte
	// want is the status class: 4 (a refusal, the default) or 0 (anything
	// but a 5xx: the request is odd, not wrong).
	want int
	// code, when set, is the error code the refusal must carry.
	code string
}

// hostileServer is a vigil serve process under test.
type hostileServer struct {
	t       *testing.T
	base    string
	pid     int
	logFile string
	root    string // the temporary folder holding the data dir

	admin, ingest      string
	groupA, groupB     string
	techA, techB       string // technician ids
	tokenA, tokenB     string
	sessionA, sessionB string // held by techA, techB
	// attacker is the client address (X-Forwarded-For, serve trusting
	// loopback as its proxy) of the current kind's hostile requests;
	// everything else comes from officeAddr. Logins are throttled per
	// address, and one kind's guesses must not spend another's budget.
	attacker               string
	kinds                  int
	peakCPU                time.Duration
	peakRSS, peakRSSGrowth int64
	peakKind               string
}

// buildVigil compiles the vigil binary without the race detector, so that
// its RSS and CPU are the real program's.
func buildVigil(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "vigil")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startHostileServer(t *testing.T) *hostileServer {
	t.Helper()
	bin := buildVigil(t)
	db := pgtest.New(t)
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	addr := freeAddr(t)
	vars := map[string]string{
		"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "warn", "VIGIL_HTTP_ADDR": addr,
		"VIGIL_RELAY_ADDR": "127.0.0.1:0", "VIGIL_SCHEDULER_INTERVAL": "1s", "VIGIL_TRUSTED_PROXIES": "127.0.0.1",
		// Short enough for the slow-client cases to end quickly.
		"VIGIL_HTTP_READ_TIMEOUT": "2s", "VIGIL_RECORDING_MIN_RATE": "1KiB", "VIGIL_RECORDING_RATE_WINDOW": "2s",
	}
	logFile := filepath.Join(root, "serve.log")
	lf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd := exec.Command(bin, "serve")
	cmd.Env = os.Environ()
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(hostileWait):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	h := &hostileServer{t: t, base: "http://" + addr, pid: cmd.Process.Pid, logFile: logFile, root: root}
	h.eventually("serve ready", func() bool {
		r, err := http.Get(h.base + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	// serve generated the keys; the CLI uses them.
	env := envFunc(vars)
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, []string{"tenant", "create", "--name", "Acme", "--json"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var tenant map[string]string
	_ = json.Unmarshal(out.Bytes(), &tenant)
	out.Reset()
	if err := run(ctx, []string{"apikey", "create", "--tenant", tenant["tenant"], "--role", "ingest", "--json"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var ingest map[string]string
	_ = json.Unmarshal(out.Bytes(), &ingest)

	h.admin, h.ingest = tenant["admin_key"], ingest["key"]
	perms := map[string]bool{}
	for _, p := range []string{"remote_control", "reboot", "desktop_view", "record_sessions", "file_transfer", "private_session",
		"file_manager", "request_credentials", "send_url", "clipboard_sync", "system_info", "deploy_script", "one_time_prompt",
		"transfer_session", "screen_share"} {
		perms[p] = true
	}
	h.groupA = h.must("POST", "/v1/groups", h.admin, map[string]any{"name": "Level 1", "permissions": perms}, 201)["id"].(string)
	h.groupB = h.must("POST", "/v1/groups", h.admin, map[string]any{"name": "Level 2", "permissions": perms}, 201)["id"].(string)
	h.techA, h.tokenA = h.technician(h.groupA, "a@example.com")
	h.techB, h.tokenB = h.technician(h.groupB, "b@example.com")
	h.sessionA = h.heldSession(h.tokenA)
	h.sessionB = h.heldSession(h.tokenB)
	return h
}

const (
	hostilePassword = "Correct-Horse-9-Battery"
	officeAddr      = "192.0.2.10"
)

func (h *hostileServer) technician(group, email string) (id, token string) {
	h.t.Helper()
	id = h.must("POST", "/v1/technicians", h.admin, map[string]any{"email": email, "name": "Tech", "group_id": group, "password": hostilePassword}, 201)["id"].(string)
	token = h.must("POST", "/v1/auth/login", "", map[string]any{"email": email, "password": hostilePassword}, 200)["token"].(string)
	return id, token
}

// heldSession creates a session picked up by the technician of token, with
// its customer connected.
func (h *hostileServer) heldSession(token string) string {
	h.t.Helper()
	id := h.must("POST", "/v1/sessions", token, map[string]any{"queue": "shared", "channel": "web"}, 201)["id"].(string)
	h.must("POST", "/v1/sessions/"+id+"/commands", h.ingest, map[string]any{"type": "connect_customer", "platform": "windows"}, 200)
	h.must("POST", "/v1/sessions/"+id+"/commands", token, map[string]any{"type": "pick_up"}, 200)
	return id
}

func (h *hostileServer) eventually(what string, cond func() bool) {
	h.t.Helper()
	for deadline := time.Now().Add(hostileWait); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			h.t.Fatalf("never: %s\nserve log:\n%s", what, h.logs())
		}
	}
}

func (h *hostileServer) logs() string {
	b, _ := os.ReadFile(h.logFile)
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// send makes one request; body is sent as is when []byte or string, as
// JSON otherwise.
func (h *hostileServer) send(method, path, bearer string, body any, header map[string]string) (int, []byte, http.Header) {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", officeAddr)
	for k, v := range header {
		req.Header[k] = []string{v}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v\nserve log:\n%s", method, path, err, h.logs())
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw, res.Header
}

func (h *hostileServer) must(method, path, bearer string, body any, status int) map[string]any {
	h.t.Helper()
	got, raw, _ := h.send(method, path, bearer, body, nil)
	if got != status {
		h.t.Fatalf("%s %s: %d %s, want %d", method, path, got, raw, status)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// sendRaw writes req on a fresh connection and reads one answer.
func (h *hostileServer) sendRaw(req []byte) (int, []byte) {
	h.t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(hostileWait))
	if _, err := c.Write(req); err != nil {
		h.t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		h.t.Fatalf("no answer to a raw request: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// stats reads serve's CPU time and resident set from /proc.
func (h *hostileServer) stats() (cpu time.Duration, rss, hwm int64) {
	h.t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.pid))
	if err != nil {
		h.t.Fatalf("serve is gone: %v\nserve log:\n%s", err, h.logs())
	}
	// Fields after the command name, which may hold spaces: state is
	// field 3, utime 14, stime 15, in clock ticks (100 per second).
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+st) * 10 * time.Millisecond
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.pid))
	for _, line := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return cpu, rss, hwm
}

// check sends c and asserts the answer: no 5xx, a refusal when one is
// wanted, the JSON error form, and what the request cost.
func (h *hostileServer) check(t *testing.T, c hostileCase) {
	t.Helper()
	cpu0, _, _ := h.stats()
	var status int
	var raw []byte
	if c.raw != nil {
		status, raw = h.sendRaw(c.raw)
	} else {
		status, raw, _ = h.send(c.method, c.path, c.bearer, c.body, c.header)
	}
	cpu1, rss, _ := h.stats()
	if d := cpu1 - cpu0; d > hostileCPUPerRequest {
		t.Errorf("%s: serve spent %s of CPU on it (bound %s)", c.name, d, hostileCPUPerRequest)
	} else if d > h.peakCPU {
		h.peakCPU = d
	}
	if rss > h.peakRSS {
		h.peakRSS = rss
	}
	show := raw
	if len(show) > 300 {
		show = show[:300]
	}
	switch {
	case status >= 500:
		t.Errorf("%s: %d %s", c.name, status, show)
		return
	case c.want != 0 && status/100 != c.want:
		t.Errorf("%s: %d %s, want %dxx", c.name, status, show, c.want)
		return
	}
	if status < 400 {
		return
	}
	if c.path == "/graphql" {
		var g struct {
			Errors []struct {
				Message    string
				Extensions struct{ Code string }
			}
		}
		if err := json.Unmarshal(raw, &g); err != nil || len(g.Errors) == 0 || g.Errors[0].Message == "" || g.Errors[0].Extensions.Code == "" {
			t.Errorf("%s: %d, not the GraphQL error form: %s", c.name, status, show)
		} else if c.code != "" && g.Errors[0].Extensions.Code != c.code {
			t.Errorf("%s: code %s, want %s", c.name, g.Errors[0].Extensions.Code, c.code)
		}
		return
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(raw, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Errorf("%s: %d, not the JSON error form: %s", c.name, status, show)
	} else if c.code != "" && e.Error.Code != c.code {
		t.Errorf("%s: %d %s, want code %s", c.name, status, show, c.code)
	}
}

// kind runs a kind of hostile request, then asserts that serve's RSS did
// not grow past the bound and that it still serves normal requests, with
// projections that follow.
func (h *hostileServer) kind(t *testing.T, cases []hostileCase) {
	t.Helper()
	_, rss0, _ := h.stats()
	for _, c := range cases {
		if c.method == "" {
			c.method = "POST"
		}
		if c.want == 0 {
			c.want = 4
		}
		if c.want < 0 {
			c.want = 0
		}
		if _, ok := c.header["X-Forwarded-For"]; !ok && c.raw == nil {
			hdr := map[string]string{"X-Forwarded-For": h.attacker}
			for k, v := range c.header {
				hdr[k] = v
			}
			c.header = hdr
		}
		h.check(t, c)
	}
	h.healthy(t, rss0)
}

func (h *hostileServer) healthy(t *testing.T, rss0 int64) {
	t.Helper()
	_, rss, _ := h.stats()
	if g := rss - rss0; g > hostileRSSGrowth {
		t.Errorf("serve's RSS grew by %d MiB (bound %d MiB)", g>>20, hostileRSSGrowth>>20)
	} else if g > h.peakRSSGrowth {
		h.peakRSSGrowth, h.peakKind = g, t.Name()
	}
	if status, raw, _ := h.send("GET", "/readyz", "", nil, nil); status != 200 {
		t.Fatalf("/readyz after the hostile requests: %d %s", status, raw)
	}
	if status, raw, _ := h.send("GET", "/v1/groups/"+h.groupA, h.admin, nil, nil); status != 200 {
		t.Fatalf("a normal request after the hostile ones: %d %s", status, raw)
	}
	// The projections follow: a session created now shows in GraphQL.
	status, raw, _ := h.send("POST", "/v1/sessions", h.tokenA, map[string]any{"queue": "shared", "channel": "web"}, nil)
	if status != 201 {
		t.Fatalf("a normal session after the hostile requests: %d %s", status, raw)
	}
	var s struct{ ID string }
	_ = json.Unmarshal(raw, &s)
	q := map[string]any{"query": `query($id: ID!) { session(id: $id) { id } }`, "variables": map[string]any{"id": s.ID}}
	h.eventually("the projections show a session created after the hostile requests", func() bool {
		_, raw, _ := h.send("POST", "/graphql", h.admin, q, nil)
		return bytes.Contains(raw, []byte(s.ID))
	})
}

// events counts a session's events, as the admin reads them.
func (h *hostileServer) events(session string) int {
	h.t.Helper()
	var out struct{ Events []json.RawMessage }
	_, raw, _ := h.send("GET", "/v1/sessions/"+session+"/events", h.admin, nil, nil)
	if err := json.Unmarshal(raw, &out); err != nil || len(out.Events) == 0 {
		h.t.Fatalf("events of %s: %s", session, raw)
	}
	return len(out.Events)
}

func gqlBody(query string) []byte {
	b, _ := json.Marshal(map[string]any{"query": query})
	return b
}

func graphqlCases(admin string) []hostileCase {
	aliases := func(n int) string {
		var b strings.Builder
		b.WriteString("{ ")
		for i := range n {
			if i%2 == 0 {
				b.WriteString("x: projectionStatus { name } ")
			} else {
				b.WriteString("x: sessions(first: 1) { totalCount } ")
			}
		}
		b.WriteString("}")
		return b.String()
	}
	const deep = 100000
	deepVars := []byte(`{"query": "query($f: SessionFilter) { sessions(filter: $f) { totalCount } }", "variables": {"f": ` +
		strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000) + "}}")
	cases := []hostileCase{
		{name: "fragment cycle", body: gqlBody(`query { ...A } fragment A on Query { ...B } fragment B on Query { ...A }`)},
		{name: "fragment self-spread", body: gqlBody(`query { ...A } fragment A on Query { projectionStatus { name } ...A }`)},
		{name: "1,000 conflicting aliases", body: gqlBody(aliases(1000))},
		{name: "3,000 conflicting aliases", body: gqlBody(aliases(3000))},
		{name: "100,000 levels deep", body: gqlBody("{" + strings.Repeat("a{", deep) + strings.Repeat("}", deep+1))},
		{name: "20,000 repeated fields", body: gqlBody("{" + strings.Repeat(" projectionStatus { name }", 20000) + " }")},
		{name: "50,000 @include directives", body: gqlBody("{ projectionStatus" + strings.Repeat(" @include(if: true)", 50000) + " { name } }")},
		{name: "nested list literal", body: gqlBody("{ sessions(first: " + strings.Repeat("[", 50000) + "1" + strings.Repeat("]", 50000) + ") { totalCount } }")},
		{name: "nested object literal", body: gqlBody("{ sessions(filter: " + strings.Repeat("{a: ", 30000) + "1" + strings.Repeat("}", 30000) + ") { totalCount } }")},
		{name: "deeply nested variables", body: deepVars},
		{name: "NUL in an id argument", body: gqlBody(`{ session(id: "\u0000") { id } }`), want: -1},
		{name: "invalid UTF-8 in a query", body: []byte("{\"query\": \"{ session(id: \\\"\xff\xfe\\\") { id } }\"}"), want: -1},
		{name: "null body", body: []byte("null")},
		{name: "null query", body: []byte(`{"query": null}`)},
		{name: "not JSON", body: []byte("{ projectionStatus { name } }")},
	}
	for i := range cases {
		cases[i].path, cases[i].bearer = "/graphql", admin
	}
	return cases
}

func TestHostileInput(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	h := startHostileServer(t)
	nul := "a\u0000b"
	// run runs one kind as a subtest; the server's helpers fail that
	// subtest, not the whole test.
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, func(t *testing.T) {
			prev := h.t
			h.t = t
			h.kinds++
			h.attacker = fmt.Sprintf("198.51.100.%d", h.kinds)
			defer func() { h.t = prev }()
			f(t)
		})
	}
	// fresh returns the commands path of a new session held by techA: a
	// case that slips through (a close, say) spoils no other case.
	fresh := func() string { return "/v1/sessions/" + h.heldSession(h.tokenA) + "/commands" }

	run("GraphQL", func(t *testing.T) { h.kind(t, graphqlCases(h.admin)) })

	run("NULInText", func(t *testing.T) {
		cmds := fresh()
		inv := "invalid"
		h.kind(t, []hostileCase{
			{name: "session channel", path: "/v1/sessions", bearer: h.tokenA, body: jsonOf(map[string]any{"queue": "shared", "channel": nul}), code: inv},
			{name: "session tracking_id", path: "/v1/sessions", bearer: h.tokenA, body: jsonOf(map[string]any{"queue": "shared", "tracking_id": nul}), code: inv},
			{name: "session custom field value", path: "/v1/sessions", bearer: h.tokenA, body: jsonOf(map[string]any{"queue": "shared", "custom_fields": map[string]string{"k": nul}}), code: inv},
			{name: "session custom field name", path: "/v1/sessions", bearer: h.tokenA, body: jsonOf(map[string]any{"queue": "shared", "custom_fields": map[string]string{nul: "v"}}), code: inv},
			{name: "session customer name", path: "/v1/sessions", bearer: h.tokenA, body: jsonOf(map[string]any{"queue": "shared", "customer": map[string]string{"name": nul}}), code: inv},
			{name: "session group_id", path: "/v1/sessions", bearer: h.ingest, body: jsonOf(map[string]any{"queue": "shared", "group_id": nul}), code: inv},
			{name: "chat", path: cmds, bearer: h.tokenA, body: jsonOf(map[string]any{"type": "chat", "from": "technician", "text": nul}), code: inv},
			{name: "note", path: cmds, bearer: h.tokenA, body: jsonOf(map[string]any{"type": "note", "text": nul}), code: inv},
			{name: "set_custom_fields", path: cmds, bearer: h.tokenA, body: jsonOf(map[string]any{"type": "set_custom_fields", "custom_fields": map[string]string{"k": nul}}), code: inv},
			{name: "recording_id", path: cmds, bearer: h.tokenA, body: jsonOf(map[string]any{"type": "start_recording", "recording_id": nul}), code: inv},
			{name: "to_technician", path: cmds, bearer: h.tokenA, body: jsonOf(map[string]any{"type": "transfer", "to_technician": nul}), code: inv},
			{name: "close reason", path: fresh(), bearer: h.tokenA, body: jsonOf(map[string]any{"type": "close", "reason": nul}), code: inv},
			{name: "webhook description", path: "/v1/webhooks", bearer: h.admin, body: jsonOf(map[string]any{"url": "https://example.com/hook", "description": nul}), code: inv},
			{name: "webhook group_id", path: "/v1/webhooks", bearer: h.admin, body: jsonOf(map[string]any{"url": "https://example.com/hook", "group_id": nul}), code: inv},
			{name: "group name", path: "/v1/groups", bearer: h.admin, body: jsonOf(map[string]any{"name": nul}), code: inv},
			{name: "technician name", path: "/v1/technicians", bearer: h.admin, body: jsonOf(map[string]any{"email": "n@example.com", "name": nul, "group_id": h.groupA, "password": hostilePassword}), code: inv},
			{name: "login e-mail", path: "/v1/auth/login", body: jsonOf(map[string]any{"email": nul, "password": "x"})},
		})
	})

	run("PathIDs", func(t *testing.T) {
		h.kind(t, []hostileCase{
			{name: "group %00", method: "GET", path: "/v1/groups/%00", bearer: h.admin},
			{name: "group %ff%fe patch", method: "PATCH", path: "/v1/groups/%ff%fe", bearer: h.admin, body: []byte(`{"name": "x"}`)},
			{name: "recording %ff%fe", method: "GET", path: "/v1/recordings/%ff%fe", bearer: h.admin},
			{name: "technician %00 unlock", path: "/v1/technicians/%00/unlock", bearer: h.admin},
			{name: "technician %ff disable", path: "/v1/technicians/%ff/disable", bearer: h.admin},
			{name: "session %00 events", method: "GET", path: "/v1/sessions/%00/events", bearer: h.admin},
			{name: "session %ff%fe command", path: "/v1/sessions/%ff%fe/commands", bearer: h.tokenA, body: []byte(`{"type": "pick_up"}`)},
			{name: "session %00 recording", path: "/v1/sessions/%00/recordings?recording_id=r", bearer: h.ingest, body: []byte("frames"), header: map[string]string{"Content-Type": "video/webm"}},
			{name: "webhook %00", method: "GET", path: "/v1/webhooks/%00", bearer: h.admin},
			{name: "erasure %ff", method: "GET", path: "/v1/gdpr/erasures/%ff", bearer: h.admin},
			{name: "receipt %00", method: "GET", path: "/v1/events/%00/receipt", bearer: h.admin},
			{name: "report %00", method: "GET", path: "/v1/reports/%00.csv", bearer: h.admin},
			{name: "tile %00", method: "GET", path: "/v1/tlog/tile/0/%00", bearer: h.admin},
		})
	})

	run("Headers", func(t *testing.T) {
		h.kind(t, []hostileCase{
			{name: "NUL in Authorization", raw: []byte("GET /v1/groups/" + h.groupA + " HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer \x00" + h.admin + "\r\n\r\n"), code: "invalid"},
			{name: "NUL in another header", raw: []byte("GET /readyz HTTP/1.1\r\nHost: vigil\r\nX-Trace: a\x00b\r\n\r\n"), code: "invalid"},
			{name: "NUL in the request line", raw: []byte("GET /v1/groups/a\x00b HTTP/1.1\r\nHost: vigil\r\n\r\n"), code: "invalid"},
			{name: "invalid UTF-8 bearer", method: "GET", path: "/v1/groups/" + h.groupA, header: map[string]string{"Authorization": "Bearer \xff\xfe"}, code: "unauthenticated"},
			{name: "invalid UTF-8 Idempotency-Key", path: "/v1/groups", bearer: h.admin, body: []byte(`{"name": "x"}`), header: map[string]string{"Idempotency-Key": "\xff\xfe"}, code: "invalid"},
			{name: "junk X-Forwarded-For", path: "/v1/auth/login", body: []byte(`{"email": "a@example.com", "password": "wrong"}`), header: map[string]string{"X-Forwarded-For": "\xff, 999.1.1.1, ::zz"}},
			{name: "invalid UTF-8 Content-Type of a recording", path: "/v1/sessions/" + h.sessionA + "/recordings?recording_id=r1", bearer: h.ingest, body: []byte("x"), header: map[string]string{"Content-Type": "video/\xff"}},
			{name: "junk Vigil-Duration-Ms", path: "/v1/sessions/" + h.sessionA + "/recordings?recording_id=r1", bearer: h.ingest, body: []byte("x"), header: map[string]string{"Content-Type": "video/webm", "Vigil-Duration-Ms": "99999999999999999999999"}, code: "invalid"},
			{name: "junk Range", method: "GET", path: "/v1/recordings/r1", bearer: h.admin, header: map[string]string{"Range": "bytes=\xff-"}},
		})
	})

	run("Bodies", func(t *testing.T) {
		cmds := fresh()
		bad := []byte("{\"name\": \"\xff\xfe\"}")
		var cases []hostileCase
		for _, p := range []struct{ path, bearer string }{
			{"/v1/groups", h.admin}, {"/v1/technicians", h.admin}, {"/v1/sessions", h.tokenA}, {cmds, h.tokenA},
			{"/v1/webhooks", h.admin}, {"/v1/gdpr/exports", h.admin}, {"/v1/gdpr/erasures", h.admin}, {"/v1/auth/login", ""},
		} {
			cases = append(cases,
				hostileCase{name: "null body to " + p.path, path: p.path, bearer: p.bearer, body: []byte("null")},
				hostileCase{name: "empty body to " + p.path, path: p.path, bearer: p.bearer, body: []byte{}},
				hostileCase{name: "array body to " + p.path, path: p.path, bearer: p.bearer, body: []byte("[]")},
				hostileCase{name: "nested arrays to " + p.path, path: p.path, bearer: p.bearer, body: []byte(strings.Repeat("[", 100000) + strings.Repeat("]", 100000))},
				hostileCase{name: "trailing data to " + p.path, path: p.path, bearer: p.bearer, body: []byte(`{} {}`)},
			)
		}
		cases = append(cases,
			hostileCase{name: "invalid UTF-8 group name", path: "/v1/groups", bearer: h.admin, body: bad, code: "invalid"},
			hostileCase{name: "invalid UTF-8 chat", path: cmds, bearer: h.tokenA, body: []byte("{\"type\": \"chat\", \"from\": \"technician\", \"text\": \"\xff\"}"), code: "invalid"},
			hostileCase{name: "invalid UTF-8 note", path: cmds, bearer: h.tokenA, body: []byte("{\"type\": \"note\", \"text\": \"\xc3\x28\"}"), code: "invalid"},
			hostileCase{name: "invalid UTF-8 session channel", path: "/v1/sessions", bearer: h.tokenA, body: []byte("{\"queue\": \"shared\", \"channel\": \"\xed\xa0\x80\"}"), code: "invalid"},
			hostileCase{name: "invalid UTF-8 webhook description", path: "/v1/webhooks", bearer: h.admin, body: []byte("{\"url\": \"https://example.com/h\", \"description\": \"\xff\"}"), code: "invalid"},
			hostileCase{name: "invalid UTF-8 login", path: "/v1/auth/login", body: []byte("{\"email\": \"\xff@example.com\", \"password\": \"\xfe\"}")},
			hostileCase{name: "huge number", path: cmds, bearer: h.tokenA, body: []byte(`{"type": "send_file", "name": "f", "size": 1e999, "md5": "", "sha256": ""}`), code: "invalid"},
			hostileCase{name: "null command type", path: cmds, bearer: h.tokenA, body: []byte(`{"type": null}`), code: "invalid"},
			hostileCase{name: "null custom_fields", path: cmds, bearer: h.tokenA, body: []byte(`{"type": "set_custom_fields", "custom_fields": null}`)},
		)
		h.kind(t, cases)
	})

	run("WebhookPorts", func(t *testing.T) {
		var cases []hostileCase
		for _, u := range []string{"https://example.com:65536/h", "https://example.com:70000/h", "https://example.com:99999999999999999999/h",
			"https://example.com:-1/h", "https://example.com:0/h", "https://[2001:db8::1]:65536/h", "https://example.com:+443/h"} {
			cases = append(cases, hostileCase{name: u, path: "/v1/webhooks", bearer: h.admin, body: jsonOf(map[string]any{"url": u}), code: "invalid"})
		}
		h.kind(t, cases)
	})

	run("RecordingIDs", func(t *testing.T) {
		cmds := fresh()
		long := strings.Repeat("a", 500<<10)
		traversal := "../../etc/passwd"
		up := func(id string) string {
			return strings.TrimSuffix(cmds, "/commands") + "/recordings?recording_id=" + url.QueryEscape(id)
		}
		webm := map[string]string{"Content-Type": "video/webm"}
		h.kind(t, []hostileCase{
			{name: "start ../../etc/passwd", path: cmds, bearer: h.tokenA, body: jsonOf(map[string]any{"type": "start_recording", "recording_id": traversal}), code: "invalid"},
			{name: "start a 500 KB id", path: cmds, bearer: h.tokenA, body: jsonOf(map[string]any{"type": "start_recording", "recording_id": long}), code: "invalid"},
			{name: "stop ../../etc/passwd", path: cmds, bearer: h.tokenA, body: jsonOf(map[string]any{"type": "stop_recording", "recording_id": traversal})},
			{name: "upload ../../etc/passwd", path: up(traversal), bearer: h.ingest, body: []byte("frames"), header: webm, code: "invalid"},
			{name: "upload ..%2f..", path: strings.TrimSuffix(cmds, "/commands") + "/recordings?recording_id=..%2f..%2fetc%2fpasswd", bearer: h.ingest, body: []byte("frames"), header: webm, code: "invalid"},
			{name: "upload a 500 KB id", path: up(long), bearer: h.ingest, body: []byte("frames"), header: webm},
			{name: "play ../../etc/passwd", method: "GET", path: "/v1/recordings/..%2f..%2fetc%2fpasswd", bearer: h.admin},
		})
		_ = filepath.WalkDir(h.root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Name() == "passwd" {
				t.Errorf("a recording id escaped its folder: %s", p)
			}
			return nil
		})
	})

	run("CrossGroup", func(t *testing.T) {
		// techB records its session; techA, of another group, tries to
		// change it.
		h.must("POST", "/v1/sessions/"+h.sessionB+"/commands", h.tokenB, map[string]any{"type": "start_recording", "recording_id": "rec-b"}, 200)
		before := h.events(h.sessionB)
		cmdsB := "/v1/sessions/" + h.sessionB + "/commands"
		h.kind(t, []hostileCase{
			{name: "set_custom_fields", path: cmdsB, bearer: h.tokenA, body: jsonOf(map[string]any{"type": "set_custom_fields", "custom_fields": map[string]string{"ticket": "stolen"}})},
			{name: "stop_recording", path: cmdsB, bearer: h.tokenA, body: jsonOf(map[string]any{"type": "stop_recording", "recording_id": "rec-b"})},
			{name: "note", path: cmdsB, bearer: h.tokenA, body: jsonOf(map[string]any{"type": "note", "text": "mine now"})},
			{name: "close", path: cmdsB, bearer: h.tokenA, body: jsonOf(map[string]any{"type": "close"})},
			{name: "upload", path: "/v1/sessions/" + h.sessionB + "/recordings?recording_id=rec-b", bearer: h.tokenA, body: []byte("frames"), header: map[string]string{"Content-Type": "video/webm"}},
		})
		if after := h.events(h.sessionB); after != before {
			t.Errorf("refused commands of another group's technician appended %d events", after-before)
		}
	})

	run("TOTPReplay", func(t *testing.T) {
		_, token := h.technician(h.groupA, "totp@example.com")
		secret, _ := h.must("POST", "/v1/auth/totp/enroll", token, map[string]any{}, 200)["secret"].(string)
		opts := totp.ValidateOpts{Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}
		// Enrol with the previous period's code, log in with the current
		// one, then replay it.
		prev, err := totp.GenerateCodeCustom(secret, time.Now().Add(-30*time.Second), opts)
		if err != nil {
			t.Fatal(err)
		}
		h.must("POST", "/v1/auth/totp/enroll", token, map[string]any{"code": prev}, 200)
		code, _ := totp.GenerateCodeCustom(secret, time.Now(), opts)
		login := jsonOf(map[string]any{"email": "totp@example.com", "password": hostilePassword, "totp": code})
		h.must("POST", "/v1/auth/login", "", json.RawMessage(login), 200)
		h.kind(t, []hostileCase{
			{name: "the same code again", path: "/v1/auth/login", body: login},
			{name: "the enrolment code", path: "/v1/auth/login", body: jsonOf(map[string]any{"email": "totp@example.com", "password": hostilePassword, "totp": prev})},
		})
	})

	run("LoginLockout", func(t *testing.T) {
		_, _ = h.technician(h.groupA, "lock@example.com")
		_, rss0, _ := h.stats()
		cpu0, _, _ := h.stats()
		// Parallel guesses must not get more password checks than the
		// lockout threshold (5 by default).
		// Two at a time: each login holds scrypt's 32 MiB, and the RSS bound
		// of a kind must not measure only that.
		const workers, each = 2, 8
		var mu sync.Mutex
		statuses := map[int]int{}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					req, _ := http.NewRequest("POST", h.base+"/v1/auth/login", strings.NewReader(fmt.Sprintf(`{"email": "LOCK@example.com", "password": "guess-%d-%d"}`, w, i)))
					req.Header.Set("X-Forwarded-For", h.attacker)
					res, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					mu.Lock()
					statuses[res.StatusCode]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		cpu1, _, _ := h.stats()
		if per := (cpu1 - cpu0) / (workers * each); per > hostileCPUPerRequest {
			t.Errorf("serve spent %s of CPU per login (bound %s)", per, hostileCPUPerRequest)
		}
		for s, n := range statuses {
			if s >= 500 {
				t.Errorf("%d answers %d", n, s)
			}
		}
		if statuses[http.StatusUnauthorized] > 5 {
			t.Errorf("%d wrong passwords were checked in parallel; the lockout threshold is 5 (answers %v)", statuses[http.StatusUnauthorized], statuses)
		}
		h.kind(t, []hostileCase{
			// From another address than the guesses': the account is
			// locked, whatever the address.
			{name: "the right password while locked", path: "/v1/auth/login", body: jsonOf(map[string]any{"email": "lock@example.com", "password": hostilePassword}),
				header: map[string]string{"X-Forwarded-For": "203.0.113.9"}, code: "locked_out"},
			{name: "an unknown e-mail", path: "/v1/auth/login", body: jsonOf(map[string]any{"email": "nobody@example.com", "password": "x"}),
				header: map[string]string{"X-Forwarded-For": "203.0.113.10"}, code: "unauthenticated"},
			{name: "an unknown tenant", path: "/v1/auth/login", body: jsonOf(map[string]any{"email": "nobody@example.com", "password": "x", "tenant": "\u0000"})},
			{name: "the guessing address, right password", path: "/v1/auth/login", body: jsonOf(map[string]any{"email": "lock@example.com", "password": hostilePassword})},
		})
		// The technician's colleagues are not locked out with it.
		h.must("POST", "/v1/auth/login", "", map[string]any{"email": "a@example.com", "password": hostilePassword}, 200)
		h.healthy(t, rss0)
	})

	run("SlowBodies", func(t *testing.T) {
		cmds := fresh()
		// VIGIL_HTTP_READ_TIMEOUT is 2s: a body trickled a byte at a time
		// is cut, and the connection closed, long before the bound.
		for _, c := range []struct{ name, path, bearer string }{
			{"login", "/v1/auth/login", ""},
			{"command", cmds, h.tokenA},
			{"graphql", "/graphql", h.admin},
		} {
			t.Run(c.name, func(t *testing.T) { h.trickle(t, c.path, c.bearer, "application/json") })
		}
		// A recording upload may outlast the read timeout but not stall:
		// VIGIL_RECORDING_MIN_RATE is 1 KiB/s over 2 s windows.
		h.must("POST", cmds, h.tokenA, map[string]any{"type": "start_recording", "recording_id": "slow-rec"}, 200)
		t.Run("recording", func(t *testing.T) {
			h.trickle(t, strings.TrimSuffix(cmds, "/commands")+"/recordings?recording_id=slow-rec", h.ingest, "video/webm")
		})
		_, rss0, _ := h.stats()
		h.healthy(t, rss0)
	})

	_, _, hwm := h.stats()
	if hwm > hostilePeakRSS {
		t.Errorf("serve's peak RSS was %d MiB (bound %d MiB)", hwm>>20, hostilePeakRSS>>20)
	}
	t.Logf("serve: peak RSS %d MiB, largest RSS growth over one kind %d MiB (%s), most CPU for one request %s",
		hwm>>20, h.peakRSSGrowth>>20, h.peakKind, h.peakCPU)
	if logs := h.logs(); strings.Contains(logs, "panic") {
		t.Errorf("serve logged a panic:\n%s", logs)
	}
}

// trickle sends a request whose body comes one byte every 200 ms and
// asserts that serve ends it: an answer that is no 5xx, or the connection
// closed, before a generous bound.
func (h *hostileServer) trickle(t *testing.T, path, bearer, contentType string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	auth := ""
	if bearer != "" {
		auth = "Authorization: Bearer " + bearer + "\r\n"
	}
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: vigil\r\n%sContent-Type: %s\r\nContent-Length: 100000\r\n\r\n{", path, auth, contentType); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(hostileWait))
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, &http.Request{Method: "POST"})
	if err == nil {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode >= 500 {
			t.Errorf("trickled body: %d %s", res.StatusCode, b)
		}
		_, err = br.ReadByte()
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the trickled request to %s was still open after %s", path, hostileWait)
	}
	if err == nil {
		t.Errorf("the connection of the trickled request to %s stayed open", path)
	}
}

func jsonOf(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
