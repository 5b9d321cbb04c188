package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigilhq/vigil/adapters/keys"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"github.com/vigilhq/vigil/relay"
)

// TestMain lets the tests run the real program in a child process: with
// VIGIL_TEST_MAIN=1 the test binary is vigil.
func TestMain(m *testing.M) {
	if os.Getenv("VIGIL_TEST_MAIN") == "1" {
		os.Args = append([]string{"vigil"}, strings.Fields(os.Getenv("VIGIL_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func envFunc(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestServeAnswersHealthAndStopsOnSIGTERM(t *testing.T) {
	db := pgtest.New(t)
	// serve creates the database named in the URL when it is missing.
	url := strings.Replace(db.URL, db.Name, db.Name+"_serve", 1)
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db.Name+"_serve WITH (FORCE)")
	})
	addr := freeAddr(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VIGIL_TEST_MAIN=1", "VIGIL_TEST_ARGS=serve",
		"VIGIL_DATABASE_URL="+url, "VIGIL_HTTP_ADDR="+addr, "VIGIL_DATA_DIR="+dir, "VIGIL_RELAY_ADDR=127.0.0.1:0")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	var resp *http.Response
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err = http.Get("http://" + addr + "/readyz"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("serve never answered: %v\n%s", err, logs.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"database":"ok"`) {
		t.Fatalf("/readyz: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	// vigil health, the containers' probe, agrees.
	var out0 bytes.Buffer
	if err := run(context.Background(), []string{"health"}, envFunc(map[string]string{"VIGIL_HTTP_ADDR": addr}), &out0, io.Discard); err != nil || !strings.Contains(out0.String(), "ready") {
		t.Errorf("vigil health: %v %q", err, out0.String())
	}
	for _, f := range []string{"master.key", "signing.key", "signing.key.pub"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("generated key %s: %v", f, err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
	var ee exitError
	if err := run(context.Background(), []string{"health", "--timeout", "2s"}, envFunc(map[string]string{"VIGIL_HTTP_ADDR": addr}), io.Discard, io.Discard); !errors.As(err, &ee) || ee.code != 1 {
		t.Errorf("vigil health after serve stopped: %v", err)
	}
	out := logs.String()
	for _, want := range []string{"NO KEYS WERE CONFIGURED", "migrations applied", "stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve log lacks %q:\n%s", want, out)
		}
	}
	// The master key must never reach the log.
	mk, _ := os.ReadFile(filepath.Join(dir, "master.key"))
	if len(bytes.TrimSpace(mk)) == 0 || strings.Contains(out, strings.TrimSpace(string(mk))) {
		t.Error("the master key was logged, or not written")
	}
}

func TestProductionRefusesToGenerateKeys(t *testing.T) {
	db := pgtest.New(t)
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"serve"}, envFunc(map[string]string{
		"VIGIL_ENV": "production", "VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": t.TempDir(), "VIGIL_HTTP_ADDR": freeAddr(t),
	}), io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "no master key") {
		t.Fatalf("production without keys: %v", err)
	}
}

func TestBadCommandLines(t *testing.T) {
	for name, args := range map[string][]string{
		"None":       nil,
		"Unknown":    {"frobnicate"},
		"BadFlag":    {"verify", "--no-such-flag"},
		"ExtraArg":   {"migrate", "extra"},
		"KeysNoVerb": {"keys"},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), args, envFunc(nil), io.Discard, io.Discard)
			var ee exitError
			if !errors.As(err, &ee) || ee.code != 2 {
				t.Fatalf("err = %v, want usage error", err)
			}
		})
	}
	err := run(context.Background(), []string{"serve"}, envFunc(map[string]string{"VIGIL_ENV": "staging"}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "VIGIL_ENV") {
		t.Errorf("bad VIGIL_ENV: %v", err)
	}
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"VIGIL_LOG_STORE": "mongodb"}, `VIGIL_LOG_STORE="mongodb"`},
		{map[string]string{"VIGIL_LOG_STORE": "kurrentdb"}, "needs VIGIL_KURRENTDB_URL"},
	} {
		err := run(context.Background(), []string{"verify"}, envFunc(c.env), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.env, err, c.want)
		}
	}
}

func TestFlagsOverrideEnvironment(t *testing.T) {
	fs := newFlagSet()
	cfg := bindConfig(fs, envFunc(map[string]string{"VIGIL_HTTP_ADDR": "127.0.0.1:1", "VIGIL_DATA_DIR": "/env"}))
	if err := fs.Parse([]string{"--data-dir", "/flag"}); err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:1" || cfg.DataDir != "/flag" || cfg.CheckpointInterval != 5*time.Second {
		t.Errorf("config %+v", cfg)
	}
	if cfg.DatabaseURL != "postgres://postgres@127.0.0.1:5432/vigil?sslmode=disable" {
		t.Errorf("default database url %q", cfg.DatabaseURL)
	}
}

// appendSome writes events through a ledger wired like serve's, with the
// keys of dataDir.
func appendSome(t *testing.T, dbURL, dataDir string, n int) {
	t.Helper()
	devKeys(t, dataDir)
	ctx := context.Background()
	cfg := &Config{DatabaseURL: dbURL, DataDir: dataDir, LogOrigin: "vigil.local", Region: "eu", CheckpointInterval: time.Second, SchedulerInterval: time.Second, Env: "development", LogLevel: "error"}
	sys, err := open(ctx, cfg, newLogger(io.Discard, "error"), true)
	if err != nil {
		t.Fatal(err)
	}
	go sys.ledger.Run(ctx)
	for i := 0; i < n; i++ {
		guid := fmt.Sprintf("%032x", i%4+1)
		if _, err := sys.ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, ledgertest.Chat(t, "acme", guid, fmt.Sprint("hello ", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := sys.ledger.CheckpointAll(ctx); err != nil {
		t.Fatal(err)
	}
	sys.Close()
}

func TestVerifyCommand(t *testing.T) {
	db := pgtest.New(t)
	dir := t.TempDir()
	appendSome(t, db.URL, dir, 20)
	env := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir})

	var out bytes.Buffer
	if err := run(context.Background(), []string{"verify", "--quiet"}, env, &out, io.Discard); err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "OK: the log verifies") || !strings.Contains(out.String(), "leaves      20") {
		t.Errorf("verify output:\n%s", out.String())
	}
	// An auditor's key given on the command line, as a file.
	_, vkey, err := keys.ReadSigningKey(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"verify", "--quiet", "--tenant", "acme", "--key", vkey}, env, &out, io.Discard); err != nil {
		t.Fatalf("verify --key: %v\n%s", err, out.String())
	}
	// A host holding only the public half verifies with it by default.
	pubOnly := t.TempDir()
	pub, _ := os.ReadFile(filepath.Join(dir, "signing.key.pub"))
	os.WriteFile(filepath.Join(pubOnly, "signing.key.pub"), pub, 0o644)
	out.Reset()
	if err := run(context.Background(), []string{"verify", "--quiet"}, envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": pubOnly}), &out, io.Discard); err != nil {
		t.Fatalf("verify with only signing.key.pub: %v\n%s", err, out.String())
	}
	if err := run(context.Background(), []string{"verify", "--quiet"}, envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": t.TempDir()}), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "no checkpoint verifier key") {
		t.Errorf("verify without any key: %v", err)
	}
	// A verification job needs no master key, in production too.
	out.Reset()
	prod := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": t.TempDir(), "VIGIL_ENV": "production"})
	if err := run(context.Background(), []string{"verify", "--quiet", "--key", vkey}, prod, &out, io.Discard); err != nil {
		t.Fatalf("verify --key in production without a master key: %v\n%s", err, out.String())
	}
	// A different key refuses the checkpoints.
	other := filepath.Join(t.TempDir(), "other.key")
	if err := keys.GenerateSigningKey(other, "vigil.local"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = run(context.Background(), []string{"verify", "--quiet", "--key", other + ".pub"}, env, &out, io.Discard)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(out.String(), "checkpoint") {
		t.Errorf("verify with a foreign key: %v\n%s", err, out.String())
	}

	// Tampering is reported with its position and a non-zero exit.
	ctx := context.Background()
	for _, s := range []string{`ALTER TABLE events DISABLE TRIGGER events_immutable`,
		`UPDATE events SET data = '{"from":"technician"}' WHERE position = 13`} {
		if _, err := db.Pool.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	out.Reset()
	err = run(context.Background(), []string{"verify", "--quiet"}, env, &out, io.Discard)
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("verify of a tampered log: %v", err)
	}
	if !strings.Contains(out.String(), "FAILED: verify failed at position 13") {
		t.Errorf("verify output:\n%s", out.String())
	}
}

func TestKeysNewSigning(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "signing.key")
	env := envFunc(map[string]string{"VIGIL_LOG_ORIGIN": "vigil.example"})
	var out bytes.Buffer
	if err := run(context.Background(), []string{"keys", "new-signing", path}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != strings.TrimSpace(string(pub)) || !strings.HasPrefix(got, "vigil.example+") {
		t.Errorf("printed %q, .pub holds %q", got, pub)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode: %v %v", st, err)
	}
	signer, vkey, err := keys.ReadSigningKey(path)
	if err != nil || vkey != strings.TrimSpace(string(pub)) || signer.Name() != "vigil.example" {
		t.Errorf("read back: %v %q", err, vkey)
	}
	before, _ := os.ReadFile(path)
	err = run(context.Background(), []string{"keys", "new-signing", path}, env, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Errorf("second new-signing: %v", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the key was overwritten")
	}
	var ee exitError
	if err := run(context.Background(), []string{"keys", "new-signing"}, env, io.Discard, io.Discard); !errors.As(err, &ee) || ee.code != 2 {
		t.Errorf("no FILE: %v", err)
	}
}

func TestKeysCommands(t *testing.T) {
	db := pgtest.New(t)
	dir := t.TempDir()
	appendSome(t, db.URL, dir, 8)
	env := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error"})
	ctx := context.Background()

	var out bytes.Buffer
	if err := run(ctx, []string{"keys", "public"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "signing.key.pub"))
	if strings.TrimSpace(out.String()) != strings.TrimSpace(string(pub)) {
		t.Errorf("keys public printed %q, the .pub file holds %q", out.String(), pub)
	}

	before, _ := os.ReadFile(filepath.Join(dir, "master.key"))
	out.Reset()
	if err := run(ctx, []string{"keys", "rotate"}, env, &out, io.Discard); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if !strings.Contains(out.String(), "re-wrapped 4 subject keys") {
		t.Errorf("rotate output: %s", out.String())
	}
	after, _ := os.ReadFile(filepath.Join(dir, "master.key"))
	if bytes.Equal(before, after) {
		t.Fatal("master key file unchanged after rotation")
	}
	if _, err := os.Stat(filepath.Join(dir, "master.key.new")); !errors.Is(err, os.ErrNotExist) {
		t.Error("pending key file left behind")
	}
	// Everything still opens with the new key alone.
	mk, err := keys.ReadMasterKeyFile(filepath.Join(dir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := postgres.Open(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	st := postgres.NewStore(pool, postgres.Options{})
	sealer := ledger.NewSealer(st, ledger.NewKeyring(mk), 0)
	evs, err := st.ReadAll(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if err := sealer.Open(ctx, &e); err != nil || e.Erased() || !strings.Contains(string(e.Personal[0].Value), "hello") {
			t.Fatalf("event %d after rotation: %v %v", e.Position, err, e.Personal)
		}
	}
	out.Reset()
	if err := run(ctx, []string{"verify", "--quiet"}, env, &out, io.Discard); err != nil {
		t.Fatalf("verify after rotation: %v", err)
	}
	// A configured key cannot be rotated in place.
	err = run(ctx, []string{"keys", "rotate"}, envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_MASTER_KEY_FILE": filepath.Join(dir, "master.key")}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--new-key-file") {
		t.Errorf("rotate of a configured key without --new-key-file: %v", err)
	}
}

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// TestReadmeListsEverySetting keeps the README's configuration table true.
func TestReadmeListsEverySetting(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var c Config
	for _, s := range c.settings() {
		row := fmt.Sprintf("| `%s` | `--%s` |", s.env, s.flag)
		if !strings.Contains(string(readme), row) {
			t.Errorf("README.md has no row starting %q", row)
		}
		if s.def != "" && !strings.Contains(string(readme), "`"+s.def+"`") {
			t.Errorf("README.md does not give the default %q of %s", s.def, s.env)
		}
	}
}

func TestTenantAndAPIKeyCommands(t *testing.T) {
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir()) // as serve makes them
	env := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error"})
	ctx := context.Background()

	var out bytes.Buffer
	if err := run(ctx, []string{"tenant", "create", "--name", "Acme", "--json"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var created struct{ Tenant, Region string }
	var raw map[string]string
	if err := json.Unmarshal(out.Bytes(), &raw); err != nil {
		t.Fatalf("tenant create --json printed %q", out.String())
	}
	created.Tenant, created.Region = raw["tenant"], raw["region"]
	if created.Tenant == "" || created.Region != "eu" || !strings.HasPrefix(raw["admin_key"], "vk_") {
		t.Fatalf("tenant create printed %v", raw)
	}
	// Another region than the deployment's is refused.
	err := run(ctx, []string{"tenant", "create", "--name", "Initech", "--region", "us"}, env, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "region") {
		t.Errorf("tenant in another region: %v", err)
	}
	out.Reset()
	if err := run(ctx, []string{"apikey", "create", "--tenant", created.Tenant, "--role", "ingest", "--json"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var key map[string]string
	if err := json.Unmarshal(out.Bytes(), &key); err != nil || key["role"] != "ingest" || !strings.HasPrefix(key["key"], "vk_") {
		t.Fatalf("apikey create printed %q", out.String())
	}
	for name, args := range map[string][]string{
		"BadRole":       {"apikey", "create", "--tenant", created.Tenant, "--role", "god"},
		"UnknownTenant": {"apikey", "create", "--tenant", "nope", "--role", "admin"},
		"UnknownKey":    {"apikey", "revoke", "--id", "nope"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := run(ctx, args, env, io.Discard, io.Discard); err == nil {
				t.Error("accepted")
			}
		})
	}
	if err := run(ctx, []string{"apikey", "revoke", "--id", key["key"]}, env, io.Discard, io.Discard); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	// The revoked key no longer authenticates; the admin key does.
	sys, err := open(ctx, &Config{DatabaseURL: db.URL, DataDir: dir, LogOrigin: "vigil.local", Region: "eu", CheckpointInterval: time.Second, SchedulerInterval: time.Second, Env: "development", LogLevel: "error"}, newLogger(io.Discard, "error"), false)
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	if _, err := sys.service.Authenticate(ctx, key["key"]); err == nil {
		t.Error("a revoked key authenticates")
	}
	if p, err := sys.service.Authenticate(ctx, raw["admin_key"]); err != nil || p.Role != "admin" || p.Tenant != created.Tenant {
		t.Errorf("admin key: %+v %v", p, err)
	}
}

// TestSimulateAgainstRealServer runs the quick start: a serve process on a
// fresh database, a tenant and an ingest key from the CLI, simulate
// through HTTP, then verify.
func TestSimulateAgainstRealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir()) // as serve makes them on its first start
	addr := freeAddr(t)
	vars := map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error", "VIGIL_HTTP_ADDR": addr, "VIGIL_RELAY_ADDR": "127.0.0.1:0"}
	env := envFunc(vars)
	ctx := context.Background()

	tenant, ingest := tenantWithIngest(t, env)
	var out bytes.Buffer

	// A CRM receiver for session.ended webhooks.
	var hookMu sync.Mutex
	ended := map[string]bool{}
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p struct {
			Type string `json:"type"`
			Data struct {
				SessionID string `json:"session_id"`
			} `json:"data"`
		}
		if json.Unmarshal(b, &p) == nil && p.Type == "session.ended" && r.Header.Get("webhook-signature") != "" {
			hookMu.Lock()
			ended[p.Data.SessionID] = true
			hookMu.Unlock()
		}
		w.WriteHeader(204)
	}))
	defer receiver.Close()
	vars["VIGIL_WEBHOOK_ALLOW_CIDRS"] = "127.0.0.1/32"

	cmd, logs := serveProcess(t, vars)
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/webhooks", strings.NewReader(`{"url": "`+receiver.URL+`", "description": "crm"}`))
	req.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 201 || !strings.Contains(string(body), "whsec_") {
		t.Fatalf("webhook subscription: %d %s", res.StatusCode, body)
	}
	out.Reset()
	err = run(ctx, []string{"simulate", "--url", "http://" + addr, "--key", tenant["admin_key"], "--ingest-key", ingest["key"],
		"--sessions", "12", "--concurrency", "4", "--seed", "3", "--quiet"}, env, &out, io.Discard)
	if err != nil {
		t.Fatalf("simulate: %v\n%s\nserver log:\n%s", err, out.String(), logs.String())
	}
	for _, want := range []string{"sessions completed:  12/12", "unexpected errors:   0", "requests per second:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("simulate output lacks %q:\n%s", want, out.String())
		}
	}
	// The projections follow: /metrics shows their lag reaching 0, and
	// the sessions are in the reporting table.
	var metrics string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		metrics = string(b)
		if strings.Contains(metrics, `vigil_projection_lag_events{projection="reporting"} 0`) &&
			strings.Contains(metrics, `vigil_projection_lag_events{projection="subjects"} 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("projections never caught up:\n%s", metrics)
		}
	}
	var sessions int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM rpt_sessions`).Scan(&sessions); err != nil || sessions != 12 {
		t.Fatalf("%d sessions projected (%v), want 12", sessions, err)
	}
	// The CRM got a signed session.ended for every session.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		hookMu.Lock()
		n := len(ended)
		hookMu.Unlock()
		if n == 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook receiver got %d session.ended deliveries, want 12", n)
		}
	}
	// GraphQL and the CSV report read them, scoped to the tenant.
	q := `{"query": "{ sessions(first: 5) { totalCount edges { node { id status customerName } } } projectionStatus { name lag } }"}`
	req, _ = http.NewRequest("POST", "http://"+addr+"/graphql", strings.NewReader(q))
	req.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
	req.Header.Set("Content-Type", "application/json")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), `"totalCount":12`) || strings.Contains(string(body), `"errors"`) {
		t.Fatalf("graphql: %d %s", res.StatusCode, body)
	}
	req, _ = http.NewRequest("GET", "http://"+addr+"/v1/reports/sessions.csv", nil)
	req.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if lines := strings.Count(strings.TrimSpace(string(body)), "\n"); res.StatusCode != 200 || lines != 12 {
		t.Fatalf("sessions.csv: %d, %d data lines:\n%s", res.StatusCode, lines, body)
	}
	// A recording streams in and back out through serve, encrypted at rest.
	var recGUID, recID string
	{
		// A recording the simulated technician started and stopped.
		if err := db.Pool.QueryRow(ctx, `SELECT guid, recording_id FROM rpt_recordings WHERE state = 'stopped' ORDER BY guid LIMIT 1`).Scan(&recGUID, &recID); err != nil {
			t.Fatalf("no recording started by the simulation: %v", err)
		}
		payload := bytes.Repeat([]byte("frame "), 300000) // 1.8 MB: more than one chunk and the 1 MiB body limit
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/sessions/"+recGUID+"/recordings?recording_id="+recID, bytes.NewReader(payload))
		req.Header.Set("Authorization", "Bearer "+ingest["key"])
		req.Header.Set("Content-Type", "video/webm")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var stored struct {
			ID   string `json:"id"`
			Size int64  `json:"size"`
		}
		_ = json.Unmarshal(body, &stored)
		if res.StatusCode != 201 && res.StatusCode != 200 || stored.Size != int64(len(payload)) {
			t.Fatalf("recording upload: %d %s", res.StatusCode, body)
		}
		req, _ = http.NewRequest("GET", "http://"+addr+"/v1/recordings/"+stored.ID, nil)
		req.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
		res, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !bytes.Equal(got, payload) {
			t.Fatalf("recording playback: %d, %d bytes", res.StatusCode, len(got))
		}
		// The GDPR export endpoint answers through serve too.
		req, _ = http.NewRequest("POST", "http://"+addr+"/v1/gdpr/exports", strings.NewReader(`{"subject": "session:`+recGUID+`"}`))
		req.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
		req.Header.Set("Content-Type", "application/json")
		res, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), stored.ID) {
			t.Fatalf("GDPR export: %d %.300s", res.StatusCode, body)
		}
	}

	// Erase one session with the CLI while serve runs: afterwards GraphQL
	// and the CSV report show it erased, and the receipt verifies offline.
	var guid string
	var name string
	if err := db.Pool.QueryRow(ctx, `SELECT guid FROM rpt_sessions ORDER BY created_position LIMIT 1`).Scan(&guid); err != nil {
		t.Fatal(err)
	}
	graphql := func(q string) string {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+addr+"/graphql", strings.NewReader(q))
		req.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	sessionQuery := `{"query": "{ session(id: \"` + guid + `\") { customerName customerEmail chat(first: 50) { text } } }"}`
	before := graphql(sessionQuery)
	var parsed struct {
		Data struct {
			Session struct{ CustomerName string }
		}
	}
	_ = json.Unmarshal([]byte(before), &parsed)
	name = parsed.Data.Session.CustomerName
	if name == "" || name == "[erased]" {
		t.Fatalf("session before erasure: %s", before)
	}
	out.Reset()
	if err := run(ctx, []string{"erase", "--tenant", tenant["tenant"], "--subject", "session:" + guid, "--reason", "test"}, env, &out, io.Discard); err != nil {
		t.Fatalf("erase: %v\n%s", err, out.String())
	}
	receipt := out.String() // the receipt alone: status lines go to stderr
	rf := filepath.Join(dir, "receipt.txt")
	if err := os.WriteFile(rf, []byte(receipt), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, []string{"erase", "--verify-receipt", rf, "--key", filepath.Join(dir, "signing.key.pub")}, env, &out, io.Discard); err != nil {
		t.Errorf("receipt does not verify: %v\n%s\nreceipt:\n%s", err, out.String(), receipt)
	}
	// The purge clears the reporting rows' personal values (null); the
	// log's sealed fields read [erased] (keys destroyed).
	after := graphql(sessionQuery)
	if strings.Contains(after, name) || strings.Contains(after, `"errors"`) {
		t.Errorf("GraphQL after erasure: %s", after)
	}
	req, _ = http.NewRequest("GET", "http://"+addr+"/v1/reports/sessions.csv", nil)
	req.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if strings.Contains(line, guid) && strings.Contains(line, name) {
			t.Errorf("sessions.csv after erasure: %s", line)
		}
	}
	// The projections reach the head before serve stops, so that the rows
	// compared with a rebuild below are complete (the erasure's own events
	// may still be on their way).
	caughtUp := regexp.MustCompile(`"lag":0\b`)
	for deadline := time.Now().Add(30 * time.Second); ; {
		st := graphql(`{"query": "{ projectionStatus { name lag } }"}`)
		if strings.Count(st, `"name"`) > 0 && strings.Count(st, `"name"`) == len(caughtUp.FindAllString(st, -1)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("projections did not catch up: %s", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Every acknowledged request is in the log, and the log verifies.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	out.Reset()
	if err := run(ctx, []string{"verify", "--quiet"}, env, &out, io.Discard); err != nil {
		t.Fatalf("verify after simulate: %v\n%s", err, out.String())
	}
	// Rebuilding gives the same rows, the erased session's included: the
	// rebuild removes again what the erasure removed.
	dump := func() string {
		var s, chat string
		if err := db.Pool.QueryRow(ctx, `SELECT string_agg(t::text, E'\n' ORDER BY guid) FROM rpt_sessions t`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		if err := db.Pool.QueryRow(ctx, `SELECT count(*)::text FROM rpt_chat WHERE guid = $1`, guid).Scan(&chat); err != nil {
			t.Fatal(err)
		}
		return s + "\nchat rows of the erased session: " + chat
	}
	rows := dump()
	out.Reset()
	if err := run(ctx, []string{"rebuild", "--check", "--quiet"}, env, &out, io.Discard); err != nil {
		t.Fatalf("rebuild --check after simulate and an erasure: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "reporting: equal to a rebuild over") || !strings.Contains(out.String(), "subjects: equal to a rebuild over") {
		t.Errorf("rebuild --check printed %q", out.String())
	}
	// A chat row changed behind the projection's back: --check names its
	// table, exits 1 and leaves it as it is.
	if _, err := db.Pool.Exec(ctx, `UPDATE rpt_chat SET sender = 'forged' WHERE position = (SELECT min(position) FROM rpt_chat)`); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = run(ctx, []string{"rebuild", "--check", "--quiet"}, env, &out, io.Discard)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(out.String(), "reporting: table rpt_chat differs from a rebuild") {
		t.Errorf("rebuild --check after a forged row: err %v, printed %q", err, out.String())
	}
	var forged int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM rpt_chat WHERE sender = 'forged'`).Scan(&forged); err != nil || forged != 1 {
		t.Errorf("rebuild --check changed the forged row (%d left, %v)", forged, err)
	}
	out.Reset()
	if err := run(ctx, []string{"rebuild", "--quiet"}, env, &out, io.Discard); err != nil {
		t.Fatalf("rebuild: %v", err)
	}
	if !strings.Contains(out.String(), "rebuilt reporting:") || !strings.Contains(out.String(), "rebuilt subjects:") {
		t.Errorf("rebuild printed %q", out.String())
	}
	if dump() != rows {
		t.Error("rebuild changed the sessions table")
	}
	if err := run(ctx, []string{"rebuild", "nope"}, env, io.Discard, io.Discard); err == nil {
		t.Error("rebuild of an unknown projection accepted")
	}
}

