package ledger

import (
	"context"
	"crypto/rand"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/vigilhq/vigil/domain"
)

// memKeys is an in-memory KeyStore that counts its reads.
type memKeys struct {
	KeyStore // unused methods panic
	mu       sync.Mutex
	bySubj   map[string]WrappedKey
	byID     map[string]WrappedKey
	reads    int
}

func (m *memKeys) CreateSubjectKey(_ context.Context, w WrappedKey) (WrappedKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	k := w.Tenant + "\x00" + string(w.Subject)
	if old, ok := m.bySubj[k]; ok {
		return old, nil
	}
	m.bySubj[k], m.byID[w.KeyID] = w, w
	return w, nil
}

func (m *memKeys) SubjectKeyByID(_ context.Context, id string) (WrappedKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads++
	w, ok := m.byID[id]
	if !ok {
		return WrappedKey{}, domain.ErrNotFound
	}
	return w, nil
}

func newTestSealer(t testing.TB) (*Sealer, *memKeys) {
	raw := make([]byte, MasterKeySize)
	_, _ = rand.Read(raw)
	mk, err := NewMasterKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	keys := &memKeys{bySubj: map[string]WrappedKey{}, byID: map[string]WrappedKey{}}
	return NewSealer(keys, NewKeyring(mk), 0), keys
}

// TestKeyCacheIsBounded: the sealer keeps at most its cache size of keys,
// drops the least recently used first, and a dropped key still works (one
// key-store read).
func TestKeyCacheIsBounded(t *testing.T) {
	ctx := context.Background()
	s, keys := newTestSealer(t)
	s.max = 3
	ids := make([]string, 5)
	for i := range ids {
		id, _, err := s.keyForSubject(ctx, "acme", domain.Subject(fmt.Sprintf("session:%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
		if i == 2 {
			// Use key 0 again: key 1 is now the least recently used.
			if _, err := s.keyByID(ctx, ids[0]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := s.lru.Len(); n != 3 || len(s.byID) != 3 || len(s.subject) != 3 {
		t.Fatalf("cache holds %d keys (%d by id, %d by subject), want 3", n, len(s.byID), len(s.subject))
	}
	for i, want := range []bool{true, false, false, true, true} {
		if _, ok := s.byID[ids[i]]; ok != want {
			t.Errorf("key %d cached: %v, want %v", i, ok, want)
		}
	}
	before := keys.reads
	if _, err := s.keyByID(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	if keys.reads != before+1 {
		t.Errorf("an evicted key cost %d key-store reads, want 1", keys.reads-before)
	}
	if _, err := s.keyByID(ctx, ids[1]); err != nil || keys.reads != before+1 {
		t.Errorf("a cached key read the key store (err %v)", err)
	}
	s.Invalidate(ids[1])
	if _, ok := s.byID[ids[1]]; ok || s.lru.Len() != 2 {
		t.Errorf("Invalidate left the key (cache holds %d)", s.lru.Len())
	}
}

// TestKeyCacheMemory reports the memory of a full default-size cache, the
// figure docs/performance.md states; it asserts only that the cache stops
// at its size.
func TestKeyCacheMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates the whole cache")
	}
	ctx := context.Background()
	s, _ := newTestSealer(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < DefaultKeyCacheSize+100; i++ {
		if _, _, err := s.keyForSubject(ctx, "acme", domain.Subject(fmt.Sprintf("session:%032x", i))); err != nil {
			t.Fatal(err)
		}
	}
	s.keys = nil // the in-memory store's copies are not the cache's
	runtime.GC()
	runtime.ReadMemStats(&after)
	if s.lru.Len() != DefaultKeyCacheSize {
		t.Fatalf("cache holds %d keys, want %d", s.lru.Len(), DefaultKeyCacheSize)
	}
	t.Logf("%d cached keys: heap %+d bytes, %.0f bytes per key",
		DefaultKeyCacheSize, int64(after.HeapAlloc)-int64(before.HeapAlloc), float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/DefaultKeyCacheSize)
	runtime.KeepAlive(s)
}
