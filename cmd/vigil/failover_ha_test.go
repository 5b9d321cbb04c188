//go:build ha

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
)

// The failover test of issue 16 (`make ha`; the build tag keeps it out of
// `go test ./...`). 32 clients send commands through the HTTP API of a real
// `vigil serve` on a three-member Patroni cluster, reached by a multi-host
// URL; the primary's postmaster is killed with SIGKILL mid-load, Patroni
// promotes the synchronous standby, and later a switchover moves the
// primary back. Then every acknowledged (2xx) command is in the log, the
// log verifies, the checkpoint kept before the kill is proved consistent
// with the latest one (vigil monitor), the projections equal a rebuild,
// and every chat event reached the webhook receiver. The same load first
// runs for a while against a single PostgreSQL node, for the appends/s
// comparison of docs/performance.md.

const (
	haClients     = 32
	haSteady      = 8 * time.Second // each measured phase
	haAfterKill   = 6 * time.Second // load after the first successful append on the new primary
	haAfterSwitch = 4 * time.Second
)

// haCreds are the credentials one load needs on one serve.
type haCreds struct {
	base, admin, ingest, auditor, tech string
}

// haLoad is the state of one load run: what was acknowledged and refused.
type haLoad struct {
	t       *testing.T
	c       haCreds
	runID   string
	stop    atomic.Bool
	refused atomic.Int64 // 503 answers (each retried with the same Idempotency-Key)
	conflct atomic.Int64 // 409 "still running" answers to a retry (retried)

	mu        sync.Mutex
	acked     map[string]time.Time // event id -> when the 2xx arrived
	started   map[string]time.Time // event id -> when its request was first sent
	errs      []string
	noRetryAf int
}

func newHALoad(t *testing.T, c haCreds, runID string) *haLoad {
	return &haLoad{t: t, c: c, runID: runID, acked: map[string]time.Time{}, started: map[string]time.Time{}}
}

var haHTTP = &http.Client{Timeout: 20 * time.Second}

// post sends body until it gets an answer other than 503 (or a repeat's
// 409 "still running"), with the same Idempotency-Key each time. It
// returns the status and body of that answer; status 0 when the load was
// told to stop and the request never got one (not acknowledged).
func (l *haLoad) post(path, cred, key string, body any) (int, []byte) {
	j, _ := json.Marshal(body)
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequest("POST", l.c.base+path, bytes.NewReader(j))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+cred)
		req.Header.Set("Idempotency-Key", key)
		res, err := haHTTP.Do(req)
		if err != nil {
			l.fail("%s: %v", path, err)
			return 0, nil
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		switch {
		case res.StatusCode == 503:
			l.refused.Add(1)
			if res.Header.Get("Retry-After") == "" {
				l.mu.Lock()
				l.noRetryAf++
				l.mu.Unlock()
			}
		case res.StatusCode == 409 && attempt > 0 && bytes.Contains(raw, []byte("still running")):
			l.conflct.Add(1)
		default:
			return res.StatusCode, raw
		}
		if l.stop.Load() && attempt > 200 {
			return 0, nil
		}
		// Retry-After says 1 s; a shorter wait measures the outage finer.
		time.Sleep(200 * time.Millisecond)
	}
}

func (l *haLoad) fail(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 20 {
		l.errs = append(l.errs, fmt.Sprintf(format, a...))
	}
}

// client runs one client: a session of its own, the customer connected,
// then chat messages until stop.
func (l *haLoad) client(i int) {
	key := func(s string) string { return fmt.Sprintf("%s-c%d-%s", l.runID, i, s) }
	st, raw := l.post("/v1/sessions", l.c.tech, key("create"), map[string]any{"queue": "shared"})
	var sess struct {
		ID string `json:"id"`
	}
	if _ = json.Unmarshal(raw, &sess); st != 201 || sess.ID == "" {
		l.fail("create session: %d %s", st, raw)
		return
	}
	cmds := "/v1/sessions/" + sess.ID + "/commands"
	if st, raw := l.post(cmds, l.c.ingest, key("connect"), map[string]any{"type": "connect_customer", "platform": "windows"}); st != 200 {
		l.fail("connect_customer: %d %s", st, raw)
		return
	}
	for n := 0; !l.stop.Load(); n++ {
		sent := time.Now()
		st, raw := l.post(cmds, l.c.ingest, key(fmt.Sprint(n)), map[string]any{"type": "chat", "from": "customer", "text": fmt.Sprintf("message %d of client %d", n, i)})
		if st == 0 {
			return
		}
		if st != 200 {
			l.fail("chat: %d %s", st, raw)
			return
		}
		var out struct {
			Events []struct {
				ID string `json:"id"`
			} `json:"events"`
		}
		if err := json.Unmarshal(raw, &out); err != nil || len(out.Events) != 1 {
			l.fail("chat answer: %s", raw)
			return
		}
		l.mu.Lock()
		id := normID(out.Events[0].ID)
		l.acked[id] = time.Now()
		l.started[id] = sent
		l.mu.Unlock()
	}
}

