package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
)

// Each subcommand's -h shows its synopsis and its own flags, not every
// setting of serve.
func TestSubcommandUsageShowsOnlyItsFlags(t *testing.T) {
	for _, tt := range []struct {
		cmd      string
		synopsis string
		own      []string
	}{
		{"export", "usage: vigil export --tenant ID -o FILE", []string{"-tenant", "-since", "-open"}},
		{"erase", "usage: vigil erase --tenant ID --subject", []string{"-subject", "-verify-receipt", "-o "}},
		{"verify", "usage: vigil verify [--tenant ID]", []string{"-bundle", "-origin", "-since"}},
		{"health", "usage: vigil health [--url URL]", []string{"-url", "-timeout"}},
		{"migrate", "usage: vigil migrate [flags]", nil},
		{"rebuild", "usage: vigil rebuild [--quiet] [--check] [NAME]", []string{"-quiet", "-check"}},
	} {
		t.Run(tt.cmd, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{tt.cmd, "-h"}, envFunc(nil), &stdout, &stderr)
			var ee exitError
			if !errors.As(err, &ee) || ee.code != 0 {
				t.Fatalf("err = %v, want exit 0", err)
			}
			help := stderr.String()
			if !strings.HasPrefix(help, tt.synopsis) {
				t.Errorf("help does not start with %q:\n%s", tt.synopsis, help)
			}
			for _, f := range tt.own {
				if !strings.Contains(help, f) {
					t.Errorf("help lacks its flag %q:\n%s", f, help)
				}
			}
			for _, f := range []string{"-webhook-workers", "-s3-bucket", "-http-idle-timeout"} {
				if strings.Contains(help, f) {
					t.Errorf("help lists serve's flag %q:\n%s", f, help)
				}
			}
		})
	}
	// keys is a group of subcommands: -h lists them, on stdout, exit 0.
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keys", "-h"}, envFunc(nil), &out, io.Discard); err != nil {
		t.Fatalf("keys -h: %v", err)
	}
	for _, sub := range []string{"usage: vigil keys", "rotate-signing", "new-signing", "pinned"} {
		if !strings.Contains(out.String(), sub) {
			t.Errorf("keys -h lacks %q:\n%s", sub, out.String())
		}
	}
	// serve's flags are the configuration: it still lists them.
	var stderr bytes.Buffer
	_ = run(context.Background(), []string{"serve", "-h"}, envFunc(nil), io.Discard, &stderr)
	if !strings.Contains(stderr.String(), "-webhook-workers") {
		t.Errorf("serve -h lost its flags:\n%s", stderr.String())
	}
}

// vigil health takes a base URL, as the README gives it, and appends
// /readyz; a URL with a path is asked as it is.
func TestHealthTakesABaseURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" && r.URL.Path != "/custom" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	defer srv.Close()
	for _, u := range []string{srv.URL, srv.URL + "/", srv.URL + "/readyz", srv.URL + "/custom"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"health", "--url", u}, envFunc(nil), &out, io.Discard); err != nil {
			t.Errorf("health --url %s: %v", u, err)
		}
	}
}

// vigil simulate finds the server where serve listens: VIGIL_HTTP_ADDR.
func TestSimulateURLFromHTTPAddr(t *testing.T) {
	env := map[string]string{"VIGIL_SIMULATE_KEY": simTestAdminKey, "VIGIL_SIMULATE_INGEST_KEY": simTestIngestKey, "VIGIL_HTTP_ADDR": "0.0.0.0:9123"}
	cfg, err := parseSimulateFlags(nil, envFunc(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://" + net.JoinHostPort("127.0.0.1", "9123"); cfg.url != want {
		t.Errorf("url %q, want %q", cfg.url, want)
	}
	env["VIGIL_SIMULATE_URL"] = "http://other:1"
	if cfg, _ := parseSimulateFlags(nil, envFunc(env), io.Discard); cfg.url != "http://other:1" {
		t.Errorf("VIGIL_SIMULATE_URL no longer wins: %q", cfg.url)
	}
}

// A busy relay port stops serve with one clear message, and no ERROR line
// from the relay event subscription it stops on the way.
func TestServeBusyRelayPortNoSpuriousError(t *testing.T) {
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir())
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	env := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_HTTP_ADDR": freeAddr(t), "VIGIL_RELAY_ADDR": busy.Addr().String()})
	var stderr bytes.Buffer
	err = run(context.Background(), []string{"serve"}, env, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "relay listen") || !strings.Contains(err.Error(), "VIGIL_RELAY_ADDR") {
		t.Fatalf("serve with a busy relay port: %v", err)
	}
	if strings.Contains(stderr.String(), "level=ERROR") {
		t.Errorf("a spurious ERROR before the real message:\n%s", stderr.String())
	}
}

// docs/api.md's group example must not lock out the login example that
// follows it, which a new user runs on the server's host.
func TestAPIDocGroupExampleAllowsLocalLogin(t *testing.T) {
	raw, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(raw), "`POST /v1/groups`\n\n```json\n")
	if !ok {
		t.Fatal("docs/api.md has no POST /v1/groups example")
	}
	block, _, _ := strings.Cut(after, "```")
	var g struct {
		IPAllowlist []string `json:"ip_allowlist"`
	}
	if err := json.Unmarshal([]byte(block), &g); err != nil {
		t.Fatalf("the group example is not JSON: %v", err)
	}
	for _, addr := range []string{"127.0.0.1", "::1"} {
		a := netip.MustParseAddr(addr)
		allowed := len(g.IPAllowlist) == 0
		for _, p := range g.IPAllowlist {
			if pfx, err := netip.ParsePrefix(p); err == nil && pfx.Contains(a) {
				allowed = true
			}
		}
		if !allowed {
			t.Errorf("the group example's ip_allowlist %v locks out %s", g.IPAllowlist, addr)
		}
	}
}

// A webhook whose address the SSRF rules refuse is refused when it is
// created (400 address_refused), not at every delivery; an allowed CIDR
// still lets it through.
func TestWebhookRefusedAddressAtCreation(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir())
	addr := freeAddr(t)
	vars := map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error", "VIGIL_HTTP_ADDR": addr,
		"VIGIL_RELAY_DISABLE": "true", "VIGIL_WEBHOOK_ALLOW_CIDRS": "127.0.0.2/32"}
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, []string{"tenant", "create", "--name", "Acme", "--json"}, envFunc(vars), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var tenant map[string]string
	_ = json.Unmarshal(out.Bytes(), &tenant)

	serveProcess(t, vars)
	create := func(url string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/webhooks", strings.NewReader(`{"url": "`+url+`"}`))
		req.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, u := range []string{"https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://[::1]:8443/hook", "https://169.254.169.254/latest", "http://93.184.216.34/hook", "https://localhost/hook"} {
		status, body := create(u)
		if status != http.StatusBadRequest || !strings.Contains(body, `"address_refused"`) {
			t.Errorf("POST /v1/webhooks %s: %d %s, want 400 address_refused", u, status, body)
		}
	}
	for _, u := range []string{"http://127.0.0.2:9/hook", "https://93.184.216.34/hook"} {
		if status, body := create(u); status != http.StatusCreated {
			t.Errorf("POST /v1/webhooks %s: %d %s, want 201", u, status, body)
		}
	}
}
