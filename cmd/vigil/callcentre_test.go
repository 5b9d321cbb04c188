package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
)

func TestSplitProfile(t *testing.T) {
	tests := []struct {
		args    []string
		profile string
		rest    []string
		err     bool
	}{
		{[]string{"--sessions", "3"}, "", []string{"--sessions", "3"}, false},
		{[]string{"--profile", "callcentre", "--technicians", "5"}, "callcentre", []string{"--technicians", "5"}, false},
		{[]string{"-profile=callcentre", "-quiet"}, "callcentre", []string{"-quiet"}, false},
		{[]string{"--quiet", "--profile=sessions"}, "sessions", []string{"--quiet"}, false},
		{[]string{"--", "--profile", "x"}, "", []string{"--", "--profile", "x"}, false},
		{[]string{"--profile"}, "", nil, true},
	}
	for _, tt := range tests {
		profile, rest, err := splitProfile(tt.args)
		if (err != nil) != tt.err || profile != tt.profile || !slices.Equal(rest, tt.rest) {
			t.Errorf("splitProfile(%q) = %q, %q, %v; want %q, %q, error %v", tt.args, profile, rest, err, tt.profile, tt.rest, tt.err)
		}
	}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"simulate", "--profile", "nope", "--key", simTestAdminKey, "--ingest-key", simTestIngestKey}, envFunc(nil), io.Discard, &stderr)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(stderr.String(), "want sessions or callcentre") {
		t.Errorf("unknown profile: err %v, stderr %q; want a usage error", err, stderr.String())
	}
}

// TestCallCentreAgainstRealServer runs the call-centre profile for a few
// seconds with 20 technicians against a real vigil serve: no unexpected
// errors, the server's CPU, RSS and database growth are reported, a
// second run reuses the technicians of --state, and vigil verify passes
// afterwards. No timing is asserted.
func TestCallCentreAgainstRealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir())
	addr := freeAddr(t)
	vars := map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error", "VIGIL_HTTP_ADDR": addr, "VIGIL_RELAY_ADDR": "127.0.0.1:0"}
	env := envFunc(vars)
	ctx := context.Background()

	tenant, ingest := tenantWithIngest(t, env)
	var out bytes.Buffer

	cmd, logs := serveProcess(t, vars)

	state := filepath.Join(t.TempDir(), "callcentre.json")
	args := []string{"simulate", "--profile", "callcentre", "--url", "http://" + addr, "--key", tenant["admin_key"], "--ingest-key", ingest["key"],
		"--technicians", "20", "--group-size", "10", "--duration", "4s", "--interval", "200ms", "--break-chance", "0.2",
		"--seed", "7", "--quiet", "--server-pid", strconv.Itoa(cmd.Process.Pid), "--database-url", db.URL, "--state", state}
	for i, want := range []string{"setup: created:           20 technicians", "setup: created:           none (from "} {
		out.Reset()
		if err := run(ctx, args, env, &out, io.Discard); err != nil {
			t.Fatalf("run %d: simulate --profile callcentre: %v\n%s\nserver log:\n%s", i+1, err, out.String(), logs.String())
		}
		for _, w := range []string{want, "unexpected errors:        0\n", "commands:", "latency p99.9:", "server RSS:", "bytes per session", "projections caught up:"} {
			if !strings.Contains(out.String(), w) {
				t.Errorf("run %d: the report lacks %q:\n%s", i+1, w, out.String())
			}
		}
		if strings.Contains(out.String(), "commands:                 0 ") {
			t.Errorf("run %d: no commands sent:\n%s", i+1, out.String())
		}
	}
	if b, err := os.ReadFile(state); err != nil || !strings.Contains(string(b), `"password"`) {
		t.Errorf("state file: %v", err)
	} else if fi, _ := os.Stat(state); fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600: it holds passwords", fi.Mode().Perm())
	}

	var sessions int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM rpt_sessions`).Scan(&sessions); err != nil || sessions == 0 {
		t.Errorf("%d sessions projected (%v)", sessions, err)
	}
	out.Reset()
	if err := run(ctx, []string{"verify", "--quiet"}, env, &out, io.Discard); err != nil || !strings.Contains(out.String(), "OK") {
		t.Fatalf("verify after the call-centre load: %v\n%s", err, out.String())
	}
}
