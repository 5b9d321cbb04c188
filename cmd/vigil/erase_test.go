package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
