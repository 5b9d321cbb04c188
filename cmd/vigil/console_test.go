package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
)

// The web console (issue 19), driven in a real Chromium through the
// DevTools protocol against a real `vigil serve`.

const consolePassword = "Correct-Horse-9-Battery"

// consoleWorld is a serve process with a tenant, two technicians and their
// sessions, made through the HTTP API.
type consoleWorld struct {
	node
	env                 func(string) string
	vars                map[string]string
	tenant, admin       string
	auditor, ingest     string
	group               string
	ada, bob            string // technician ids
	adaSession, bobSess string
	recording           string
}

func newConsoleWorld(t *testing.T) *consoleWorld {
	t.Helper()
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir())
	vars := map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error",
		"VIGIL_RELAY_ADDR": "127.0.0.1:0", "VIGIL_HTTP_ADDR": freeAddr(t), "VIGIL_CHECKPOINT_INTERVAL": "300ms"}
	env := envFunc(vars)
	tenant, ingest := tenantWithIngest(t, env)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"apikey", "create", "--tenant", tenant["tenant"], "--role", "auditor", "--json"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var auditor map[string]string
	_ = json.Unmarshal(out.Bytes(), &auditor)
	serveProcess(t, vars)
	w := &consoleWorld{node: node{t: t, name: "serve", url: "http://" + vars["VIGIL_HTTP_ADDR"]}, env: env, vars: vars,
		tenant: tenant["tenant"], admin: tenant["admin_key"], auditor: auditor["key"], ingest: ingest["key"]}
	all := map[string]bool{}
	for _, p := range []string{"remote_control", "reboot", "desktop_view", "record_sessions", "file_transfer", "private_session",
		"file_manager", "request_credentials", "send_url", "clipboard_sync", "system_info", "deploy_script", "one_time_prompt",
		"transfer_session", "screen_share"} {
		all[p] = true
	}
	// A lockout after two failures keeps the lockout test to two scrypt runs.
	w.group, _ = w.call("POST", "/v1/groups", w.admin, map[string]any{"name": "Level 1", "permissions": all, "policy": map[string]any{"lockout_threshold": 2}}, 201, "")["id"].(string)
	w.ada = w.technician("ada@example.com", "Ada Lovelace")
	w.bob = w.technician("bob@example.com", "Bob Kahn")
	w.call("POST", "/v1/auth/login", "", map[string]any{"email": "bob@example.com", "password": "wrong"}, 401, "unauthenticated")
	w.adaSession = w.supportSession("ada@example.com", "Grace Hopper", "grace@example.com", true)
	w.bobSess = w.supportSession("bob@example.com", "Linus Pauling", "linus@example.com", false)
	return w
}

func (w *consoleWorld) technician(email, name string) string {
	id, _ := w.call("POST", "/v1/technicians", w.admin, map[string]any{"email": email, "name": name, "group_id": w.group, "password": consolePassword}, 201, "")["id"].(string)
	return id
}

// supportSession runs a whole support session by the technician of email:
// consent, remote control, a file, chat, and, with record, a recording.
func (w *consoleWorld) supportSession(email, customer, customerEmail string, record bool) string {
	t := w.t
	tok, _ := w.call("POST", "/v1/auth/login", "", map[string]any{"email": email, "password": consolePassword}, 200, "")["token"].(string)
	sid, _ := w.call("POST", "/v1/sessions", tok, map[string]any{"queue": "shared", "customer": map[string]any{"name": customer, "email": customerEmail}}, 201, "")["id"].(string)
	w.command(w.ingest, sid, map[string]any{"type": "connect_customer", "platform": "windows"}, 200, "")
	w.command(tok, sid, map[string]any{"type": "pick_up"}, 200, "")
	w.command(tok, sid, map[string]any{"type": "request_consent", "action": "remote_control"}, 200, "")
	w.command(w.ingest, sid, map[string]any{"type": "grant_consent", "action": "remote_control"}, 200, "")
	w.command(tok, sid, map[string]any{"type": "start", "action": "remote_control"}, 200, "")
	w.command(tok, sid, map[string]any{"type": "end", "action": "remote_control"}, 200, "")
	w.command(tok, sid, map[string]any{"type": "request_consent", "action": "reboot"}, 200, "")
	w.command(w.ingest, sid, map[string]any{"type": "deny_consent", "action": "reboot"}, 200, "")
	w.command(tok, sid, map[string]any{"type": "reboot"}, 409, "consent_required")
	w.command(tok, sid, map[string]any{"type": "request_consent", "action": "send_file"}, 200, "")
	w.command(w.ingest, sid, map[string]any{"type": "grant_consent", "action": "send_file"}, 200, "")
	w.command(tok, sid, map[string]any{"type": "send_file", "name": "fix-" + customer + ".txt", "size": 1234,
		"md5": "0cc175b9c0f1b6a831c399e269772661", "sha256": strings.Repeat("ab", 32)}, 200, "")
	w.command(w.ingest, sid, map[string]any{"type": "chat", "from": "customer", "text": "Hello from " + customer}, 200, "")
	w.command(tok, sid, map[string]any{"type": "chat", "from": "technician", "text": "Hi, let me look"}, 200, "")
	if record {
		req, _ := http.NewRequest("POST", w.url+"/v1/sessions/"+sid+"/recordings?duration_ms=1000", bytes.NewReader(wavTone(time.Second)))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "audio/wav")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 201 {
			t.Fatalf("upload recording: %d %s", res.StatusCode, raw)
		}
		var rec map[string]any
		_ = json.Unmarshal(raw, &rec)
		w.recording, _ = rec["recording_id"].(string)
	}
	w.command(tok, sid, map[string]any{"type": "close", "reason": "solved"}, 200, "")
	return sid
}

