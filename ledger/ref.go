package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
)

// refPrefix starts a sealed reference.
const refPrefix = "vigil/ref/v1\n"

// EncodeSealedRef returns a sealed reference: one sealed field of event id,
// with everything needed to open it later (the field carries its subject,
// key id, nonce and ciphertext; the event id is in its additional data).
// Reporting tables keep personal values as such references, so that they
// are opened at read time and read as erased as soon as the subject's key
// is destroyed.
func EncodeSealedRef(id uuid.UUID, f domain.SealedField) []byte {
	b := appendBytes([]byte(refPrefix), id[:])
	return append(b, EncodeSealed([]domain.SealedField{f})...)
}

// DecodeSealedRef parses a sealed reference.
func DecodeSealedRef(ref []byte) (uuid.UUID, domain.SealedField, error) {
	d := decoder{b: ref}
	if !d.prefix(refPrefix) {
		return uuid.Nil, domain.SealedField{}, fmt.Errorf("sealed reference: %w", ErrMalformed)
	}
	id := d.bytes()
	if d.err != nil || len(id) != 16 {
		return uuid.Nil, domain.SealedField{}, fmt.Errorf("sealed reference: %w", ErrMalformed)
	}
	fields, err := DecodeSealed(d.b)
	if err != nil || len(fields) != 1 {
		return uuid.Nil, domain.SealedField{}, fmt.Errorf("sealed reference: %w", ErrMalformed)
	}
	return uuid.UUID(id), fields[0], nil
}

// OpenRef opens a sealed reference of tenant. It returns the field's JSON
// value, or erased true (and no value) when the subject's key was
// destroyed; an error when the reference is malformed or does not
// authenticate.
func (s *Sealer) OpenRef(ctx context.Context, tenant string, ref []byte) (json.RawMessage, bool, error) {
	id, f, err := DecodeSealedRef(ref)
	if err != nil {
		return nil, false, err
	}
	e := domain.Event{ID: id, Tenant: tenant, Sealed: []domain.SealedField{f}}
	if err := s.Open(ctx, &e); err != nil {
		return nil, false, err
	}
	p := e.Personal[0]
	if p.Erased {
		return nil, true, nil
	}
	return p.Value, false, nil
}

// OpenRefString is OpenRef for string fields: the value, or "[erased]".
func (s *Sealer) OpenRefString(ctx context.Context, tenant string, ref []byte) (string, error) {
	if len(ref) == 0 {
		return "", nil
	}
	v, erased, err := s.OpenRef(ctx, tenant, ref)
	if err != nil {
		return "", err
	}
	if erased {
		return ErasedText, nil
	}
	var str string
	if err := json.Unmarshal(v, &str); err != nil {
		return "", errors.New("sealed reference does not hold a string")
	}
	return str, nil
}

// ErasedText is what a personal value of an erased subject reads as.
const ErasedText = "[erased]"
