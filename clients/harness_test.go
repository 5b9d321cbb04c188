// Package clients_test runs Vigil against the standard clients its users run
// (issue 14): graphql-js, the Standard Webhooks reference library,
// transparency-dev's checkpoint and Merkle proof code, promtool, the AWS CLI,
// and the vigil environments of the shipped compose files. Each test starts
// a real `vigil serve` (built without -race, as users run it) on its own
// database. A missing client skips, except under CI=true, where it fails:
// .ci/run installs every one of them.
package clients_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
)

// need returns the path of a client program, skipping the test when it is
// missing (failing it under CI=true).
func need(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s not found (%s)", name, install)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// needNodeModules checks that `npm ci` ran in dir (relative to the
// repository root).
func needNodeModules(t *testing.T, dir string) string {
	t.Helper()
	need(t, "node", "apt-get install nodejs")
	abs, err := filepath.Abs(filepath.Join("..", dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(abs, "node_modules")); err != nil {
		msg := fmt.Sprintf("%s/node_modules missing: run `npm ci --prefix %s` (.ci/run does)", dir, dir)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return abs
}

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// vigilBinary builds cmd/vigil once per test binary, without -race, or
// returns $VIGIL_CLIENTS_BINARY.
func vigilBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		// A prebuilt binary, to check another build of the same tree.
		if b := os.Getenv("VIGIL_CLIENTS_BINARY"); b != "" {
			buildBin = b
			return
		}
		dir, err := os.MkdirTemp("", "vigil-clients-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "vigil")
		out, err := exec.Command("go", "build", "-o", buildBin, "../cmd/vigil").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// server is a running vigil serve.
type server struct {
	URL     string
	DataDir string
	env     []string
	bin     string
	log     *bytes.Buffer
	cmd     *exec.Cmd
}

// startServe runs `vigil serve` with env (VIGIL_*=…) over the defaults of
// this harness, and waits for /readyz.
func startServe(t *testing.T, env map[string]string) *server {
	t.Helper()
	bin := vigilBinary(t)
	s := &server{bin: bin, log: &bytes.Buffer{}}
	base := map[string]string{
		"VIGIL_HTTP_ADDR":           freeAddr(t),
		"VIGIL_RELAY_ADDR":          freeAddr(t),
		"VIGIL_DATA_DIR":            t.TempDir(),
		"VIGIL_CHECKPOINT_INTERVAL": "200ms",
		"VIGIL_LOG_LEVEL":           "warn",
	}
	if _, ok := env["VIGIL_DATABASE_URL"]; !ok {
		base["VIGIL_DATABASE_URL"] = pgtest.New(t).URL
	}
	for k, v := range env {
		base[k] = v
	}
	s.URL = "http://" + base["VIGIL_HTTP_ADDR"]
	s.DataDir = base["VIGIL_DATA_DIR"]
	for k, v := range base {
		s.env = append(s.env, k+"="+v)
	}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = append(cleanEnv(), s.env...)
	s.cmd.Dir = s.DataDir
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var exitErr error
	go func() { exitErr = s.cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("vigil serve output:\n%s", s.log.String())
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("vigil serve exited before ready: %v\n%s", exitErr, s.log.String())
		default:
		}
		resp, err := http.Get(s.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("vigil serve not ready after 90 s\n%s", s.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// cleanEnv is the test's environment without VIGIL_* settings, so that the
// developer's own configuration never leaks into a test.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VIGIL_") {
			out = append(out, kv)
		}
	}
	return out
}

// vigil runs a CLI command against the server's database and data dir and
// returns its standard output.
func (s *server) vigil(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(cleanEnv(), s.env...)
	cmd.Dir = s.DataDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("vigil %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// tenant creates a tenant and returns its id and admin key.
func (s *server) tenant(t *testing.T) (id, adminKey string) {
	t.Helper()
	var out struct {
		Tenant   string `json:"tenant"`
		AdminKey string `json:"admin_key"`
	}
	if err := json.Unmarshal([]byte(s.vigil(t, "tenant", "create", "--name", "Clients", "--json")), &out); err != nil {
		t.Fatal(err)
	}
	return out.Tenant, out.AdminKey
}

func (s *server) apiKey(t *testing.T, tenant, role string) string {
	t.Helper()
	var out struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal([]byte(s.vigil(t, "apikey", "create", "--tenant", tenant, "--role", role, "--json")), &out); err != nil {
		t.Fatal(err)
	}
	return out.Key
}

// simulate drives n sessions through the API.
func (s *server) simulate(t *testing.T, adminKey, ingestKey string, n int) {
	t.Helper()
	s.vigil(t, "simulate", "--url", s.URL, "--key", adminKey, "--ingest-key", ingestKey,
		"--sessions", fmt.Sprint(n), "--concurrency", "4", "--quiet")
}

// call sends a JSON request and decodes a JSON answer into out (if not nil).
func call(t *testing.T, method, url, key string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// get fetches a URL with a bearer key; it fails the test unless 200.
func get(t *testing.T, url, key string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

// startNode runs a node script that prints "listening PORT" and returns
// that port.
func startNode(t *testing.T, dir, script string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				line <- p
			}
		}
	}()
	select {
	case p := <-line:
		return p
	case <-time.After(30 * time.Second):
		t.Fatalf("node %s did not start: %s", script, stderr.String())
	}
	return ""
}

// eventually retries check until it returns nil or the wait is over.
func eventually(t *testing.T, wait time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// technician creates a group allowed everything and a technician in it,
// logs in, and returns the technician's token.
func (s *server) technician(t *testing.T, adminKey string) string {
	t.Helper()
	perms := map[string]bool{}
	for _, p := range []string{"remote_control", "reboot", "desktop_view", "record_sessions", "file_transfer", "private_session",
		"file_manager", "request_credentials", "send_url", "clipboard_sync", "system_info", "deploy_script", "one_time_prompt",
		"transfer_session", "screen_share"} {
		perms[p] = true
	}
	var g struct {
		ID string `json:"id"`
	}
	if st := call(t, http.MethodPost, s.URL+"/v1/groups", adminKey, map[string]any{"name": "Clients", "permissions": perms}, &g); st != http.StatusCreated {
		t.Fatalf("create group: %d", st)
	}
	const email, password = "tech@clients.example", "Correct-Horse-Battery-9"
	if st := call(t, http.MethodPost, s.URL+"/v1/technicians", adminKey, map[string]any{
		"email": email, "name": "Client Check", "group_id": g.ID, "password": password,
	}, nil); st != http.StatusCreated {
		t.Fatalf("create technician: %d", st)
	}
	var login struct {
		Token string `json:"token"`
	}
	if st := call(t, http.MethodPost, s.URL+"/v1/auth/login", "", map[string]any{"email": email, "password": password}, &login); st != http.StatusOK {
		t.Fatalf("login: %d", st)
	}
	return login.Token
}