// wavTone is d of a 440 Hz tone as a 16-bit mono WAV file, which every
// Chromium build plays.
func wavTone(d time.Duration) []byte {
	const rate = 8000
	n := int(d.Seconds() * rate)
	var b bytes.Buffer
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36+2*n))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(rate), uint32(2 * rate), uint16(2), uint16(16)} {
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, uint32(2*n))
	for i := 0; i < n; i++ {
		_ = binary.Write(&b, binary.LittleEndian, int16(8000*math.Sin(2*math.Pi*440*float64(i)/rate)))
	}
	return b.Bytes()
}

// browser is a headless Chromium for one test.
type browser struct {
	t     *testing.T
	alloc context.Context
	shots string
}

// newBrowser starts Chromium (VIGIL_CHROMIUM, else chromium on the PATH),
// skipping the test when there is none outside CI.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := os.Getenv("VIGIL_CHROMIUM")
	if path == "" {
		p, err := exec.LookPath("chromium")
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("chromium is not installed (.ci/run installs it)")
			}
			t.Skip("chromium is not installed")
		}
		path = p
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"), chromedp.WindowSize(1280, 900))
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	shots := os.Getenv("VIGIL_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, alloc: alloc, shots: shots}
	// The first context starts the browser; each person then gets a
	// browser context of its own (own cookies), like separate profiles.
	root, stop := chromedp.NewContext(alloc)
	t.Cleanup(stop)
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b.alloc = root
	return b
}

// person is one signed-in browser context.
type person struct {
	t   *testing.T
	b   *browser
	ctx context.Context
	url string
}

func (b *browser) person(t *testing.T, base string) *person {
	ctx, cancel := chromedp.NewContext(b.alloc, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run makes the tab, with a context that lives as long as
	// the person: a timeout there would close the tab after it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("new browser context: %v", err)
	}
	return &person{t: t, b: b, ctx: ctx, url: base}
}

// do runs steps with a bound, failing the test on error.
func (p *person) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(p.ctx, chromedp.Location())
		body, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 600) : ""`))
		p.t.Fatalf("browser at %s: %v\npage: %s", loc, err, body)
	}
}

func run1[T any](p *person, a chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		loc, _ := chromedp.Run(p.ctx, chromedp.Location())
		p.t.Fatalf("browser at %s: %v", loc, err)
	}
	return v
}

// waitFor waits until the expression is true in the page, across the
// navigations a click may start.
func (p *person) waitFor(js string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.readyState === "complete" && !!(`+js+`)`))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			loc, _ := chromedp.Run(p.ctx, chromedp.Location())
			p.t.Fatalf("browser at %s: waiting for %s: %v", loc, js, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *person) open(path string) {
	p.t.Helper()
	p.do(chromedp.Navigate(p.url + path))
}

func (p *person) text(sel string) string {
	p.t.Helper()
	return run1(p, chromedp.Text(chromedp.CSS(sel)))
}