func TestRecordingSettings(t *testing.T) {
	c := &Config{S3TLS: "true", RecordingMaxSize: "4GiB", RecordingTenantMax: "acme=1MiB, globex=2048", RecordingTenantPre: "acme=acme/rec"}
	r, err := c.recordings()
	if err != nil {
		t.Fatal(err)
	}
	if r.MaxSize != 4<<30 || r.TenantMaxSize["acme"] != 1<<20 || r.TenantMaxSize["globex"] != 2048 || r.TenantPrefix["acme"] != "acme/rec" {
		t.Errorf("recordings config %+v", r)
	}
	for name, bad := range map[string]*Config{
		"Size":       {S3TLS: "true", RecordingMaxSize: "lots"},
		"TLS":        {S3TLS: "maybe", RecordingMaxSize: "1"},
		"TenantSize": {S3TLS: "true", RecordingMaxSize: "1", RecordingTenantMax: "acme=-1"},
		"Prefix":     {S3TLS: "true", RecordingMaxSize: "1", RecordingTenantPre: "acme=/abs"},
	} {
		if _, err := bad.recordings(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestVerifyUnmigratedDatabase(t *testing.T) {
	db := pgtest.New(t)
	url := strings.Replace(db.URL, db.Name, db.Name+"_empty", 1)
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db.Name+"_empty WITH (FORCE)")
	})
	env := envFunc(map[string]string{"VIGIL_DATABASE_URL": url, "VIGIL_DATA_DIR": t.TempDir()})
	// A misspelled database is an error, and is not created.
	err := run(context.Background(), []string{"verify", "--quiet"}, env, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("verify of a missing database: %v", err)
	}
	var exists bool
	if err := db.Pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db.Name+"_empty").Scan(&exists); err != nil || exists {
		t.Fatalf("verify created the database (%v)", err)
	}
	if _, err := db.Pool.Exec(context.Background(), "CREATE DATABASE "+db.Name+"_empty"); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"verify", "--quiet"}, env, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "vigil migrate") {
		t.Fatalf("verify of an unmigrated database: %v", err)
	}
}