// run starts the clients and returns a function that stops them and
// waits for them.
func (l *haLoad) run() (stop func()) {
	var wg sync.WaitGroup
	for i := range haClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.client(i)
		}()
	}
	return func() {
		l.stop.Store(true)
		wg.Wait()
	}
}

func (l *haLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// firstAckAfter returns when the first append whose request was sent after
// t was acknowledged, or the zero time.
func (l *haLoad) firstAckAfter(t time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for id, s := range l.started {
		if s.After(t) && (first.IsZero() || l.acked[id].Before(first)) {
			first = l.acked[id]
		}
	}
	return first
}

// haPrepare creates, through the CLI and the API of the serve at base, a
// tenant, its ingest and auditor keys, a group and a logged-in technician.
func haPrepare(t *testing.T, base string, env func(string) string) haCreds {
	t.Helper()
	tenant, ingest := tenantWithIngest(t, env)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"apikey", "create", "--tenant", tenant["tenant"], "--role", "auditor", "--json"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var auditor map[string]string
	_ = json.Unmarshal(out.Bytes(), &auditor)
	n := node{t: t, name: "serve", url: base}
	admin := tenant["admin_key"]
	gid, _ := n.call("POST", "/v1/groups", admin, map[string]any{"name": "Level 1", "permissions": map[string]bool{"system_info": true}}, 201, "")["id"].(string)
	const pw = "Correct-Horse-9-Battery"
	n.call("POST", "/v1/technicians", admin, map[string]any{"email": "ada@example.com", "name": "Ada", "group_id": gid, "password": pw}, 201, "")
	tok, _ := n.call("POST", "/v1/auth/login", "", map[string]any{"email": "ada@example.com", "password": pw}, 200, "")["token"].(string)
	if tok == "" || auditor["key"] == "" {
		t.Fatalf("set-up: token %q auditor %v", tok, auditor)
	}
	return haCreds{base: base, admin: admin, ingest: ingest["key"], auditor: auditor["key"], tech: tok}
}

// measure runs the load for d on c and returns the appends per second.
func measure(t *testing.T, c haCreds, runID string, d time.Duration) float64 {
	l := newHALoad(t, c, runID)
	stop := l.run()
	time.Sleep(2 * time.Second) // sessions created, customers connected
	before, start := l.count(), time.Now()
	time.Sleep(d)
	n, took := l.count()-before, time.Since(start)
	stop()
	if len(l.errs) > 0 {
		t.Fatalf("load on %s: %v", c.base, l.errs)
	}
	return float64(n) / took.Seconds()
}

func TestFailover(t *testing.T) {
	ctx := context.Background()

	// The single node: the shared PostgreSQL, a database of the test's own.
	single := pgtest.New(t)
	keysDir := devKeys(t, t.TempDir())
	base := map[string]string{"VIGIL_DATA_DIR": keysDir, "VIGIL_LOG_LEVEL": "warn", "VIGIL_RELAY_ADDR": "127.0.0.1:0"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	singleVars := with(map[string]string{"VIGIL_DATABASE_URL": single.URL, "VIGIL_HTTP_ADDR": freeAddr(t)})
	singleCmd, _ := serveProcess(t, singleVars)
	singleRate := measure(t, haPrepare(t, "http://"+singleVars["VIGIL_HTTP_ADDR"], envFunc(singleVars)), "single", haSteady)
	_ = singleCmd.Process.Signal(syscall.SIGTERM)
	_ = singleCmd.Wait()

	// The cluster, through the multi-host URL.
	cl := startHACluster(t)
	dsn := cl.env["HA_DSN"]
	if os.Getenv("HA_VIA_PROXY") == "1" { // the other way in: HAProxy
		dsn = cl.env["HA_PROXY_DSN"]
	}
	t.Logf("VIGIL_DATABASE_URL=%s", dsn)
	hooks := newHookReceiver()
	hookSrv := httptest.NewServer(hooks)
	defer hookSrv.Close()
	vars := with(map[string]string{
		"VIGIL_DATABASE_URL": dsn, "VIGIL_HTTP_ADDR": freeAddr(t),
		"VIGIL_WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32", "VIGIL_WEBHOOK_RATE": "100000",
		"VIGIL_CHECKPOINT_INTERVAL": "1s", "VIGIL_CHECKPOINT_DURABILITY": "replica",
	})
	env := envFunc(vars)
	serveCmd, serveLogs := serveProcess(t, vars)
	url := "http://" + vars["VIGIL_HTTP_ADDR"]
	creds := haPrepare(t, url, env)
	n := node{t: t, name: "serve", url: url}
	n.call("POST", "/v1/webhooks", creds.admin, map[string]any{"url": hookSrv.URL + "/hook", "event_types": []string{"session.chat_message"}}, 201, "")

	clusterRate := measure(t, creds, "steady", haSteady)
	t.Logf("throughput: single=%.0f appends/s cluster=%.0f appends/s (%.0f%%)", singleRate, clusterRate, 100*clusterRate/singleRate)

	// The failover run.
	load := newHALoad(t, creds, "failover")
	stopLoad := load.run()
	defer stopLoad()
	time.Sleep(3 * time.Second)
	state := filepath.Join(t.TempDir(), "checkpoint")
	monitor := func(when string) string {
		t.Helper()
		var out, errb bytes.Buffer
		err := run(ctx, []string{"monitor", "--url", url, "--api-key", creds.auditor, "--key", filepath.Join(keysDir, "signing.key.pub"), "--state", state}, env, &out, &errb)
		if err != nil {
			t.Fatalf("vigil monitor %s: %v\n%s%s", when, err, out.String(), errb.String())
		}
		return strings.TrimSpace(out.String())
	}
	t.Logf("monitor before the kill: %s", monitor("before the kill"))
	kept, _ := os.ReadFile(state)

	// /readyz while the primary is down.
	var notReady, ready atomic.Int64
	probeStop := make(chan struct{})
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		for {
			select {
			case <-probeStop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			res, err := haHTTP.Get(url + "/readyz")
			if err != nil {
				continue
			}
			res.Body.Close()
			if res.StatusCode == 200 {
				ready.Add(1)
			} else {
				notReady.Add(1)
			}
		}
	}()

	old := cl.leader()
	if old == "" {
		t.Fatal("no leader before the kill")
	}
	before := load.count()
	killed := time.Now()
	cl.killPostmaster(old)
	t.Logf("SIGKILL to the postmaster of %s with %d appends acknowledged", old, before)
	var back time.Time
	for deadline := time.Now().Add(90 * time.Second); back.IsZero(); time.Sleep(100 * time.Millisecond) {
		back = load.firstAckAfter(killed)
		if time.Now().After(deadline) {
			t.Fatalf("no append acknowledged within 90 s of the kill; errors %v\n%s", load.errs, tail(serveLogs.String(), 4000))
		}
	}
	close(probeStop)
	<-probeDone
	outage := back.Sub(killed)
	t.Logf("first append on the new primary %s after the kill (new leader %s); readyz not ready %d times, ready %d", outage.Round(time.Millisecond), cl.leader(), notReady.Load(), ready.Load())
	time.Sleep(haAfterKill)
	t.Logf("monitor after the failover: %s", monitor("after the failover"))

	// The old primary rejoins as a standby; then a switchover moves the
	// primary back to it, under load.
	cl.waitHealthy(120 * time.Second)
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(time.Second) {
		ms, _ := cl.members()
		var ok bool
		for _, m := range ms {
			ok = ok || (m.Name == old && m.Role == "sync_standby" && (m.State == "streaming" || m.State == "running"))
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become the synchronous standby: %+v", old, ms)
		}
	}
	cur := cl.leader()
	switchStart := time.Now()
	if err := cl.switchover(cur, old); err != nil {
		t.Fatalf("switchover %s -> %s: %v", cur, old, err)
	}
	for deadline := time.Now().Add(60 * time.Second); cl.leader() != old; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("switchover back to %s did not happen", old)
		}
	}
	switched := time.Now()
	for load.firstAckAfter(switched).IsZero() {
		if time.Since(switched) > 90*time.Second {
			t.Fatalf("no append acknowledged within 90 s of the switchover")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("switchover %s -> %s: %s from the request to the first append acknowledged on the new primary (sent after the switch)", cur, old, load.firstAckAfter(switched).Sub(switchStart).Round(time.Millisecond))
	time.Sleep(haAfterSwitch)
	stopLoad()
	if len(load.errs) > 0 {
		t.Errorf("load errors (a request answered neither 2xx nor 503): %v", load.errs)
	}
	if load.noRetryAf > 0 {
		t.Errorf("%d answers 503 without Retry-After", load.noRetryAf)
	}

	// Every acknowledged append is in the log.
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	inLog := map[string]bool{}
	rows, err := pool.Query(ctx, `SELECT id::text FROM events WHERE type = 'session.chat_message'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		inLog[normID(id)] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for id := range load.acked {
		if !inLog[id] {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged event %s is not in the log", id)
			}
		}
	}

	// The checkpoint kept before the kill against the latest one.
	if err := os.WriteFile(state, kept, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // a checkpoint after the last appends
	t.Logf("monitor, checkpoint kept before the kill against the latest: %s", monitor("at the end"))

	// The projections reach the head; every chat event was delivered.
	var head int64
	for deadline := time.Now().Add(120 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		var behind int64
		if err := pool.QueryRow(ctx, `SELECT (SELECT max(position) FROM events), (SELECT count(*) FROM projection_positions WHERE position < (SELECT max(position) FROM events))`).Scan(&head, &behind); err != nil {
			t.Fatal(err)
		}
		if behind == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("projections still behind the head %d after 2 min", head)
		}
	}
	var missing []string
	for deadline := time.Now().Add(180 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		missing = hooks.missing(inLog)
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d chat events of the log never reached the webhook receiver (first %s)", len(missing), missing[0])
	}
	if d := hooks.duplicates(); d > 0 {
		t.Logf("webhook receiver saw %d repeated deliveries (at least once; same webhook-id)", d)
	}

	// Stop serve; the log verifies; the projections equal a rebuild.
	_ = serveCmd.Process.Signal(syscall.SIGTERM)
	_ = serveCmd.Wait()
	var out bytes.Buffer
	if err := run(ctx, []string{"verify", "--quiet"}, env, &out, io.Discard); err != nil {
		t.Fatalf("verify after the failover: %v\n%s", err, out.String())
	}
	dump := func() string {
		var s string
		q := `SELECT coalesce((SELECT string_agg(t::text, E'\n' ORDER BY t::text) FROM rpt_sessions t), '') || E'\n' ||
			coalesce((SELECT string_agg(t::text, E'\n' ORDER BY t::text) FROM rpt_chat t), '')`
		if err := pool.QueryRow(ctx, q).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	projected := dump()
	if err := run(ctx, []string{"rebuild", "--quiet"}, env, io.Discard, io.Discard); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if rebuilt := dump(); rebuilt != projected {
		t.Errorf("the projections differ from a rebuild (%d vs %d bytes)", len(projected), len(rebuilt))
	}

	t.Logf("retries answered 409 \"still running\": %d", load.conflct.Load())
	fmt.Printf("failover: acknowledged=%d lost=%d outage_s=%.1f refused=%d\n", len(load.acked), lost, outage.Seconds(), load.refused.Load())
	fmt.Printf("throughput: single=%.0f cluster=%.0f appends/s (%.0f%%)\n", singleRate, clusterRate, 100*clusterRate/singleRate)
	if lost > 0 {
		t.Errorf("%d acknowledged appends lost", lost)
	}
}

// hookReceiver records the webhook deliveries it gets: the event id in
// each payload, once per webhook-id.
type hookReceiver struct {
	mu     sync.Mutex
	events map[string]int // event id -> deliveries
	ids    map[string]bool
	dups   int
}

func newHookReceiver() *hookReceiver {
	return &hookReceiver{events: map[string]int{}, ids: map[string]bool{}}
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var p struct {
		Data struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil || p.Data.ID == "" {
		w.WriteHeader(400)
		return
	}
	h.mu.Lock()
	id := r.Header.Get("webhook-id")
	if h.ids[id] {
		h.dups++
	}
	h.ids[id] = true
	h.events[normID(p.Data.ID)]++
	h.mu.Unlock()
	w.WriteHeader(204)
}

// missing returns the events of want never delivered, sorted.
func (h *hookReceiver) missing(want map[string]bool) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for id := range want {
		if h.events[id] == 0 {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func (h *hookReceiver) duplicates() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dups
}

// normID is an event id as 32 lower-case hex digits, whatever its form.
func normID(id string) string { return strings.ToLower(strings.ReplaceAll(id, "-", "")) }
