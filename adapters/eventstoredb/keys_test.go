package eventstoredb

import (
	"context"
	"sync"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

// MemKeys is an in-memory ledger.KeyStore with the semantics of the
// PostgreSQL one (adapters/postgres/keys.go), for tests that have no
// database. Safe for concurrent use.
type MemKeys struct {
	mu   sync.Mutex
	byID map[string]*ledger.WrappedKey
}

// NewMemKeys returns an empty MemKeys.
func NewMemKeys() *MemKeys { return &MemKeys{byID: map[string]*ledger.WrappedKey{}} }

func (m *MemKeys) find(tenant string, subject domain.Subject) *ledger.WrappedKey {
	for _, k := range m.byID {
		if k.Tenant == tenant && k.Subject == subject {
			return k
		}
	}
	return nil
}

func copyKey(k *ledger.WrappedKey) ledger.WrappedKey {
	c := *k
	c.Wrapped = append([]byte(nil), k.Wrapped...)
	if k.Wrapped == nil {
		c.Wrapped = nil
	}
	return c
}

// SubjectKey implements ledger.KeyStore.
func (m *MemKeys) SubjectKey(_ context.Context, tenant string, subject domain.Subject) (ledger.WrappedKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k := m.find(tenant, subject); k != nil {
		return copyKey(k), nil
	}
	return ledger.WrappedKey{}, domain.ErrNotFound
}

// SubjectKeyByID implements ledger.KeyStore.
func (m *MemKeys) SubjectKeyByID(_ context.Context, keyID string) (ledger.WrappedKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, ok := m.byID[keyID]; ok {
		return copyKey(k), nil
	}
	return ledger.WrappedKey{}, domain.ErrNotFound
}

// CreateSubjectKey implements ledger.KeyStore.
func (m *MemKeys) CreateSubjectKey(_ context.Context, k ledger.WrappedKey) (ledger.WrappedKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.find(k.Tenant, k.Subject); old != nil {
		return copyKey(old), nil
	}
	if _, ok := m.byID[k.KeyID]; ok {
		return ledger.WrappedKey{}, domain.ErrConflict
	}
	k.CreatedAt = time.Now().UTC()
	k.DestroyedAt = time.Time{}
	m.byID[k.KeyID] = &k
	return copyKey(&k), nil
}

// DestroySubjectKey implements ledger.KeyStore.
func (m *MemKeys) DestroySubjectKey(_ context.Context, tenant string, subject domain.Subject) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := m.find(tenant, subject)
	if k == nil {
		return "", domain.ErrNotFound
	}
	if k.Wrapped != nil {
		k.Wrapped = nil
		k.DestroyedAt = time.Now().UTC()
	}
	return k.KeyID, nil
}

// RewrapSubjectKeys implements ledger.KeyStore, all or nothing.
func (m *MemKeys) RewrapSubjectKeys(_ context.Context, fn func(ledger.WrappedKey) (ledger.WrappedKey, error)) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := map[string]ledger.WrappedKey{}
	for id, k := range m.byID {
		if k.Wrapped == nil {
			continue
		}
		w, err := fn(copyKey(k))
		if err != nil {
			return 0, err
		}
		next[id] = w
	}
	for id, w := range next {
		k := m.byID[id]
		k.Wrapped, k.MasterKeyID = w.Wrapped, w.MasterKeyID
	}
	return len(next), nil
}
