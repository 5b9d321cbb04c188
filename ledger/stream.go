package ledger

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"

	"github.com/vigilhq/vigil/domain"
)

// SubjectAEAD returns the AES-256-GCM cipher of subject's data key in
// tenant, creating the key on first use, and the key's id, for callers that
// encrypt large data in chunks themselves (session recordings). The cipher
// is safe for concurrent use; callers must use a fresh nonce per seal and
// bind their own AAD. It returns an error wrapping domain.ErrSubjectErased
// when the subject's key was destroyed.
func (s *Sealer) SubjectAEAD(ctx context.Context, tenant string, subject domain.Subject) (string, cipher.AEAD, error) {
	id, aead, err := s.keyForSubject(ctx, tenant, subject)
	if err != nil {
		return "", nil, fmt.Errorf("subject key of %s: %w", subject, err)
	}
	return id, aead, nil
}

// AEADByID returns the cipher of the data key keyID, to open what was
// sealed with SubjectAEAD. A destroyed key, or one never stored, returns an
// error wrapping domain.ErrSubjectErased: whatever it sealed is gone.
func (s *Sealer) AEADByID(ctx context.Context, keyID string) (cipher.AEAD, error) {
	aead, err := s.keyByID(ctx, keyID)
	if errors.Is(err, domain.ErrNotFound) {
		err = domain.ErrSubjectErased
	}
	if err != nil {
		return nil, fmt.Errorf("data key %s: %w", keyID, err)
	}
	return aead, nil
}
