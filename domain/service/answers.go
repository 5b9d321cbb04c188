package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigilhq/vigil/domain"
)

// The answers to idempotent requests are kept for a day so that a repeat
// gets the same answer; some carry personal data (POST /v1/technicians
// answers the name and the e-mail address, a GDPR export the subject's
// data). So the store never sees them in clear: sealedAnswers seals each
// under the tenant's "idempotent-answers" data key (wrapped by the master
// key like every data key), bound to the credential and the key. Next to
// the ciphertext it keeps, in clear, the identifiers the answer names
// (values of "id", "*_id" and "subject" fields: technician ids, session
// GUIDs, never personal data), so that a GDPR erasure still finds and
// deletes the stored answers about its subject by id.
//
// An entry is stored as
//
//	vigil/answer/v1\n
//	refs <id> <id> …\n
//	<SealSecret output>

// answerMagic starts a sealed stored answer.
const answerMagic = "vigil/answer/v1\n"

// answerSubject is the data subject whose key seals a tenant's stored
// answers.
const answerSubject = domain.Subject("idempotent-answers")

func answerPurpose(k IdempotencyKey) string {
	return "idempotent-answer\n" + k.Principal + "\n" + k.Key
}

// sealedAnswers is an IdempotencyStore that seals the answers it passes to
// the store and opens those it reads back. Entries stored in clear before
// it existed are returned as they are.
type sealedAnswers struct {
	store  IdempotencyStore
	crypto Crypto
}

var _ IdempotencyStore = sealedAnswers{}

// Claim implements IdempotencyStore.
func (a sealedAnswers) Claim(ctx context.Context, k IdempotencyKey, requestHash []byte, now time.Time) (StoredResponse, bool, error) {
	r, claimed, err := a.store.Claim(ctx, k, requestHash, now)
	if err != nil || claimed || !bytes.HasPrefix(r.Body, []byte(answerMagic)) {
		return r, claimed, err
	}
	rest := r.Body[len(answerMagic):]
	nl := bytes.IndexByte(rest, '\n')
	if nl < 0 {
		return StoredResponse{}, false, fmt.Errorf("stored answer: malformed")
	}
	plain, err := a.crypto.OpenSecret(ctx, k.Tenant, answerSubject, answerPurpose(k), rest[nl+1:])
	if err != nil {
		return StoredResponse{}, false, fmt.Errorf("stored answer: %w", err)
	}
	r.Body = plain
	return r, false, nil
}

// Complete implements IdempotencyStore.
func (a sealedAnswers) Complete(ctx context.Context, k IdempotencyKey, status int, body []byte) error {
	if body == nil {
		return a.store.Complete(ctx, k, status, nil)
	}
	sealed, err := a.crypto.SealSecret(ctx, k.Tenant, answerSubject, answerPurpose(k), body)
	if err != nil {
		return fmt.Errorf("seal stored answer: %w", err)
	}
	env := make([]byte, 0, len(answerMagic)+len(sealed)+64)
	env = append(env, answerMagic...)
	env = append(env, "refs"...)
	for _, r := range answerRefs(body) {
		env = append(env, ' ')
		env = append(env, r...)
	}
	env = append(env, '\n')
	return a.store.Complete(ctx, k, status, append(env, sealed...))
}

// Release implements IdempotencyStore.
func (a sealedAnswers) Release(ctx context.Context, k IdempotencyKey) error {
	return a.store.Release(ctx, k)
}

// Purge implements IdempotencyStore.
func (a sealedAnswers) Purge(ctx context.Context, cutoff time.Time) (int, error) {
	return a.store.Purge(ctx, cutoff)
}

// answerRefs returns the identifiers a JSON answer names: the string values
// of its "id", "*_id" and "subject" fields, at any depth, that look like
// identifiers (letters, digits and ":_.-", at most 128 characters), sorted
// and without repeats.
func answerRefs(body []byte) []string {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return nil
	}
	var out []string
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(k, e)
			}
		case []any:
			for _, e := range x {
				walk(key, e)
			}
		case string:
			if (key == "id" || key == "subject" || strings.HasSuffix(key, "_id")) && isRef(x) {
				out = append(out, x)
			}
		}
	}
	walk("", v)
	slices.Sort(out)
	return slices.Compact(out)
}

func isRef(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == ':', r == '_', r == '.', r == '-':
		default:
			return false
		}
	}
	return true
}
