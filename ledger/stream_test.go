package ledger_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

func TestSubjectAEADOpensByIDUntilShredded(t *testing.T) {
	ctx := context.Background()
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	mk, _ := ledger.NewMasterKey(raw)
	s := ledger.NewSealer(&memKeys{keys: map[string]ledger.WrappedKey{}}, ledger.NewKeyring(mk), 0)
	subject := domain.SessionSubject("ab")
	id, aead, err := s.SubjectAEAD(ctx, "acme", subject)
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := s.SubjectAEAD(ctx, "acme", subject)
	if err != nil || again != id {
		t.Fatalf("second call: key %s, %v; want the same key %s", again, err, id)
	}
	other, _, err := s.SubjectAEAD(ctx, "acme", domain.SessionSubject("cd"))
	if err != nil || other == id {
		t.Fatalf("another subject got key %s (%v), want a key of its own", other, err)
	}
	nonce := make([]byte, aead.NonceSize())
	sealed := aead.Seal(nil, nonce, []byte("frame"), []byte("aad"))
	opener, err := s.AEADByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := opener.Open(nil, nonce, sealed, []byte("aad"))
	if err != nil || !bytes.Equal(plain, []byte("frame")) {
		t.Fatalf("open: %q, %v", plain, err)
	}
	if _, err := s.Shred(ctx, "acme", subject); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AEADByID(ctx, id); !errors.Is(err, domain.ErrSubjectErased) {
		t.Fatalf("AEADByID after shredding: %v, want ErrSubjectErased", err)
	}
	if _, _, err := s.SubjectAEAD(ctx, "acme", subject); !errors.Is(err, domain.ErrSubjectErased) {
		t.Fatalf("SubjectAEAD after shredding: %v, want ErrSubjectErased", err)
	}
	if _, err := s.AEADByID(ctx, "no-such-key"); !errors.Is(err, domain.ErrSubjectErased) {
		t.Fatalf("AEADByID of an unknown key: %v, want ErrSubjectErased", err)
	}
}
