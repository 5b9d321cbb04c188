package ledger

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/vigilhq/vigil/domain"
)

// SystemTenant owns the deployment's own keys, such as the blind-index key.
// It is never a real tenant's id (those are generated).
const SystemTenant = "_system"

// BlindIndex returns HMAC-SHA256 of value under the deployment's
// blind-index key for purpose, so that a value (an e-mail address) can be
// looked up without being stored. The key is a data key like any other:
// wrapped by the master key, re-wrapped on rotation, created on first use.
func (s *Sealer) BlindIndex(ctx context.Context, purpose, value string) ([]byte, error) {
	var raw []byte
	// Twice: the key may leave the bounded cache between the two steps.
	for try := 0; try < 2 && raw == nil; try++ {
		keyID, _, err := s.keyForSubject(ctx, SystemTenant, domain.Subject("blind-index:"+purpose))
		if err != nil {
			return nil, fmt.Errorf("blind index %s: %w", purpose, err)
		}
		s.mu.Lock()
		if el, ok := s.byID[keyID]; ok {
			raw = el.Value.(*cachedKey).raw
		}
		s.mu.Unlock()
	}
	if raw == nil {
		return nil, fmt.Errorf("blind index %s: key unavailable", purpose)
	}
	m := hmac.New(sha256.New, raw)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return m.Sum(nil), nil
}

// SealSecret encrypts plain under subject's data key in tenant, bound to
// purpose: the TOTP secret of a technician, say. Destroying the subject's
// key destroys the secret with the rest. The result holds the key id, the
// nonce and the ciphertext.
func (s *Sealer) SealSecret(ctx context.Context, tenant string, subject domain.Subject, purpose string, plain []byte) ([]byte, error) {
	keyID, aead, err := s.keyForSubject(ctx, tenant, subject)
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", purpose, err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	b := []byte("vigil/secret/v1\n")
	b = appendBytes(b, []byte(keyID))
	b = appendBytes(b, nonce)
	return append(b, aead.Seal(nil, nonce, plain, secretAAD(tenant, subject, purpose, keyID))...), nil
}

// OpenSecret decrypts what SealSecret returned. It returns an error
// matching domain.ErrSubjectErased when the subject's key was destroyed.
func (s *Sealer) OpenSecret(ctx context.Context, tenant string, subject domain.Subject, purpose string, sealed []byte) ([]byte, error) {
	d := decoder{b: sealed}
	if !d.prefix("vigil/secret/v1\n") {
		return nil, fmt.Errorf("open %s: %w", purpose, ErrMalformed)
	}
	keyID := string(d.bytes())
	nonce := d.bytes()
	if d.err != nil {
		return nil, fmt.Errorf("open %s: %w", purpose, ErrMalformed)
	}
	aead, err := s.keyByID(ctx, keyID)
	if errors.Is(err, domain.ErrNotFound) {
		err = domain.ErrSubjectErased
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", purpose, err)
	}
	if len(nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("open %s: %w", purpose, ErrMalformed)
	}
	plain, err := aead.Open(nil, nonce, d.b, secretAAD(tenant, subject, purpose, keyID))
	if err != nil {
		return nil, fmt.Errorf("open %s: does not authenticate", purpose)
	}
	return plain, nil
}

func secretAAD(tenant string, subject domain.Subject, purpose, keyID string) []byte {
	b := []byte("vigil/secret/v1\n")
	b = appendBytes(b, []byte(tenant))
	b = appendBytes(b, []byte(subject))
	b = appendBytes(b, []byte(purpose))
	return appendBytes(b, []byte(keyID))
}