// TestSigningKeyRotation: after the checkpoint signing key changes, the
// log verifies with the old and the new verifier keys together, and not
// with the old one alone.
func TestSigningKeyRotation(t *testing.T) {
	db := pgtest.New(t)
	dir := t.TempDir()
	appendSome(t, db.URL, dir, 8) // checkpoints signed by the generated key
	ctx := context.Background()
	newKey := filepath.Join(t.TempDir(), "signing2.key")
	if err := run(ctx, []string{"keys", "new-signing", "--log-origin", "vigil.local", newKey}, envFunc(nil), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	// The log accepts the new key once the old one vouched for it.
	if err := run(ctx, []string{"keys", "rotate-signing", "--new-key-file", newKey}, envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error"}), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{DatabaseURL: db.URL, DataDir: dir, SigningKeyFile: newKey, LogOrigin: "vigil.local", Region: "eu",
		CheckpointInterval: time.Second, SchedulerInterval: time.Second, Env: "development", LogLevel: "error", LogStore: "postgres"}
	sys, err := open(ctx, cfg, newLogger(io.Discard, "error"), false)
	if err != nil {
		t.Fatal(err)
	}
	go sys.ledger.Run(ctx)
	for i := range 4 {
		guid := fmt.Sprintf("%032x", 7)
		if _, err := sys.ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, ledgertest.Chat(t, "acme", guid, fmt.Sprint("after ", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := sys.ledger.CheckpointAll(ctx); err != nil {
		t.Fatal(err)
	}
	sys.Close()

	oldPub, newPub := filepath.Join(dir, "signing.key.pub"), newKey+".pub"
	env := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": t.TempDir()})
	var out bytes.Buffer
	err = run(ctx, []string{"verify", "--quiet", "--key", oldPub}, env, &out, io.Discard)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("verify with the old key alone: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"verify", "--quiet", "--key", oldPub + "," + newPub}, env, &out, io.Discard); err != nil {
		t.Fatalf("verify with both keys: %v\n%s", err, out.String())
	}
	// A file holding both, one per line.
	a, _ := os.ReadFile(oldPub)
	b, _ := os.ReadFile(newPub)
	both := filepath.Join(t.TempDir(), "verifiers.txt")
	os.WriteFile(both, []byte("# before and after the rotation\n"+string(a)+"\n"+string(b)), 0o644)
	out.Reset()
	if err := run(ctx, []string{"verify", "--quiet", "--key", both}, env, &out, io.Discard); err != nil {
		t.Fatalf("verify with a key file of both: %v\n%s", err, out.String())
	}
	if err := run(ctx, []string{"verify", "--quiet", "--key", "nonsense"}, env, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "neither a verifier key nor a readable file") {
		t.Errorf("bad --key: %v", err)
	}
}

// TestServeHTTPS: with VIGIL_HTTP_TLS_CERT_FILE and _KEY_FILE, serve speaks
// HTTPS with that certificate, and vigil health probes it.
func TestServeHTTPS(t *testing.T) {
	db := pgtest.New(t)
	dir := t.TempDir()
	certPEM, keyPEM, err := relay.SelfSigned([]string{"vigil.example"})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "http.pem"), filepath.Join(dir, "http-key.pem")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VIGIL_TEST_MAIN=1", "VIGIL_TEST_ARGS=serve", "VIGIL_DATABASE_URL="+db.URL,
		"VIGIL_HTTP_ADDR="+addr, "VIGIL_DATA_DIR="+dir, "VIGIL_RELAY_DISABLE=true",
		"VIGIL_HTTP_TLS_CERT_FILE="+certFile, "VIGIL_HTTP_TLS_KEY_FILE="+keyFile)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "vigil.example"}}}
	var resp *http.Response
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err = client.Get("https://" + addr + "/readyz"); err == nil {
			break
		}
	}
	if err != nil {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		t.Fatalf("HTTPS never answered: %v\n%s", err, logs.String())
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("/readyz over HTTPS: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	// Plain HTTP is refused.
	if r, err := http.Get("http://" + addr + "/readyz"); err == nil && r.StatusCode == 200 {
		t.Error("plain HTTP answered 200 on the HTTPS port")
	}
	var out bytes.Buffer
	env := envFunc(map[string]string{"VIGIL_HTTP_ADDR": addr, "VIGIL_HTTP_TLS_CERT_FILE": certFile})
	if err := run(context.Background(), []string{"health"}, env, &out, io.Discard); err != nil || !strings.Contains(out.String(), "ready") {
		t.Errorf("vigil health over HTTPS: %v %q", err, out.String())
	}
	// Half a configuration is refused.
	err = run(context.Background(), []string{"serve"}, envFunc(map[string]string{"VIGIL_HTTP_TLS_CERT_FILE": certFile}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "go together") {
		t.Errorf("serve with a certificate and no key: %v", err)
	}
}

// TestServeReportsFromReplica: with VIGIL_REPORTS_DATABASE_URL, GraphQL
// reads the projections there. The "replica" here is a second database
// holding a session row the main one does not have.
func TestServeReportsFromReplica(t *testing.T) {
	db := pgtest.New(t)
	replica := pgtest.New(t)
	dir := devKeys(t, t.TempDir()) // as serve makes them
	ctx := context.Background()
	env := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error"})
	var out bytes.Buffer
	if err := run(ctx, []string{"tenant", "create", "--name", "Acme", "--json"}, env, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var tenant map[string]string
	if err := json.Unmarshal(out.Bytes(), &tenant); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"migrate"}, envFunc(map[string]string{"VIGIL_DATABASE_URL": replica.URL, "VIGIL_LOG_LEVEL": "error"}), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	const guid = "0123456789abcdef0123456789abcdef"
	if _, err := replica.Pool.Exec(ctx, `INSERT INTO rpt_sessions (tenant, guid, status, queue, group_id, created_at, created_position, last_position)
		VALUES ($1, $2, 'waiting', 'shared', '', now(), 1, 1)`, tenant["tenant"], guid); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "VIGIL_TEST_MAIN=1", "VIGIL_TEST_ARGS=serve", "VIGIL_DATABASE_URL="+db.URL,
		"VIGIL_HTTP_ADDR="+addr, "VIGIL_DATA_DIR="+dir, "VIGIL_RELAY_DISABLE=true", "VIGIL_REPORTS_DATABASE_URL="+replica.URL)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	}
	defer stop()
	query := `{"query": "{ sessions { totalCount edges { node { id } } } }"}`
	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/graphql", strings.NewReader(query))
		req.Header.Set("Authorization", "Bearer "+tenant["admin_key"])
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		body = string(b)
		break
	}
	stop() // before reading its log
	if !strings.Contains(body, guid) || !strings.Contains(body, `"totalCount":1`) {
		t.Fatalf("GraphQL did not read the replica: %s\n%s", body, logs.String())
	}
	if !strings.Contains(logs.String(), "reports read from a replica") {
		t.Errorf("serve did not say where reports come from:\n%s", logs.String())
	}
}
