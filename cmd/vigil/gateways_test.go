package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
)

// relayProcess runs `vigil relay` with vars as a child process and waits
// until it prints that it listens. It is killed when the test ends.
func relayProcess(t *testing.T, vars map[string]string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VIGIL_TEST_MAIN=1", "VIGIL_TEST_ARGS=relay")
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "relay listening on") {
				ok = true
				listening <- true
			}
		}
		if !ok {
			listening <- false
		}
	}()
	select {
	case ok := <-listening:
		if !ok {
			t.Fatalf("vigil relay stopped before listening:\n%s", logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("vigil relay not listening:\n%s", logs.String())
	}
	return cmd
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSimulateThroughGatewayRegistry runs two `vigil relay` nodes that
// register with the registry of a real serve, and simulate --relay, which
// asks GET /v1/gateways for each session and dials the least loaded
// gateway. One node is killed (SIGKILL: no goodbye) while sessions run:
// the sessions it held start over on the other, the watchdog takes it off
// the list and records tenant.gateway_down, and when it comes back it is
// listed again and tenant.gateway_up is recorded. relay_connected names
// the gateway each side chose.
func TestSimulateThroughGatewayRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir())
	addr := freeAddr(t)
	vars := map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error", "VIGIL_HTTP_ADDR": addr,
		"VIGIL_RELAY_DISABLE": "true", "VIGIL_GATEWAY_TTL": "2s", "VIGIL_WEBHOOK_ALLOW_CIDRS": "127.0.0.1/32"}
	// A CRM receiver subscribed to the new events: webhooks carry them.
	var hookMu sync.Mutex
	hooked := map[string]int{}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(b, &p) == nil && r.Header.Get("webhook-signature") != "" {
			hookMu.Lock()
			hooked[p.Type]++
			hookMu.Unlock()
		}
		w.WriteHeader(204)
	}))
	defer receiver.Close()
	env := envFunc(vars)
	ctx := context.Background()
	tenant, ingest := tenantWithIngest(t, env)
	var out bytes.Buffer
	if err := run(ctx, []string{"apikey", "create", "--tenant", tenant["tenant"], "--role", "relay", "--json"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var relayKey map[string]string
	_ = json.Unmarshal(out.Bytes(), &relayKey)
	out.Reset()
	if err := run(ctx, []string{"apikey", "create", "--tenant", tenant["tenant"], "--role", "media", "--json"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var mediaKey map[string]string
	_ = json.Unmarshal(out.Bytes(), &mediaKey)
	_, serveLogs := serveProcess(t, vars)
	hookTypes := []string{"tenant.gateway_registered", "tenant.gateway_down", "session.peer_channel_established", "session.lens_stream_started", "session.lens_conference_created"}
	sub, _ := json.Marshal(map[string]any{"url": receiver.URL, "description": "crm", "event_types": hookTypes})
	hreq, _ := http.NewRequest("POST", "http://"+addr+"/v1/webhooks", bytes.NewReader(sub))
	hreq.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
	hreq.Header.Set("Content-Type", "application/json")
	hres, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := io.ReadAll(hres.Body)
	hres.Body.Close()
	if hres.StatusCode != 201 {
		t.Fatalf("webhook subscription: %d %s", hres.StatusCode, hb)
	}

	node := func(id, relayAddr string) map[string]string {
		return map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error",
			"VIGIL_RELAY_ID": id, "VIGIL_RELAY_ADDR": relayAddr, "VIGIL_RELAY_API_KEY": relayKey["key"],
			"VIGIL_RELAY_BACKEND_URL": "http://" + addr, "VIGIL_RELAY_HEARTBEAT_INTERVAL": "300ms"}
	}
	addrA, addrB := freeAddr(t), freeAddr(t)
	// A first: it generates the certificate in the shared data dir that B
	// and simulate then use.
	nodeA := relayProcess(t, node("gw-a", addrA))
	relayProcess(t, node("gw-b", addrB))
	healthy := func() map[string]bool {
		rows, err := db.Pool.Query(ctx, `SELECT id, healthy FROM gateways`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		m := map[string]bool{}
		for rows.Next() {
			var id string
			var h bool
			if err := rows.Scan(&id, &h); err != nil {
				t.Fatal(err)
			}
			m[id] = h
		}
		return m
	}
	waitUntil(t, "both gateways registered", func() bool { h := healthy(); return h["gw-a"] && h["gw-b"] })

	connectedOn := func() map[string]int {
		rows, err := db.Pool.Query(ctx, `SELECT data::json->>'relay_id' FROM events WHERE type = 'session.relay_connected'`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		m := map[string]int{}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			m[id]++
		}
		return m
	}

	// The run, with gw-a killed once it has carried a few sides.
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		var out bytes.Buffer
		err := run(ctx, []string{"simulate", "--url", "http://" + addr, "--key", tenant["admin_key"], "--ingest-key", ingest["key"],
			"--sessions", "16", "--concurrency", "4", "--seed", "5", "--quiet", "--relay", addrB, "--p2p-timeout", "200ms", "--media-key", mediaKey["key"]}, env, &out, io.Discard)
		done <- result{out.String(), err}
	}()
	// Kill gw-a once it carries a pair, while the run goes on. No clock
	// decides here (a loaded machine only makes the run longer): only the
	// run ending first, which would mean gw-a was never chosen.
	var res result
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for connectedOn()["gw-a"] < 2 {
		select {
		case res = <-done:
			t.Fatalf("simulate ended before gw-a carried a pair (relay_connected by gateway: %v):\n%s", connectedOn(), res.out)
		case <-tick.C:
		}
	}
	if err := nodeA.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = nodeA.Wait()
	res = <-done
	if res.err != nil {
		t.Fatalf("simulate: %v\n%s\nserver log:\n%s", res.err, res.out, serveLogs.String())
	}
	for _, want := range []string{"sessions completed:  16/16", "unexpected errors:   0", "relayed by gateway:", "gw-b"} {
		if !strings.Contains(res.out, want) {
			t.Errorf("simulate output lacks %q:\n%s", want, res.out)
		}
	}
	waitUntil(t, "gw-a marked down", func() bool { h := healthy(); return !h["gw-a"] && h["gw-b"] })
	on := connectedOn()
	if on["gw-a"] == 0 || on["gw-b"] == 0 || len(on) != 2 {
		t.Errorf("relay_connected by gateway: %v; want both gateways and nothing else", on)
	}

	// The registry's changes are in the tenant's log.
	registry := func() []string {
		rows, err := db.Pool.Query(ctx, `SELECT type || ' ' || (data::json->>'gateway_id') FROM events
			WHERE tenant = $1 AND stream = $2 AND type LIKE 'tenant.gateway_%' ORDER BY position`, tenant["tenant"], "tenant-"+tenant["tenant"])
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	got := strings.Join(registry(), "\n")
	for _, want := range []string{"tenant.gateway_registered gw-a", "tenant.gateway_registered gw-b", "tenant.gateway_down gw-a"} {
		if !strings.Contains(got, want) {
			t.Errorf("registry events lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "tenant.gateway_down gw-b") {
		t.Errorf("gw-b recorded down:\n%s", got)
	}

	// P2P: each session tried a direct channel; the reports, GraphQL and
	// a rebuild show the transport and the time to P2P.
	var transports map[string]int
	// The relay's events travel through the bus: wait until gw-b reported
	// the end of every pair it made (gw-a's died with it), so that the log
	// stops changing before the reports are read and rebuilt.
	waitUntil(t, "gw-b's relay_closed events", func() bool {
		var paired, closed int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE type = 'session.relay_paired'), count(*) FILTER (WHERE type = 'session.relay_closed')
			FROM events WHERE data::json->>'relay_id' = 'gw-b'`).Scan(&paired, &closed); err != nil {
			t.Fatal(err)
		}
		return paired > 0 && closed >= paired
	})
	waitUntil(t, "the projections at the head", func() bool {
		r, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		return strings.Contains(string(b), `vigil_projection_lag_events{projection="reporting"} 0`)
	})
	rows, err := db.Pool.Query(ctx, `SELECT transport, count(*), count(p2p_ms), count(*) FILTER (WHERE gateway_id IN ('gw-a', 'gw-b')) FROM rpt_sessions GROUP BY transport`)
	if err != nil {
		t.Fatal(err)
	}
	transports = map[string]int{}
	for rows.Next() {
		var tr string
		var n, timed, viaGateway int
		if err := rows.Scan(&tr, &n, &timed, &viaGateway); err != nil {
			t.Fatal(err)
		}
		transports[tr] = n
		if (tr == "tcp" || tr == "udp") != (timed == n) || timed > 0 && tr == "relayed" {
			t.Errorf("transport %s: %d sessions, %d with a time to P2P", tr, n, timed)
		}
		if viaGateway != n {
			t.Errorf("transport %s: %d of %d sessions name gw-a or gw-b as their gateway", tr, viaGateway, n)
		}
	}
	rows.Close()
	t.Logf("simulate:\n%s\nsessions by transport: %v", res.out, transports)
	if transports["tcp"] == 0 || transports["udp"] == 0 || transports["tcp"]+transports["udp"]+transports["relayed"] != 16 {
		t.Errorf("sessions by transport: %v; want tcp and udp among 16", transports)
	}
	q := `{"query": "{ sessions(first: 50) { edges { node { id transport timeToP2PMs p2pFailure gatewayId lensMinutes } } } }"}`
	req, _ := http.NewRequest("POST", "http://"+addr+"/graphql", strings.NewReader(q))
	req.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
	req.Header.Set("Content-Type", "application/json")
	res2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	gq, _ := io.ReadAll(res2.Body)
	res2.Body.Close()
	if !strings.Contains(string(gq), `"transport":"udp"`) || !strings.Contains(string(gq), `"transport":"tcp"`) ||
		!strings.Contains(string(gq), `"gatewayId":"gw-`) || strings.Contains(string(gq), `"errors"`) {
		t.Errorf("GraphQL sessions: %s", gq)
	}
	creq, _ := http.NewRequest("GET", "http://"+addr+"/v1/reports/sessions.csv", nil)
	creq.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
	cres, err := http.DefaultClient.Do(creq)
	if err != nil {
		t.Fatal(err)
	}
	csvBody, _ := io.ReadAll(cres.Body)
	cres.Body.Close()
	if !strings.Contains(string(csvBody), ",gateway_id,transport,time_to_p2p_ms,p2p_failure,lens_minutes") ||
		!strings.Contains(string(csvBody), ",udp,") || !strings.Contains(string(csvBody), ",tcp,") {
		t.Errorf("sessions.csv lacks the transport columns or values:\n%.600s", csvBody)
	}

	// Lens: conferences in the reports, each ended (by the media service
	// or by its session's close), camera minutes per session and per
	// technician, and the refused first attempt audited.
	var conferences, ended, lensSessions, denied int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM rpt_lens_conferences), (SELECT count(*) FROM rpt_lens_conferences WHERE ended_at IS NOT NULL AND streaming_since IS NULL),
			(SELECT count(*) FROM rpt_sessions WHERE lens_ms > 0),
			(SELECT count(*) FROM rpt_consents WHERE kind = 'action_denied' AND action = 'lens_camera' AND reason = 'consent_required')`).Scan(&conferences, &ended, &lensSessions, &denied); err != nil {
		t.Fatal(err)
	}
	if conferences == 0 || ended != conferences || lensSessions != conferences || denied != conferences {
		t.Errorf("Lens: %d conferences, %d ended, %d sessions with camera minutes, %d refused attempts", conferences, ended, lensSessions, denied)
	}
	today := time.Now().UTC().Format(time.DateOnly)
	q = `{"query": "{ lensUsage(from: \"` + today + `\", to: \"` + today + `\") { technicianId sessions conferences lensMinutes } }"}`
	req, _ = http.NewRequest("POST", "http://"+addr+"/graphql", strings.NewReader(q))
	req.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
	req.Header.Set("Content-Type", "application/json")
	res3, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	lq, _ := io.ReadAll(res3.Body)
	res3.Body.Close()
	if !strings.Contains(string(lq), `"lensMinutes":`) || strings.Contains(string(lq), `"errors"`) || strings.Contains(string(lq), `"lensUsage":[]`) {
		t.Errorf("GraphQL lensUsage: %s", lq)
	}
	// The camera's consent rule holds in a verified auditor bundle.
	bundle := dir + "/bundle.jsonl"
	out.Reset()
	if err := run(ctx, []string{"export", "--tenant", tenant["tenant"], "-o", bundle}, env, &out, io.Discard); err != nil {
		t.Fatalf("export: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"verify", "--bundle", bundle, "--key", dir + "/signing.key.pub"}, env, &out, io.Discard); err != nil {
		t.Fatalf("verify --bundle: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "OK: the bundle verifies") {
		t.Errorf("verify --bundle:\n%s", out.String())
	}

	dump := func() string {
		var s string
		if err := db.Pool.QueryRow(ctx, `SELECT string_agg(t::text, E'\n' ORDER BY guid) FROM rpt_sessions t`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		var c string
		if err := db.Pool.QueryRow(ctx, `SELECT coalesce(string_agg(t::text, E'\n' ORDER BY guid, conference_id), '') FROM rpt_lens_conferences t`).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return s + "\n" + c
	}
	live := dump()
	out.Reset()
	if err := run(ctx, []string{"rebuild", "--quiet"}, env, &out, io.Discard); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if after := dump(); after != live {
		a, b := strings.Split(live, "\n"), strings.Split(after, "\n")
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Errorf("live    %s\nrebuilt %s", a[i], b[i])
			}
		}
		t.Errorf("the sessions report after a rebuild differs from the live one")
	}

	waitUntil(t, "webhooks of the new events", func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		for _, typ := range hookTypes {
			if hooked[typ] == 0 {
				return false
			}
		}
		return true
	})

	// gw-a comes back: listed again, and recorded as up (not registered
	// anew: same address and capacity).
	relayProcess(t, node("gw-a", addrA))
	waitUntil(t, "gw-a healthy again", func() bool { return healthy()["gw-a"] })
	waitUntil(t, "gateway_up recorded", func() bool { return strings.Contains(strings.Join(registry(), "\n"), "tenant.gateway_up gw-a") })
	if n := strings.Count(strings.Join(registry(), "\n"), "tenant.gateway_registered gw-a"); n != 1 {
		t.Errorf("gw-a registered %d times, want once", n)
	}
}
