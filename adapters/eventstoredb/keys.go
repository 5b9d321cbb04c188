package eventstoredb

import (
	"context"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

// Subject keys are not kept in KurrentDB, whose events cannot be destroyed:
// crypto-shredding must be able to destroy a key. The store hands them to
// Options.Keys (the PostgreSQL store in production).

// SubjectKey implements ledger.KeyStore through Options.Keys.
func (s *Store) SubjectKey(ctx context.Context, tenant string, subject domain.Subject) (ledger.WrappedKey, error) {
	return s.opts.Keys.SubjectKey(ctx, tenant, subject)
}

// SubjectKeyByID implements ledger.KeyStore through Options.Keys.
func (s *Store) SubjectKeyByID(ctx context.Context, keyID string) (ledger.WrappedKey, error) {
	return s.opts.Keys.SubjectKeyByID(ctx, keyID)
}

// CreateSubjectKey implements ledger.KeyStore through Options.Keys.
func (s *Store) CreateSubjectKey(ctx context.Context, k ledger.WrappedKey) (ledger.WrappedKey, error) {
	return s.opts.Keys.CreateSubjectKey(ctx, k)
}

// DestroySubjectKey implements ledger.KeyStore through Options.Keys.
func (s *Store) DestroySubjectKey(ctx context.Context, tenant string, subject domain.Subject) (string, error) {
	return s.opts.Keys.DestroySubjectKey(ctx, tenant, subject)
}

// RewrapSubjectKeys implements ledger.KeyStore through Options.Keys.
func (s *Store) RewrapSubjectKeys(ctx context.Context, fn func(ledger.WrappedKey) (ledger.WrappedKey, error)) (int, error) {
	return s.opts.Keys.RewrapSubjectKeys(ctx, fn)
}
