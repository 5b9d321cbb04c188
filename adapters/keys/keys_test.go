package keys_test

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/adapters/keys"
	"golang.org/x/mod/sumdb/note"
)

func TestDevelopmentGeneratesOnceAndReloads(t *testing.T) {
	dir := t.TempDir()
	m1, err := keys.Load(keys.Config{DataDir: dir, Generate: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(m1.Generated) != 3 {
		t.Fatalf("generated %v, want master, signing and .pub", m1.Generated)
	}
	for _, f := range []string{"master.key", "signing.key"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	m2, err := keys.Load(keys.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(m2.Generated) != 0 {
		t.Errorf("second load generated %v", m2.Generated)
	}
	if m1.Ring.Current().ID != m2.Ring.Current().ID || m1.VerifierKey != m2.VerifierKey {
		t.Error("reloaded keys differ from the generated ones")
	}
	// The verifier key checks what the signer signs.
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, m2.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(m1.Verifier)); err != nil {
		t.Fatalf("verifier does not check the signer: %v", err)
	}
}

func TestProductionNeedsConfiguredKeys(t *testing.T) {
	dir := t.TempDir()
	if _, err := keys.Load(keys.Config{DataDir: dir, Production: true}); err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("production without a master key: %v", err)
	}
	mk, _ := keys.NewMasterKeyString()
	if _, err := keys.Load(keys.Config{DataDir: dir, Production: true, MasterKey: mk}); err == nil || !strings.Contains(err.Error(), "signing key") {
		t.Fatalf("production without a signing key: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("production wrote %d files", len(entries))
	}
	sk := filepath.Join(dir, "prod.key")
	if err := keys.GenerateSigningKey(sk, "vigil.example"); err != nil {
		t.Fatal(err)
	}
	m, err := keys.Load(keys.Config{Production: true, MasterKey: mk, SigningKeyFile: sk})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := os.ReadFile(sk + ".pub")
	if m.VerifierKey != strings.TrimSpace(string(pub)) {
		t.Errorf("derived verifier key %q, file holds %q", m.VerifierKey, pub)
	}
}

func TestVerifierKeyDerivation(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "vigil.test")
	if err != nil {
		t.Fatal(err)
	}
	got, err := keys.VerifierKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	if got != vkey {
		t.Errorf("derived %q, want %q", got, vkey)
	}
	for _, bad := range []string{"", "PRIVATE+KEY", vkey, "PRIVATE+KEY+n+00000000+AAAA"} {
		if _, err := keys.VerifierKey(bad); err == nil {
			t.Errorf("VerifierKey(%q) accepted", bad)
		}
	}
}

func TestParseMasterKey(t *testing.T) {
	good, _ := keys.NewMasterKeyString()
	if _, err := keys.ParseMasterKey("  " + good + "\n"); err != nil {
		t.Errorf("padded key with spaces: %v", err)
	}
	for _, bad := range []string{"", "not base64!", "AAAA", strings.Repeat("A", 64)} {
		if _, err := keys.ParseMasterKey(bad); err == nil {
			t.Errorf("ParseMasterKey(%q) accepted", bad)
		}
	}
}

func TestPendingRotationKeyIsLoaded(t *testing.T) {
	dir := t.TempDir()
	m1, err := keys.Load(keys.Config{DataDir: dir, Generate: true})
	if err != nil {
		t.Fatal(err)
	}
	// An interrupted rotation left master.key.new behind: both keys load,
	// the old one still current.
	if _, err := keys.GenerateMasterKeyFile(filepath.Join(dir, "master.key"+keys.PendingSuffix)); err != nil {
		t.Fatal(err)
	}
	m2, err := keys.Load(keys.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if m2.Ring.Current().ID != m1.Ring.Current().ID {
		t.Error("the pending key became current")
	}
}

// TestOnlyGenerateCreatesKeys: without Generate (every command but
// `vigil serve` in development), a missing key is an error naming the
// absolute folder looked in, and nothing is written there.
func TestOnlyGenerateCreatesKeys(t *testing.T) {
	t.Chdir(t.TempDir())
	_, err := keys.Load(keys.Config{DataDir: "./var"})
	if !errors.Is(err, keys.ErrNoKeys) {
		t.Fatalf("load of an empty folder: %v", err)
	}
	abs, _ := filepath.Abs("var")
	if !strings.Contains(err.Error(), abs) || !strings.Contains(err.Error(), "master key") || !strings.Contains(err.Error(), "VIGIL_DATA_DIR") {
		t.Errorf("the error does not name the folder %s and the fix: %v", abs, err)
	}
	if _, err := os.Stat("var"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the folder was created: %v", err)
	}

	// A master key alone: the signing key is not made up either.
	mk, _ := keys.NewMasterKeyString()
	_, err = keys.Load(keys.Config{DataDir: "./var", MasterKey: mk})
	if !errors.Is(err, keys.ErrNoKeys) || !strings.Contains(err.Error(), "signing key") || !strings.Contains(err.Error(), abs) {
		t.Fatalf("load without a signing key: %v", err)
	}
	if _, err := os.Stat("var"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the folder was created: %v", err)
	}

	// Generate makes them; a load without it then finds them.
	m1, err := keys.Load(keys.Config{DataDir: "./var", Generate: true})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := keys.Load(keys.Config{DataDir: abs})
	if err != nil {
		t.Fatal(err)
	}
	if m1.VerifierKey != m2.VerifierKey || len(m2.Generated) != 0 {
		t.Errorf("reload: key %s vs %s, generated %v", m1.VerifierKey, m2.VerifierKey, m2.Generated)
	}
}
