package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/adapters/keys"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
)

// devKeys generates development keys into dir, as `vigil serve` does on
// its first start, and returns dir. Every other command only loads them.
func devKeys(tb testing.TB, dir string) string {
	tb.Helper()
	if _, err := keys.Load(keys.Config{DataDir: dir, Generate: true}); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// logCounts returns the number of events and of checkpoints stored.
func logCounts(t *testing.T, db *pgtest.DB) (events, checkpoints int64) {
	t.Helper()
	ctx := context.Background()
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM checkpoints)`).Scan(&events, &checkpoints); err != nil {
		t.Fatal(err)
	}
	return events, checkpoints
}

// TestCommandsRefuseToGenerateKeys (issue 14): a command run from another
// folder than serve's, with the default data dir ./var, used to generate
// new keys there, append its event and sign a checkpoint with the new key,
// so that the log never verified again. Now it refuses, naming the folder
// it looked in, and appends and signs nothing.
func TestCommandsRefuseToGenerateKeys(t *testing.T) {
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir())
	appendSome(t, db.URL, dir, 8)
	ctx := context.Background()
	var out bytes.Buffer
	served := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error"})
	if err := run(ctx, []string{"tenant", "create", "--name", "Acme", "--json"}, served, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	events, checkpoints := logCounts(t, db)

	empty := t.TempDir()
	t.Chdir(empty)
	folder, err := filepath.Abs("var")
	if err != nil {
		t.Fatal(err)
	}
	env := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_LOG_LEVEL": "error"}) // VIGIL_DATA_DIR: the default ./var
	for name, args := range map[string][]string{
		"export":         {"export", "--tenant", "acme", "-o", "bundle.jsonl"},
		"erase":          {"erase", "--tenant", "acme", "--subject", "session:" + fmt.Sprintf("%032x", 1), "--reason", "test"},
		"tenant":         {"tenant", "create", "--name", "Initech"},
		"apikey":         {"apikey", "create", "--tenant", "acme", "--role", "admin"},
		"rebuild":        {"rebuild", "--quiet"},
		"keys rotate":    {"keys", "rotate"},
		"rotate-signing": {"keys", "rotate-signing", "--new-key-file", filepath.Join(dir, "signing.key.pub")},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(ctx, args, env, io.Discard, io.Discard)
			if !errors.Is(err, keys.ErrNoKeys) {
				t.Fatalf("%v from an empty folder: %v", args, err)
			}
			if !strings.Contains(err.Error(), folder) || !strings.Contains(err.Error(), "VIGIL_DATA_DIR") {
				t.Errorf("the error does not name the folder %s and the fix: %v", folder, err)
			}
			entries, _ := os.ReadDir(empty)
			if len(entries) != 0 {
				t.Errorf("%v wrote %d files into the empty folder", args, len(entries))
			}
			if e, c := logCounts(t, db); e != events || c != checkpoints {
				t.Errorf("%v appended %d events and signed %d checkpoints", args, e-events, c-checkpoints)
			}
		})
	}
	// serve may generate keys, but not for a database that holds a log
	// already: they could never sign it.
	t.Run("serve", func(t *testing.T) {
		err := run(ctx, []string{"serve"}, envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_LOG_LEVEL": "error",
			"VIGIL_HTTP_ADDR": freeAddr(t), "VIGIL_RELAY_DISABLE": "true"}), io.Discard, io.Discard)
		if !errors.Is(err, keys.ErrNoKeys) || !strings.Contains(err.Error(), folder) || !strings.Contains(err.Error(), "Not generating") {
			t.Fatalf("serve from an empty folder against a signed log: %v", err)
		}
		if entries, _ := os.ReadDir(empty); len(entries) != 0 {
			t.Errorf("serve wrote %d files into the empty folder", len(entries))
		}
		if e, c := logCounts(t, db); e != events || c != checkpoints {
			t.Errorf("serve appended %d events and signed %d checkpoints", e-events, c-checkpoints)
		}
	})
	out.Reset()
	if err := run(ctx, []string{"verify", "--quiet"}, served, &out, io.Discard); err != nil {
		t.Fatalf("verify: %v\n%s", err, out.String())
	}
}

// TestSigningKeyPinning (issue 14): the log accepts the verifier keys it
// pinned; a process holding another signing key refuses to sign (serve
// and the CLI at once, the checkpointer too) and the log still verifies;
// an audited rotation, run with the accepted key, then lets the new key
// sign, and the log verifies with both.
func TestSigningKeyPinning(t *testing.T) {
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir())
	appendSome(t, db.URL, dir, 8) // the first checkpoint pins the data dir's key
	ctx := context.Background()
	oldPub := filepath.Join(dir, "signing.key.pub")
	_, oldKey, err := keys.ReadSigningKey(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	current := map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error"}
	var out bytes.Buffer
	if err := run(ctx, []string{"keys", "pinned"}, envFunc(current), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), oldKey+"\tfirst\t") || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("keys pinned:\n%s", out.String())
	}

	// Another signing key, with the same master key and database.
	newKey := filepath.Join(t.TempDir(), "signing2.key")
	if err := run(ctx, []string{"keys", "new-signing", "--log-origin", "vigil.local", newKey}, envFunc(nil), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	_, nextKey, err := keys.ReadSigningKey(newKey)
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_SIGNING_KEY_FILE": newKey,
		"VIGIL_LOG_LEVEL": "error", "VIGIL_HTTP_ADDR": freeAddr(t), "VIGIL_RELAY_DISABLE": "true"}
	events, checkpoints := logCounts(t, db)
	bundle := filepath.Join(t.TempDir(), "acme.jsonl")
	for name, args := range map[string][]string{
		"export": {"export", "--tenant", "acme", "-o", bundle},
		"serve":  {"serve"},
		// A process holding an unknown key cannot vouch for itself.
		"rotate-signing": {"keys", "rotate-signing", "--new-key-file", newKey},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(ctx, args, envFunc(other), io.Discard, io.Discard)
			if !errors.Is(err, ledger.ErrSignerNotPinned) || !strings.Contains(err.Error(), nextKey) || !strings.Contains(err.Error(), oldKey) {
				t.Fatalf("%v with an unpinned signing key: %v", args, err)
			}
			if e, c := logCounts(t, db); e != events || c != checkpoints {
				t.Errorf("%v appended %d events and signed %d checkpoints", args, e-events, c-checkpoints)
			}
		})
	}
	// The checkpointer itself refuses, whatever opened the ledger.
	cfg := testConfig(db.URL, dir)
	cfg.SigningKeyFile = newKey
	sys, err := open(ctx, cfg, newLogger(io.Discard, "error"), false)
	if err != nil {
		t.Fatal(err)
	}
	go sys.ledger.Run(ctx)
	guid := fmt.Sprintf("%032x", 9)
	if _, err := sys.ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, ledgertest.Chat(t, "acme", guid, "unsigned")); err != nil {
		t.Fatal(err)
	}
	if _, err := sys.ledger.Checkpoint(ctx, "acme"); !errors.Is(err, ledger.ErrSignerNotPinned) {
		t.Errorf("checkpoint with an unpinned key: %v", err)
	}
	sys.Close() // its final checkpoint is refused too
	if _, c := logCounts(t, db); c != checkpoints {
		t.Errorf("the unpinned key signed %d checkpoints", c-checkpoints)
	}
	out.Reset()
	if err := run(ctx, []string{"verify", "--quiet", "--key", oldPub}, envFunc(current), &out, io.Discard); err != nil {
		t.Fatalf("verify after the refusals: %v\n%s", err, out.String())
	}

	// A key named after another origin is refused.
	foreign := filepath.Join(t.TempDir(), "foreign.key")
	if err := keys.GenerateSigningKey(foreign, "elsewhere.example"); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"keys", "rotate-signing", "--new-key-file", foreign}, envFunc(current), io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "elsewhere.example") {
		t.Errorf("rotation to a key of another origin: %v", err)
	}

	// The audited rotation, run with the accepted key and given only the
	// new verifier key.
	out.Reset()
	if err := run(ctx, []string{"keys", "rotate-signing", "--new-key-file", newKey + ".pub", "--by", "alice"}, envFunc(current), &out, io.Discard); err != nil {
		t.Fatalf("rotate-signing: %v", err)
	}
	if !strings.Contains(out.String(), "in 1 tenant logs") || !strings.Contains(out.String(), "now accepts "+nextKey) {
		t.Errorf("rotate-signing output:\n%s", out.String())
	}
	// The change is in the tenant's log, covered by a checkpoint that the
	// old key signed: the old key alone verifies everything so far.
	var typ, data string
	if err := db.Pool.QueryRow(ctx, `SELECT type, data::text FROM events WHERE tenant = 'acme' AND stream = $1`, domain.TenantStream("acme")).Scan(&typ, &data); err != nil ||
		typ != "tenant.signing_key_added" || !strings.Contains(data, nextKey) || !strings.Contains(data, oldKey) {
		t.Fatalf("tenant stream after the rotation: %v %s %s", err, typ, data)
	}
	out.Reset()
	if err := run(ctx, []string{"verify", "--quiet", "--key", oldPub}, envFunc(current), &out, io.Discard); err != nil {
		t.Fatalf("verify with the old key after the rotation: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"keys", "pinned"}, envFunc(current), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), nextKey+"\trotation\t") || !strings.Contains(out.String(), "by alice") {
		t.Errorf("keys pinned after the rotation:\n%s", out.String())
	}
	// Again: nothing changes.
	out.Reset()
	if err := run(ctx, []string{"keys", "rotate-signing", "--new-key-file", newKey}, envFunc(current), &out, io.Discard); err != nil || !strings.Contains(out.String(), "already") {
		t.Errorf("a second rotation to the same key: %v\n%s", err, out.String())
	}

	// The new key now signs (the export checkpoints the grown log), and the
	// log verifies with both keys, not with the old one alone.
	if err := run(ctx, []string{"export", "--tenant", "acme", "-o", bundle}, envFunc(other), io.Discard, io.Discard); err != nil {
		t.Fatalf("export with the rotated-in key: %v", err)
	}
	out.Reset()
	if err := run(ctx, []string{"verify", "--quiet", "--key", oldPub + "," + newKey + ".pub"}, envFunc(current), &out, io.Discard); err != nil {
		t.Fatalf("verify with both keys: %v\n%s", err, out.String())
	}
	var ee exitError
	out.Reset()
	if err := run(ctx, []string{"verify", "--quiet", "--key", oldPub}, envFunc(current), &out, io.Discard); !errors.As(err, &ee) {
		t.Errorf("verify with the old key alone after the new one signed: %v", err)
	}
	// It names the pinned key it was not given, without trusting it.
	if !strings.Contains(out.String(), "the database also accepts "+nextKey) || strings.Contains(out.String(), "also accepts "+oldKey) {
		t.Errorf("verify output:\n%s", out.String())
	}
}

// TestPinAdoptsKeyOfOlderLog: a log whose checkpoints predate pinning pins
// the key that verifies every tenant's latest checkpoint, and no other.
func TestPinAdoptsKeyOfOlderLog(t *testing.T) {
	db := pgtest.New(t)
	dir := devKeys(t, t.TempDir())
	appendSome(t, db.URL, dir, 8)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `DELETE FROM checkpoint_signers`); err == nil {
		t.Fatal("checkpoint_signers accepts DELETE")
	}
	// The table as an upgrade finds it: empty, beside signed checkpoints.
	for _, s := range []string{`ALTER TABLE checkpoint_signers DISABLE TRIGGER checkpoint_signers_immutable`,
		`DELETE FROM checkpoint_signers`, `ALTER TABLE checkpoint_signers ENABLE TRIGGER checkpoint_signers_immutable`} {
		if _, err := db.Pool.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	stranger := filepath.Join(t.TempDir(), "stranger.key")
	if err := keys.GenerateSigningKey(stranger, "vigil.local"); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error"}
	withStranger := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error", "VIGIL_SIGNING_KEY_FILE": stranger})
	err := run(ctx, []string{"export", "--tenant", "acme", "-o", filepath.Join(t.TempDir(), "b.jsonl")}, withStranger, io.Discard, io.Discard)
	if !errors.Is(err, ledger.ErrSignerNotPinned) || !strings.Contains(err.Error(), "latest checkpoint of tenant acme") {
		t.Fatalf("a stranger's key on an unpinned log: %v", err)
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"keys", "pinned"}, envFunc(env), &out, io.Discard); err != nil || !strings.Contains(out.String(), "no key is pinned") {
		t.Fatalf("the stranger's key was pinned: %v\n%s", err, out.String())
	}
	if err := run(ctx, []string{"export", "--tenant", "acme", "-o", filepath.Join(t.TempDir(), "b.jsonl")}, envFunc(env), io.Discard, io.Discard); err != nil {
		t.Fatalf("export with the log's key: %v", err)
	}
	_, vkey, _ := keys.ReadSigningKey(filepath.Join(dir, "signing.key"))
	out.Reset()
	if err := run(ctx, []string{"keys", "pinned"}, envFunc(env), &out, io.Discard); err != nil || !strings.HasPrefix(out.String(), vkey+"\tadopted\t") {
		t.Fatalf("keys pinned after adoption: %v\n%s", err, out.String())
	}
}
