package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/adapters/keys"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/compliance"
)

func TestExportAndOfflineVerifyCommands(t *testing.T) {
	db := pgtest.New(t)
	dir := t.TempDir()
	appendSome(t, db.URL, dir, 20)
	env := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error"})
	// Offline: a database that does not exist, and no keys directory.
	offline := envFunc(map[string]string{"VIGIL_DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?connect_timeout=1", "VIGIL_DATA_DIR": t.TempDir()})
	_, vkey, err := keys.ReadSigningKey(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bundle := filepath.Join(t.TempDir(), "acme.jsonl")

	var out bytes.Buffer
	if err := run(ctx, []string{"export", "--tenant", "acme", "-o", bundle}, env, &out, io.Discard); err != nil {
		t.Fatalf("export: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "exported 20 events of tenant acme (seq 0..19)") {
		t.Errorf("export output:\n%s", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"verify", "--bundle", bundle, "--key", vkey}, offline, &out, io.Discard); err != nil {
		t.Fatalf("verify --bundle: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "OK: the bundle verifies") || !strings.Contains(out.String(), "20 leaves recomputed") {
		t.Errorf("verify output:\n%s", out.String())
	}

	// The first bundle's checkpoint, kept by the auditor.
	b, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	var h compliance.BundleHeader
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if err := json.Unmarshal(line, &h); err != nil {
		t.Fatal(err)
	}
	cpFile := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.WriteFile(cpFile, []byte(h.Checkpoint.Note), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key.pub")
	if err := os.WriteFile(keyFile, []byte(vkey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	appendSome(t, db.URL, dir, 5)
	second := filepath.Join(t.TempDir(), "second.jsonl")
	if err := run(ctx, []string{"export", "--tenant", "acme", "--from", "21", "--since", cpFile, "-o", second}, env, io.Discard, io.Discard); err != nil {
		t.Fatalf("export --since: %v", err)
	}
	out.Reset()
	if err := run(ctx, []string{"verify", "--bundle", second, "--key", keyFile, "--since", cpFile}, offline, &out, io.Discard); err != nil {
		t.Fatalf("verify --since: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "the log extends the checkpoint of size 20") {
		t.Errorf("verify output:\n%s", out.String())
	}

	// One byte altered.
	i := bytes.LastIndex(b, []byte(`"leaf":"`)) + 20
	// Another valid base64 character: the leaf decodes, but differs.
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	if err := os.WriteFile(bundle, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = run(ctx, []string{"verify", "--bundle", bundle, "--key", vkey}, offline, &out, io.Discard)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("verify of an altered bundle: %v", err)
	}
	if !strings.Contains(out.String(), "FAILED") || !strings.Contains(out.String(), "seq 19") {
		t.Errorf("verify output:\n%s", out.String())
	}
	// No key: a usage error, still without a database.
	if err := run(ctx, []string{"verify", "--bundle", bundle}, offline, io.Discard, io.Discard); !errors.As(err, &ee) || ee.code != 2 {
		t.Errorf("verify --bundle without --key: %v", err)
	}
}

// vigil export --since refuses a note its own verifier would refuse, before
// writing anything; vigil verify --bundle pins the origin and the tenant.
func TestExportSinceStrictAndVerifyPins(t *testing.T) {
	db := pgtest.New(t)
	dir := t.TempDir()
	appendSome(t, db.URL, dir, 6)
	env := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error"})
	offline := envFunc(map[string]string{"VIGIL_DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?connect_timeout=1", "VIGIL_DATA_DIR": t.TempDir()})
	_, vkey, err := keys.ReadSigningKey(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tmp := t.TempDir()
	bundle := filepath.Join(tmp, "acme.jsonl")
	if err := run(ctx, []string{"export", "--tenant", "acme", "-o", bundle}, env, io.Discard, io.Discard); err != nil {
		t.Fatalf("export: %v", err)
	}
	b, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	var h compliance.BundleHeader
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if err := json.Unmarshal(line, &h); err != nil {
		t.Fatal(err)
	}
	appendSome(t, db.URL, dir, 2)

	for name, note := range map[string]string{
		"trailing blank line": h.Checkpoint.Note + "\n",
		"broken signature":    h.Checkpoint.Note[:len(h.Checkpoint.Note)-6] + "AAAAA\n",
	} {
		cp := filepath.Join(tmp, "cp")
		if err := os.WriteFile(cp, []byte(note), 0o600); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(tmp, "refused.jsonl")
		err := run(ctx, []string{"export", "--tenant", "acme", "--since", cp, "-o", out}, env, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "not, byte for byte, a checkpoint this log signed") {
			t.Errorf("%s: export --since: %v", name, err)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: a refused export left %s", name, out)
		}
	}

	for _, tt := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"--origin", "vigil.local", "--tenant", "acme"}, true},
		{[]string{"--origin", "evil.example"}, false},
		{[]string{"--tenant", "globex"}, false},
	} {
		var out bytes.Buffer
		err := run(ctx, append([]string{"verify", "--bundle", bundle, "--key", vkey}, tt.args...), offline, &out, io.Discard)
		if (err == nil) != tt.ok {
			t.Errorf("verify --bundle %v: %v\n%s", tt.args, err, out.String())
		}
	}
}
