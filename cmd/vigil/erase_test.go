package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/adapters/keys"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"golang.org/x/mod/sumdb/note"
)

func TestEraseVerifyReceipt(t *testing.T) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, "vigil.test")
	signer, _ := note.NewSigner(skey)
	msg, err := compliance.SignErasureReceipt(signer, compliance.ErasureReceipt{
		Tenant: "t1", Subject: "session:abc", Scope: "all", Request: "r1", ErasedAt: time.Now(),
		Keys:   []compliance.ErasedKey{{Subject: domain.SessionSubject("abc"), KeyID: "k1"}},
		Events: []compliance.ErasedEvent{{ID: "e1", Position: 7, Seq: 3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	_ = os.WriteFile(good, msg, 0o600)
	_ = os.WriteFile(bad, bytes.Replace(msg, []byte("session:abc"), []byte("session:abd"), 1), 0o600)
	env := func(string) string { return "" }
	var out bytes.Buffer
	if err := run(context.Background(), []string{"erase", "--verify-receipt", good, "--key", vkey}, env, &out, &out); err != nil || !strings.Contains(out.String(), "OK: session:abc") {
		t.Fatalf("good receipt: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"erase", "--verify-receipt", bad, "--key", vkey}, env, &out, &out); err == nil || !strings.Contains(out.String(), "FAILED") {
		t.Fatalf("altered receipt: %v\n%s", err, out.String())
	}
}

// The receipt alone goes to standard output (or -o), so that
// `vigil erase … > r.json` keeps a receipt that verifies.
func TestEraseWritesOnlyTheReceipt(t *testing.T) {
	db := pgtest.New(t)
	dir := t.TempDir()
	appendSome(t, db.URL, dir, 4)
	env := envFunc(map[string]string{"VIGIL_DATABASE_URL": db.URL, "VIGIL_DATA_DIR": dir, "VIGIL_LOG_LEVEL": "error"})
	_, vkey, err := keys.ReadSigningKey(filepath.Join(dir, "signing.key"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tmp := t.TempDir()

	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"erase", "--tenant", "acme", "--subject", "session:" + fmt.Sprintf("%032x", 1)}, env, &stdout, &stderr); err != nil {
		t.Fatalf("erase: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "erasure ") {
		t.Errorf("no status line on stderr:\n%s", stderr.String())
	}
	receipt := filepath.Join(tmp, "r.json")
	if err := os.WriteFile(receipt, stdout.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"erase", "--verify-receipt", receipt, "--key", vkey}, env, &out, &out); err != nil {
		t.Fatalf("verify the redirected stdout: %v\n%s\nstdout was:\n%s", err, out.String(), stdout.String())
	}

	stdout.Reset()
	file := filepath.Join(tmp, "r2")
	if err := run(ctx, []string{"erase", "--tenant", "acme", "--subject", "session:" + fmt.Sprintf("%032x", 2), "-o", file}, env, &stdout, io.Discard); err != nil {
		t.Fatalf("erase -o: %v", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("erase -o wrote to stdout: %q", stdout.String())
	}
	out.Reset()
	if err := run(ctx, []string{"erase", "--verify-receipt", file, "--key", vkey}, env, &out, &out); err != nil {
		t.Fatalf("verify the -o file: %v\n%s", err, out.String())
	}
}