func (p *person) eval(js string) string {
	p.t.Helper()
	return run1(p, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
}

// shot saves a full-page screenshot as name.png.
func (p *person) shot(name string) {
	p.t.Helper()
	png := run1(p, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(p.b.shots, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// status fetches path in the page and returns the HTTP status.
func (p *person) status(path string) string {
	p.t.Helper()
	return p.eval(`(async () => String((await fetch(` + jsString(path) + `, {redirect: "manual"})).status))()`)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (p *person) signInKey(key string) {
	p.t.Helper()
	p.open("/console/")
	p.do(chromedp.WaitVisible(chromedp.CSS("#api_key")),
		chromedp.SendKeys(chromedp.CSS("#api_key"), key),
		chromedp.Submit(chromedp.CSS("#api_key")),
		chromedp.WaitVisible(chromedp.CSS("nav[aria-label=Main]")))
}

func (p *person) signInTechnician(email string) {
	p.t.Helper()
	p.open("/console/login")
	p.do(chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.SendKeys(chromedp.CSS("#password"), consolePassword),
		chromedp.Submit(chromedp.CSS("#password")),
		chromedp.WaitVisible(chromedp.CSS("nav[aria-label=Main]")))
}

func TestConsoleInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end")
	}
	b := newBrowser(t)
	w := newConsoleWorld(t)

	// Chromium keeps Secure cookies over plain HTTP for localhost only.
	base := strings.Replace(w.url, "127.0.0.1", "localhost", 1)
	admin := b.person(t, base)
	t.Run("sign-in page: labelled controls, CSP, cookie", func(t *testing.T) {
		w.t = t
		admin.t = t
		admin.open("/console/sessions")
		if loc := run1(admin, chromedp.Location()); !strings.Contains(loc, "/console/login") {
			t.Fatalf("an anonymous visit went to %s, want the sign-in page", loc)
		}
		// Every visible form control has a label that names it.
		unlabelled := admin.eval(`[...document.querySelectorAll("input:not([type=hidden]),select,textarea")].filter(e => !e.labels || e.labels.length === 0).map(e => e.name).join(",")`)
		if unlabelled != "" {
			t.Fatalf("controls without a label: %s", unlabelled)
		}
		admin.shot("login")
		res, err := http.Get(w.url + "/console/login")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Fatalf("CSP %q", csp)
		}
		// A wrong key is refused on the page.
		admin.do(chromedp.SendKeys(chromedp.CSS("#api_key"), "vk_nope.nope"), chromedp.Submit(chromedp.CSS("#api_key")),
			chromedp.WaitVisible(chromedp.CSS("#login-error")))
		admin.signInKey(w.admin)
		if got := admin.eval(`document.cookie`); got != "" {
			t.Fatalf("the session cookie is readable from script: %q", got)
		}
	})

	t.Run("sessions: list, filter by customer e-mail, CSV", func(t *testing.T) {
		w.t = t
		admin.t = t
		admin.open("/console/sessions")
		admin.do(chromedp.WaitVisible(chromedp.CSS("#sessions")))
		if got := admin.text("#total"); got != "2" {
			t.Fatalf("total %q, want 2", got)
		}
		admin.shot("sessions")
		admin.do(chromedp.SendKeys(chromedp.CSS("#f-email"), "GRACE@example.com"), chromedp.Submit(chromedp.CSS("#f-email")))
		admin.waitFor(`location.search.includes("email=")`)
		if got := admin.text("#total"); got != "1" {
			t.Fatalf("filtered total %q, want 1", got)
		}
		if got := admin.text("#sessions tbody"); !strings.Contains(got, "Grace Hopper") || strings.Contains(got, "Linus") {
			t.Fatalf("filtered rows: %q", got)
		}
		csv := admin.eval(`(async () => await (await fetch(document.getElementById("csv").href)).text())()`)
		if !strings.Contains(csv, w.adaSession) || strings.Contains(csv, w.bobSess) {
			t.Fatalf("CSV of the filtered list:\n%s", csv)
		}
	})

	t.Run("session page: timeline, chat, consents, files, recording plays", func(t *testing.T) {
		w.t = t
		admin.t = t
		admin.open("/console/sessions/" + w.adaSession)
		admin.do(chromedp.WaitVisible(chromedp.CSS("#timeline")))
		for sel, want := range map[string]string{
			"#customer": "Grace Hopper", "#chat": "Hello from Grace Hopper", "#files": strings.Repeat("ab", 32),
			"#consents": "session.remote_control_started", "#timeline": "session.consent_granted",
		} {
			if got := admin.text(sel); !strings.Contains(got, want) {
				t.Errorf("%s: %q does not contain %q", sel, got, want)
			}
		}
		if !strings.Contains(admin.text("#files"), "0cc175b9c0f1b6a831c399e269772661") {
			t.Error("the file's MD5 is not shown")
		}
		// The recording plays in the page, fetched with Range requests.
		admin.do(chromedp.WaitVisible(chromedp.CSS("[data-recording]")))
		admin.eval(`(async () => { const m = document.querySelector("[data-recording]"); m.muted = true; await m.play(); return "" })()`)
		played := run1(admin, chromedp.Poll[float64](`(() => { const m = document.querySelector("[data-recording]"); return m.currentTime > 0.2 && m.duration > 0.9 ? m.duration : 0 })()`))
		if played < 0.9 {
			t.Fatalf("recording duration %v", played)
		}
		if got := admin.text("#transport"); got == "" {
			t.Error("no transport line")
		}
		admin.shot("session")
		// Each view is audited on the session's stream.
		tl := w.call("GET", "/v1/sessions/"+w.adaSession+"/events", w.admin, nil, 200, "")
		if !strings.Contains(mustJSON(tl), "session.recording_viewed") {
			t.Fatal("no recording_viewed after playing in the console")
		}
	})

	t.Run("logins and performance", func(t *testing.T) {
		w.t = t
		admin.t = t
		admin.open("/console/logins?outcome=failed")
		if got := admin.text("#logins tbody"); !strings.Contains(got, w.bob) || !strings.Contains(got, "failed") {
			t.Fatalf("failed logins: %q", got)
		}
		admin.shot("logins")
		admin.open("/console/performance")
		if got := admin.text("#performance tbody"); !strings.Contains(got, w.ada) {
			t.Fatalf("performance: %q", got)
		}
		if got := admin.text("#lens"); !strings.Contains(got, "Camera minutes") {
			t.Fatalf("Lens table: %q", got)
		}
		admin.shot("performance")
		admin.open("/console/charts")
		if n := admin.eval(`String(document.querySelectorAll("figure.chart svg rect").length)`); n == "0" {
			t.Fatal("no bar in the charts")
		}
		if got := admin.eval(`document.querySelector("#consents table").textContent`); !strings.Contains(got, "granted") {
			t.Fatalf("consents chart table: %q", got)
		}
		if got := admin.eval(`document.querySelector("#pickup table").textContent`); !strings.Contains(got, "waiting") || !strings.Contains(got, "pickup") {
			t.Fatalf("waiting and pickup chart table: %q", got)
		}
		// Two consents granted per session today: the chart's numbers say so.
		if got := admin.eval(`document.querySelector("#consents tbody tr:last-child").textContent`); !strings.Contains(got, "4") {
			t.Fatalf("today's consents: %q", got)
		}
		admin.shot("charts")
	})

	t.Run("auditor: proof and signature verified in the browser, tampering refused, consistency, export", func(t *testing.T) {
		w.t = t
		var out bytes.Buffer
		if err := run(context.Background(), []string{"keys", "public"}, w.env, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		vkey := strings.TrimSpace(out.String())
		w.t = t
		aud := b.person(t, base)
		aud.signInKey(w.auditor)
		aud.open("/console/audit")
		kept := aud.eval(`document.getElementById("cp-note").value`)
		if !strings.Contains(kept, "\n\n\u2014 ") {
			t.Fatalf("checkpoint note: %q", kept)
		}
		aud.shot("audit")
		// More events, and a later checkpoint, after the one kept.
		w.command(w.ingest, w.bobSess, map[string]any{"type": "chat", "from": "customer", "text": "after close?"}, 409, "")
		w.call("POST", "/v1/groups", w.admin, map[string]any{"name": "Level 2"}, 201, "")
		var size string
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			aud.open("/console/audit")
			if size = aud.eval(`document.getElementById("cp-note").value`); size != kept || time.Now().After(deadline) {
				break
			}
		}
		if size == kept {
			t.Fatal("no later checkpoint")
		}

		evs, _ := w.call("GET", "/v1/sessions/"+w.adaSession+"/events", w.admin, nil, 200, "")["events"].([]any)
		ev, _ := evs[4].(map[string]any)["id"].(string)
		aud.open("/console/audit/proof?event=" + ev)
		verify := func(sel, button string) string {
			aud.do(chromedp.Click(chromedp.CSS(button)))
			return run1(aud, chromedp.Poll[string](`document.querySelector(`+jsString(sel)+`).dataset.verdict || ""`))
		}
		aud.do(chromedp.SendKeys(chromedp.CSS("#vkey"), vkey))
		if v := verify("#receipt-verdict", "#verify-receipt"); v != "ok" {
			t.Fatalf("a true receipt: %s: %s", v, aud.text("#receipt-verdict"))
		}
		aud.shot("audit-proof-verified")
		// One bit of one proof hash changed: refused.
		aud.eval(`(() => { const a = document.getElementById("receipt"); const r = JSON.parse(a.value);
			const h = atob(r.inclusion.proof[0]); r.inclusion.proof[0] = btoa(String.fromCharCode(h.charCodeAt(0) ^ 1) + h.slice(1));
			a.value = JSON.stringify(r, null, 2); return "" })()`)
		if v := verify("#receipt-verdict", "#verify-receipt"); v != "bad" || !strings.Contains(aud.text("#receipt-verdict"), "does not lead to the signed root") {
			t.Fatalf("a tampered proof: %s: %s", v, aud.text("#receipt-verdict"))
		}
		aud.shot("audit-proof-tampered")
		// The checkpoint's size changed: its signature fails.
		aud.open("/console/audit/proof?event=" + ev)
		aud.do(chromedp.SendKeys(chromedp.CSS("#vkey"), vkey))
		aud.eval(`(() => { const a = document.getElementById("receipt"); const r = JSON.parse(a.value);
			r.checkpoint = r.checkpoint.replace(/\n(\d+)\n/, (m, n) => "\n" + (Number(n) + 1) + "\n"); a.value = JSON.stringify(r); return "" })()`)
		if v := verify("#receipt-verdict", "#verify-receipt"); v != "bad" || !strings.Contains(aud.text("#receipt-verdict"), "signature") {
			t.Fatalf("a forged checkpoint: %s: %s", v, aud.text("#receipt-verdict"))
		}

		aud.do(chromedp.SetValue(chromedp.CSS("#kept"), kept))
		if v := verify("#consistency-verdict", "#verify-consistency"); v != "ok" {
			t.Fatalf("consistency with the kept checkpoint: %s: %s", v, aud.text("#consistency-verdict"))
		}
		aud.open("/console/audit")
		if got := aud.text("#last-verify"); !strings.Contains(got, "extends") {
			t.Fatalf("last verification: %q", got)
		}
		aud.do(chromedp.Click(chromedp.CSS("#export")))
		digest := run1(aud, chromedp.Poll[string](`document.getElementById("export-status").dataset.done || ""`))
		if len(digest) != 64 || aud.eval(`String(document.getElementById("export-progress").value)`) != "100" {
			t.Fatalf("export: %q", aud.text("#export-status"))
		}
		aud.shot("audit-export")
		if nav := aud.text("nav[aria-label=Main]"); strings.Contains(nav, "Admin") || strings.Contains(nav, "DPO") {
			t.Fatalf("auditor nav: %q", nav)
		}
		// No admin page or action is reachable, with or without the token.
		for _, path := range []string{"/console/admin", "/console/admin/keys", "/console/admin/technicians", "/console/dpo"} {
			if got := aud.status(path); got != "403" {
				t.Errorf("auditor GET %s: %s, want 403", path, got)
			}
		}
		aud.open("/console/audit")
		if got := aud.eval(`(async () => { const body = new URLSearchParams({csrf: document.getElementById("csrf").value, role: "admin"});
			return String((await fetch("/console/admin/keys", {method: "POST", body})).status) })()`); got != "403" {
			t.Errorf("auditor creating a key: %s, want 403", got)
		}
	})

	t.Run("Admin Center: groups, technicians, keys, webhooks, tenant", func(t *testing.T) {
		admin.t, w.t = t, t
		flash := func() string {
			return admin.eval(`(document.querySelector(".flash") || document.querySelector("main")).textContent.trim()`)
		}
		submit := func(sel string) {
			// Mark the page, so that the wait sees the next one.
			admin.eval(`window.vigilOld = true; ""`)
			admin.do(chromedp.Click(chromedp.CSS(sel)))
			admin.waitFor(`!window.vigilOld && document.querySelector(".flash, .secret, .error")`)
		}
		admin.open("/console/admin")
		admin.shot("admin")
		// A permission removed in the group form: the same command, and event, as PATCH /v1/groups.
		admin.open("/console/admin/groups")
		admin.do(chromedp.Click(chromedp.CSS("#group-" + w.group + " summary")))
		admin.do(chromedp.Click(chromedp.CSS("#perm-" + w.group + "-reboot")))
		admin.shot("groups")
		submit("#group-" + w.group + " button[type=submit]")
		if !strings.Contains(flash(), "saved") {
			t.Fatalf("group save: %q", admin.text("main"))
		}
		g := w.call("GET", "/v1/groups/"+w.group, w.admin, nil, 200, "")
		perms, _ := g["permissions"].(map[string]any)
		if perms["reboot"] != false || perms["remote_control"] != true {
			t.Fatalf("permissions after the form: %v", perms)
		}

		// bob locked out by failed logins, unlocked from the page.
		for i := 0; i < 2; i++ {
			res, err := http.Post(w.url+"/v1/auth/login", "application/json", strings.NewReader(`{"email":"bob@example.com","password":"wrong"}`))
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
		}
		admin.open("/console/admin/technicians")
		if got := admin.text(`tr[data-id="` + w.bob + `"]`); !strings.Contains(got, "locked") {
			t.Fatalf("bob after 2 failures: %q", got)
		}
		submit(`tr[data-id="` + w.bob + `"] form[action$="/unlock"] button`)
		if got := admin.text(`tr[data-id="` + w.bob + `"]`); strings.Contains(got, "locked") {
			t.Fatalf("bob after unlock: %q", got)
		}
		admin.do(chromedp.SendKeys(chromedp.CSS("#t-name"), "Carol Shaw"), chromedp.SendKeys(chromedp.CSS("#t-email"), "carol@example.com"),
			chromedp.SendKeys(chromedp.CSS("#t-password"), consolePassword))
		submit("#new-tech-form button")
		if got := admin.text("#technicians"); !strings.Contains(got, "carol@example.com") {
			t.Fatalf("carol not listed: %q", got)
		}
		admin.shot("technicians")
		submit(`[aria-label="Disable SSO for Carol Shaw"]`)
		if got := admin.text("#technicians"); !strings.Contains(got, "SSO disabled") {
			t.Fatalf("carol's SSO not disabled: %q", got)
		}
		submit(`[aria-label="Disable Carol Shaw"]`)
		if got := admin.text("#technicians"); !strings.Contains(got, "disabled") {
			t.Fatalf("carol not disabled: %q", got)
		}

		// An API key created (shown once) and revoked.
		admin.open("/console/admin/keys")
		admin.do(chromedp.SetValue(chromedp.CSS("#k-role"), "integration"), chromedp.SendKeys(chromedp.CSS("#k-desc"), "CRM"))
		submit("#new-key-form button")
		key := admin.eval(`document.getElementById("new-key").value`)
		admin.shot("keys")
		w.call("GET", "/v1/sessions/"+w.adaSession+"/events", key, nil, 200, "")
		id := admin.eval(`document.querySelector("#new-key-box code").textContent`)
		admin.open("/console/admin/keys")
		if strings.Contains(admin.text("main"), key) {
			t.Fatal("the key's secret is shown again")
		}
		submit(`[aria-label="Revoke key ` + id + `"]`)
		w.call("GET", "/v1/sessions/"+w.adaSession+"/events", key, nil, 401, "unauthenticated")

		// A webhook subscribed, a delivery logged, a replay.
		admin.open("/console/admin/webhooks")
		admin.do(chromedp.SendKeys(chromedp.CSS("#h-url"), "https://hooks.example.com/vigil"), chromedp.SendKeys(chromedp.CSS("#h-types"), "session.created"))
		submit("#new-hook-form button")
		if admin.eval(`document.getElementById("new-secret").value`) == "" {
			t.Fatal("no signing secret shown")
		}
		tok, _ := w.call("POST", "/v1/auth/login", "", map[string]any{"email": "ada@example.com", "password": consolePassword}, 200, "")["token"].(string)
		w.call("POST", "/v1/sessions", tok, map[string]any{"queue": "shared"}, 201, "")
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(300 * time.Millisecond) {
			admin.open("/console/admin/webhooks")
			if strings.Contains(admin.text(".deliveries"), "session.created") || time.Now().After(deadline) {
				break
			}
		}
		if got := admin.text(".deliveries"); !strings.Contains(got, "session.created") {
			t.Fatalf("delivery log: %q", got)
		}
		admin.shot("webhooks")
		submit(".replay button")
		if !strings.Contains(flash(), "queued again") {
			t.Fatalf("replay: %q", admin.text("main"))
		}
		// Every form control of every page has a label, and every page
		// keeps the skip link and one main landmark.
		for _, path := range []string{"/console/sessions", "/console/sessions/" + w.adaSession, "/console/logins", "/console/performance",
			"/console/charts", "/console/audit", "/console/admin/groups", "/console/admin/technicians", "/console/admin/keys",
			"/console/admin/webhooks", "/console/admin/tenant", "/console/dpo"} {
			admin.open(path)
			if got := admin.eval(`[...document.querySelectorAll("input:not([type=hidden]),select,textarea")].filter(e => !e.labels || e.labels.length === 0).map(e => e.id || e.name).join(",")`); got != "" {
				t.Errorf("%s: controls without a label: %s", path, got)
			}
			if got := admin.eval(`String(document.querySelectorAll("a.skip[href='#main']").length + "/" + document.querySelectorAll("main").length)`); got != "1/1" {
				t.Errorf("%s: skip link / main: %s", path, got)
			}
		}
		admin.open("/console/admin/tenant")
		if admin.text("#region") == "" {
			t.Fatal("no region")
		}
		// Retention changed in the form: the same command, and event, as PUT /v1/tenant/retention.
		admin.do(chromedp.SetValue(chromedp.CSS("#online_days"), "90"), chromedp.SetValue(chromedp.CSS("#archive_days"), "365"))
		admin.eval(`window.vigilOld = true; ""`)
		admin.do(chromedp.Click(chromedp.CSS("#retention-form button[type=submit]")))
		admin.waitFor(`!window.vigilOld && document.querySelector(".flash, .error")`)
		if got := admin.text("main"); !strings.Contains(got, "Retention set: 90 days online, then 365 days archived") || !strings.Contains(got, "tenant.retention_changed") {
			t.Fatalf("retention change: %q", got)
		}
		if got := admin.eval(`document.querySelector("#online_days").value + "/" + document.querySelector("#archive_days").value`); got != "90/365" {
			t.Fatalf("retention form after the change: %s", got)
		}
		admin.shot("tenant")
	})

	t.Run("DPO desk: export, revocable erasure, erasure end to end with its receipt checked in the browser", func(t *testing.T) {
		admin.t, w.t = t, t
		var out bytes.Buffer
		if err := run(context.Background(), []string{"keys", "public"}, w.env, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		vkey := strings.TrimSpace(out.String())
		admin.open("/console/dpo")
		admin.shot("dpo")
		export := admin.eval(`(async () => { const body = new URLSearchParams({csrf: document.querySelector("[name=csrf]").value, subject: "session:` + w.bobSess + `"});
			return await (await fetch("/console/dpo/export", {method: "POST", body})).text() })()`)
		if !strings.Contains(export, "Linus Pauling") || !strings.Contains(export, "subject_exported") && !strings.Contains(export, "event_id") {
			t.Fatalf("export: %.300s", export)
		}
		erase := func(delay string) {
			admin.open("/console/dpo")
			admin.do(chromedp.SendKeys(chromedp.CSS("#e-subject"), "session:"+w.bobSess), chromedp.SetValue(chromedp.CSS("#e-delay"), delay),
				chromedp.SendKeys(chromedp.CSS("#e-reason"), "customer request"))
			admin.eval(`window.vigilOld = true; ""`)
			admin.do(chromedp.Click(chromedp.CSS("#erase-form button")))
			admin.waitFor(`!window.vigilOld && document.getElementById("erasure-state")`)
		}
		erase("24")
		if got := admin.text("#erasure-state"); got != "pending" {
			t.Fatalf("a delayed erasure: %q", got)
		}
		admin.eval(`window.vigilOld = true; ""`)
		admin.do(chromedp.Click(chromedp.CSS("#revoke-form button")))
		admin.waitFor(`!window.vigilOld && document.getElementById("erasure-state")`)
		if got := admin.text("#erasure-state"); got != "revoked" {
			t.Fatalf("a revoked erasure: %q", got)
		}
		erase("0")
		loc := run1(admin, chromedp.Location())
		for deadline := time.Now().Add(60 * time.Second); admin.text("#erasure-state") != "done" && time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			admin.do(chromedp.Navigate(loc))
		}
		if got := admin.text("#erasure-state"); got != "done" {
			t.Fatalf("an erasure at once: %q", got)
		}
		admin.do(chromedp.SendKeys(chromedp.CSS("#vkey"), vkey), chromedp.Click(chromedp.CSS("#verify-erasure")))
		if v := run1(admin, chromedp.Poll[string](`document.getElementById("erasure-verdict").dataset.verdict || ""`)); v != "ok" {
			t.Fatalf("receipt: %s", admin.text("#erasure-verdict"))
		}
		admin.shot("dpo-erasure")
		admin.eval(`(() => { const a = document.getElementById("receipt-note"); a.value = a.value.replace("scope all", "scope chat"); return "" })()`)
		admin.do(chromedp.Click(chromedp.CSS("#verify-erasure")))
		admin.waitFor(`document.getElementById("erasure-verdict").dataset.verdict === "bad"`)
		admin.open("/console/sessions/" + w.bobSess)
		if got := admin.text("#customer"); strings.Contains(got, "Linus") {
			t.Fatalf("an erased customer reads %q", got)
		}
		if got := admin.text("#timeline"); strings.Contains(got, "Linus") || !strings.Contains(got, "[erased]") {
			t.Fatalf("the erased session's timeline: %q", got)
		}
	})

	t.Run("technician sees only its own sessions", func(t *testing.T) {
		w.t = t
		bob := b.person(t, base)
		bob.signInTechnician("bob@example.com")
		bob.open("/console/sessions")
		if got := bob.eval(`document.querySelector("#sessions tbody").innerHTML`); !strings.Contains(got, w.bobSess) || strings.Contains(got, w.adaSession) || strings.Contains(got, "Grace") {
			t.Fatalf("bob's list: %q", got)
		}
		if got := bob.status("/console/sessions/" + w.adaSession); got != "404" {
			t.Fatalf("bob opening ada's session: %s, want 404", got)
		}
		if nav := bob.text("nav[aria-label=Main]"); strings.Contains(nav, "Admin") || strings.Contains(nav, "Audit") {
			t.Fatalf("technician nav: %q", nav)
		}
		if got := bob.status("/console/logins"); got != "403" {
			t.Fatalf("technician opening the logins: %s, want 403", got)
		}
		bob.shot("technician-sessions")
	})

	t.Run("SSO: the button goes to the tenant's SAML login, the hand-off signs the technician in", func(t *testing.T) {
		w.t = t
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		res, err := client.Get(w.url + "/console/sso/start?tenant=" + w.tenant)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if loc := res.Header.Get("Location"); loc != "/v1/sso/saml/"+w.tenant+"/login?return_to=%2Fconsole%2Fsso" {
			t.Fatalf("SSO start: %d %q", res.StatusCode, loc)
		}
		// What the ACS answers after a good assertion: the token in the
		// fragment (docs/sso.md). The token here is a password login's,
		// the same kind of token.
		tok, _ := w.call("POST", "/v1/auth/login", "", map[string]any{"email": "ada@example.com", "password": consolePassword}, 200, "")["token"].(string)
		ada := b.person(t, base)
		ada.open("/console/sso#token=" + url.QueryEscape(tok) + "&scope=full&tenant=" + w.tenant)
		ada.waitFor(`document.querySelector("nav[aria-label=Main]")`)
		if got := ada.text(".who"); !strings.Contains(got, w.ada) {
			t.Fatalf("signed in as %q", got)
		}
		if got := ada.eval(`document.querySelector("#sessions tbody").innerHTML`); !strings.Contains(got, w.adaSession) {
			t.Fatal("ada's sessions are not listed after SSO")
		}
		// A refusal comes back in the fragment too, and is shown.
		ada2 := b.person(t, base)
		ada2.open("/console/sso#error=disabled&message=" + url.QueryEscape("SSO is disabled for this technician"))
		ada2.waitFor(`document.getElementById("login-error")`)
		if got := ada2.text("#login-error"); !strings.Contains(got, "SSO is disabled") {
			t.Fatalf("refusal: %q", got)
		}
	})

	t.Run("technician with a second factor signs in with password and TOTP", func(t *testing.T) {
		w.t = t
		w.technician("eve@example.com", "Eve Anon")
		tok, _ := w.call("POST", "/v1/auth/login", "", map[string]any{"email": "eve@example.com", "password": consolePassword}, 200, "")["token"].(string)
		secret, _ := w.call("POST", "/v1/auth/totp/enroll", tok, map[string]any{}, 200, "")["secret"].(string)
		// Enrolled with the previous time step's code, so that the
		// current step's is still unused (a code is accepted once).
		prev, err := totp.GenerateCode(secret, time.Now().Add(-30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		w.call("POST", "/v1/auth/totp/enroll", tok, map[string]any{"code": prev}, 200, "")
		eve := b.person(t, base)
		eve.open("/console/login")
		eve.do(chromedp.SendKeys(chromedp.CSS("#email"), "eve@example.com"), chromedp.SendKeys(chromedp.CSS("#password"), consolePassword))
		eve.eval(`window.vigilOld = true; ""`)
		eve.do(chromedp.Submit(chromedp.CSS("#password")))
		eve.waitFor(`!window.vigilOld && document.getElementById("login-error")`)
		if got := eve.eval(`String(document.getElementById("totp").required)`); got != "true" {
			t.Fatalf("without a code: %q, TOTP field required %s", eve.text("#login-error"), got)
		}
		now, err := totp.GenerateCode(secret, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		eve.do(chromedp.SendKeys(chromedp.CSS("#password"), consolePassword), chromedp.SendKeys(chromedp.CSS("#totp"), now),
			chromedp.Submit(chromedp.CSS("#password")))
		eve.waitFor(`document.querySelector("nav[aria-label=Main]")`)
		if got := eve.text(".who"); !strings.Contains(got, "technician") {
			t.Fatalf("signed in as %q", got)
		}
	})

	t.Run("keyboard: skip link and tab order reach the filter", func(t *testing.T) {
		w.t = t
		admin.t = t
		admin.open("/console/sessions")
		admin.do(chromedp.KeyEvent("\t"))
		if got := admin.eval(`document.activeElement.className`); got != "skip" {
			t.Fatalf("first Tab focuses %q, want the skip link", got)
		}
		admin.do(chromedp.KeyEvent("\r"))
		if got := admin.eval(`document.activeElement.id`); got != "main" {
			t.Fatalf("the skip link moved focus to %q", got)
		}
		admin.do(chromedp.KeyEvent("\t"))
		if got := admin.eval(`document.activeElement.id`); got != "f-from" {
			t.Fatalf("Tab after skipping focuses %q, want the first filter", got)
		}
	})

	t.Run("a second node serves the same console session; a technician disabled there is out here", func(t *testing.T) {
		w.t = t
		v := map[string]string{}
		for k, x := range w.vars {
			v[k] = x
		}
		v["VIGIL_HTTP_ADDR"] = freeAddr(t)
		serveProcess(t, v)
		other := "http://localhost:" + strings.Split(v["VIGIL_HTTP_ADDR"], ":")[1]
		admin.t = t
		// Cookies are per host, not per port: the browser sends the
		// session cookie of node A to node B, which finds it in PostgreSQL.
		admin.do(chromedp.Navigate(other + "/console/sessions"))
		if got := admin.text("#total"); got == "" || !strings.Contains(run1(admin, chromedp.Location()), other) {
			t.Fatalf("node B: %q at %s", got, run1(admin, chromedp.Location()))
		}
		// A technician disabled through node B's API: its next console
		// request on node A is refused.
		dave := w.technician("dave@example.com", "Dave Cutler")
		d := b.person(t, base)
		d.signInTechnician("dave@example.com")
		if got := d.status("/console/sessions"); got != "200" {
			t.Fatalf("dave on A: %s", got)
		}
		(&node{t: t, name: "B", url: "http://" + v["VIGIL_HTTP_ADDR"]}).call("POST", "/v1/technicians/"+dave+"/disable", w.admin, map[string]any{}, 200, "")
		if got := d.status("/console/sessions"); got == "200" {
			t.Fatalf("a disabled technician's console session still answers %s", got)
		}
	})

	t.Run("CSRF: a POST without the token is refused", func(t *testing.T) {
		w.t = t
		admin.t = t
		admin.open("/console/sessions")
		if got := admin.eval(`(async () => String((await fetch("/console/logout", {method: "POST", redirect: "manual"})).status))()`); got != "403" {
			t.Fatalf("POST without token: %s, want 403", got)
		}
		// Still signed in.
		if got := admin.status("/console/sessions"); got != "200" {
			t.Fatalf("after a refused POST: %s", got)
		}
	})

	t.Run("sign out ends the session on the server", func(t *testing.T) {
		w.t = t
		admin.t = t
		admin.open("/console/sessions")
		admin.do(chromedp.Click(chromedp.CSS(".signout button")), chromedp.WaitVisible(chromedp.CSS("#api_key")))
		if got := admin.status("/console/sessions"); got != "0" && got != "303" {
			t.Fatalf("after sign-out: %s, want a redirect to sign in", got)
		}
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
