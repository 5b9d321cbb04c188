package ledger

import (
	"container/list"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vigilhq/vigil/domain"
)

// MasterKeySize is the size of a master key and of a subject data key:
// AES-256.
const MasterKeySize = 32

// MasterKey wraps subject data keys. Its ID is derived from the key and names
// it in stored rows without revealing it.
type MasterKey struct {
	ID   string
	aead cipher.AEAD
}

// NewMasterKey returns the master key for 32 raw bytes. It returns an error
// for any other length.
func NewMasterKey(raw []byte) (MasterKey, error) {
	if len(raw) != MasterKeySize {
		return MasterKey{}, fmt.Errorf("master key: %d bytes, want %d", len(raw), MasterKeySize)
	}
	aead, err := newGCM(raw)
	if err != nil {
		return MasterKey{}, err
	}
	sum := sha256.Sum256(append([]byte("vigil/master-key-id/v1\n"), raw...))
	return MasterKey{ID: hex.EncodeToString(sum[:8]), aead: aead}, nil
}

// Keyring holds the current master key, used to wrap new subject keys, and
// any older ones still needed to unwrap keys not yet re-wrapped. It is
// immutable after construction and safe for concurrent use.
type Keyring struct {
	current MasterKey
	byID    map[string]MasterKey
}

// NewKeyring returns a keyring whose current key is current, able to unwrap
// with current and older.
func NewKeyring(current MasterKey, older ...MasterKey) *Keyring {
	k := &Keyring{current: current, byID: map[string]MasterKey{current.ID: current}}
	for _, o := range older {
		if _, ok := k.byID[o.ID]; !ok {
			k.byID[o.ID] = o
		}
	}
	return k
}

// Current returns the key new subject keys are wrapped with.
func (k *Keyring) Current() MasterKey { return k.current }

// WrappedKey is a subject's data key as stored: wrapped by a master key.
// Wrapped is nil once the key was destroyed.
type WrappedKey struct {
	KeyID       string
	Tenant      string
	Subject     domain.Subject
	MasterKeyID string
	Wrapped     []byte
	CreatedAt   time.Time
	DestroyedAt time.Time
}

// Destroyed reports whether the key was shredded.
func (w WrappedKey) Destroyed() bool { return w.Wrapped == nil }

// KeyStore stores wrapped subject keys. Implementations are safe for
// concurrent use.
type KeyStore interface {
	// SubjectKey returns the key of subject in tenant, domain.ErrNotFound
	// when it has none. A destroyed key is returned with Wrapped nil.
	SubjectKey(ctx context.Context, tenant string, subject domain.Subject) (WrappedKey, error)
	// SubjectKeyByID returns the key with id keyID, domain.ErrNotFound when
	// there is none.
	SubjectKeyByID(ctx context.Context, keyID string) (WrappedKey, error)
	// CreateSubjectKey stores k unless the subject already has a key, and
	// returns the key that is stored for the subject afterwards.
	CreateSubjectKey(ctx context.Context, k WrappedKey) (WrappedKey, error)
	// DestroySubjectKey erases the wrapped key of subject and returns the id
	// of the destroyed key; domain.ErrNotFound when the subject has none.
	// Destroying a destroyed key is a no-op that returns its id.
	DestroySubjectKey(ctx context.Context, tenant string, subject domain.Subject) (string, error)
	// RewrapSubjectKeys calls fn for every live key and stores what it
	// returns, all in one transaction, and returns how many keys changed.
	RewrapSubjectKeys(ctx context.Context, fn func(WrappedKey) (WrappedKey, error)) (int, error)
}

// Sealer encrypts personal fields under their subject's data key and opens
// them again. It caches unwrapped keys so that appending does not unwrap per
// event; cached entries live for CacheTTL and are dropped at once by
// Invalidate (which a store's change notifications call). The cache holds
// at most DefaultKeyCacheSize keys, the least recently used dropped first,
// so that a long-running server's memory does not grow with every session
// it ever served. It is safe for concurrent use.
type Sealer struct {
	keys    KeyStore
	ring    *Keyring
	ttl     time.Duration
	now     func() time.Time
	mu      sync.Mutex
	max     int                      // most keys cached
	byID    map[string]*list.Element // of *cachedKey
	lru     *list.List               // most recently used first
	subject map[subjectRef]string    // subject -> key id, for the keys cached
}

type subjectRef struct {
	tenant  string
	subject domain.Subject
}

type cachedKey struct {
	id        string
	aead      cipher.AEAD // nil when destroyed
	raw       []byte      // the data key, for HMAC uses; nil when destroyed
	subject   domain.Subject
	tenant    string
	expiresAt time.Time
}

// DefaultKeyCacheTTL bounds how long a process may keep using a subject key
// that another process destroyed when the change notification was lost.
const DefaultKeyCacheTTL = time.Minute

// DefaultKeyCacheSize bounds the subject keys a Sealer keeps unwrapped: one
// per technician and per session in use (each about 1.2 KB with its
// AES-GCM state, so about 24 MB in all: TestKeyCacheMemory). Past it the
// least recently used key is dropped and costs one key-store read when
// needed again.
const DefaultKeyCacheSize = 20000

// NewSealer returns a sealer over keys, wrapping with ring's current master
// key. A ttl of 0 means DefaultKeyCacheTTL.
func NewSealer(keys KeyStore, ring *Keyring, ttl time.Duration) *Sealer {
	if ttl <= 0 {
		ttl = DefaultKeyCacheTTL
	}
	return &Sealer{
		keys: keys, ring: ring, ttl: ttl, now: time.Now, max: DefaultKeyCacheSize,
		byID: map[string]*list.Element{}, lru: list.New(), subject: map[subjectRef]string{},
	}
}

// Invalidate drops the cached key keyID, if any.
func (s *Sealer) Invalidate(keyID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.byID[keyID]; ok {
		s.drop(el)
	}
}

// InvalidateAll empties the cache.
func (s *Sealer) InvalidateAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID = map[string]*list.Element{}
	s.lru.Init()
	s.subject = map[subjectRef]string{}
}

// cached returns the live cached key keyID and marks it used; s.mu is held.
func (s *Sealer) cached(keyID string, now time.Time) (*cachedKey, bool) {
	el, ok := s.byID[keyID]
	if !ok {
		return nil, false
	}
	c := el.Value.(*cachedKey)
	if !now.Before(c.expiresAt) {
		return nil, false
	}
	s.lru.MoveToFront(el)
	return c, true
}

// drop removes a cached key; s.mu is held.
func (s *Sealer) drop(el *list.Element) {
	c := s.lru.Remove(el).(*cachedKey)
	delete(s.byID, c.id)
	ref := subjectRef{c.tenant, c.subject}
	if s.subject[ref] == c.id {
		delete(s.subject, ref)
	}
}

// Seal encrypts e.Personal into e.Sealed, creating the subject's key on
// first use, and clears e.Personal. It needs e.ID and e.Tenant. It returns
// an error wrapping domain.ErrSubjectErased when a field's subject key was
// destroyed: nothing new may be written about an erased subject.
func (s *Sealer) Seal(ctx context.Context, e *domain.Event) error {
	if len(e.Personal) == 0 {
		return nil
	}
	sealed := make([]domain.SealedField, 0, len(e.Personal))
	for _, p := range e.Personal {
		if p.Erased {
			return domain.Errorf(domain.CodeInvalid, "field %s of %s is erased and cannot be sealed", p.Name, e.Type)
		}
		keyID, aead, err := s.keyForSubject(ctx, e.Tenant, p.Subject)
		if err != nil {
			return fmt.Errorf("seal %s.%s: %w", e.Type, p.Name, err)
		}
		nonce := make([]byte, aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("seal: nonce: %w", err)
		}
		aad := fieldAAD(e, p.Name, p.Subject, keyID)
		sealed = append(sealed, domain.SealedField{
			Name: p.Name, Subject: p.Subject, KeyID: keyID, Nonce: nonce,
			Ciphertext: aead.Seal(nil, nonce, p.Value, aad),
		})
	}
	e.Sealed = sealed
	e.Personal = nil
	return nil
}

// Open decrypts e.Sealed into e.Personal. Fields whose subject key was
// destroyed come back with Erased set and no value. It returns an error when
// a ciphertext does not authenticate, which means the stored event was
// altered.
func (s *Sealer) Open(ctx context.Context, e *domain.Event) error {
	if len(e.Sealed) == 0 {
		e.Personal = nil
		return nil
	}
	out := make([]domain.PersonalField, 0, len(e.Sealed))
	for _, f := range e.Sealed {
		aead, err := s.keyByID(ctx, f.KeyID)
		if errors.Is(err, domain.ErrSubjectErased) || errors.Is(err, domain.ErrNotFound) {
			// A key that is gone, or was never stored because its creation
			// was rolled back with a shredding, reads as erased.
			out = append(out, domain.PersonalField{Name: f.Name, Subject: f.Subject, Erased: true})
			continue
		}
		if err != nil {
			return fmt.Errorf("open %s.%s: %w", e.Type, f.Name, err)
		}
		plain, err := aead.Open(nil, f.Nonce, f.Ciphertext, fieldAAD(e, f.Name, f.Subject, f.KeyID))
		if err != nil {
			return fmt.Errorf("open %s.%s of event %s: ciphertext does not authenticate", e.Type, f.Name, e.ID)
		}
		out = append(out, domain.PersonalField{Name: f.Name, Subject: f.Subject, Value: plain})
	}
	e.Personal = out
	return nil
}

// Shred destroys the data key of subject in tenant. Afterwards every sealed
// field of the subject reads as erased, while the Merkle log, which covers
// the ciphertext, still verifies. It returns the destroyed key's id, or
// domain.ErrNotFound when the subject never had a key.
func (s *Sealer) Shred(ctx context.Context, tenant string, subject domain.Subject) (string, error) {
	id, err := s.keys.DestroySubjectKey(ctx, tenant, subject)
	if err != nil {
		return "", fmt.Errorf("shred %s: %w", subject, err)
	}
	s.Invalidate(id)
	return id, nil
}

// Rotate re-wraps every live subject key under newRing's current master key,
// unwrapping with this sealer's keyring, and returns how many keys were
// re-wrapped. Events are not touched. The caller switches to newRing after
// it returns.
func Rotate(ctx context.Context, keys KeyStore, old, newRing *Keyring) (int, error) {
	next := newRing.Current()
	return keys.RewrapSubjectKeys(ctx, func(w WrappedKey) (WrappedKey, error) {
		raw, err := old.unwrap(w)
		if err != nil {
			return WrappedKey{}, err
		}
		w.Wrapped = wrap(next, w, raw)
		w.MasterKeyID = next.ID
		return w, nil
	})
}

func (s *Sealer) keyForSubject(ctx context.Context, tenant string, subject domain.Subject) (string, cipher.AEAD, error) {
	now := s.now()
	s.mu.Lock()
	if id, ok := s.subject[subjectRef{tenant, subject}]; ok {
		if c, ok := s.cached(id, now); ok {
			s.mu.Unlock()
			if c.aead == nil {
				return "", nil, domain.ErrSubjectErased
			}
			return id, c.aead, nil
		}
	}
	s.mu.Unlock()

	// Get-or-create in one call: a new subject (a new session) costs one
	// round trip, an existing one the same.
	w, err := s.createKey(ctx, tenant, subject)
	if err != nil {
		return "", nil, err
	}
	aead, err := s.remember(w)
	if err != nil {
		return "", nil, err
	}
	if aead == nil {
		return "", nil, domain.ErrSubjectErased
	}
	return w.KeyID, aead, nil
}

func (s *Sealer) keyByID(ctx context.Context, keyID string) (cipher.AEAD, error) {
	now := s.now()
	s.mu.Lock()
	if c, ok := s.cached(keyID, now); ok {
		s.mu.Unlock()
		if c.aead == nil {
			return nil, domain.ErrSubjectErased
		}
		return c.aead, nil
	}
	s.mu.Unlock()
	w, err := s.keys.SubjectKeyByID(ctx, keyID)
	if err != nil {
		return nil, err
	}
	aead, err := s.remember(w)
	if err != nil {
		return nil, err
	}
	if aead == nil {
		return nil, domain.ErrSubjectErased
	}
	return aead, nil
}

func (s *Sealer) createKey(ctx context.Context, tenant string, subject domain.Subject) (WrappedKey, error) {
	raw := make([]byte, MasterKeySize)
	if _, err := rand.Read(raw); err != nil {
		return WrappedKey{}, fmt.Errorf("new subject key: %w", err)
	}
	idb := make([]byte, 16)
	if _, err := rand.Read(idb); err != nil {
		return WrappedKey{}, fmt.Errorf("new subject key id: %w", err)
	}
	mk := s.ring.Current()
	w := WrappedKey{KeyID: hex.EncodeToString(idb), Tenant: tenant, Subject: subject, MasterKeyID: mk.ID}
	w.Wrapped = wrap(mk, w, raw)
	return s.keys.CreateSubjectKey(ctx, w)
}

// remember unwraps w and caches it; it returns a nil AEAD for a destroyed key.
func (s *Sealer) remember(w WrappedKey) (cipher.AEAD, error) {
	var aead cipher.AEAD
	var raw []byte
	if !w.Destroyed() {
		var err error
		if raw, err = s.ring.unwrap(w); err != nil {
			return nil, err
		}
		if aead, err = newGCM(raw); err != nil {
			return nil, err
		}
	}
	c := &cachedKey{id: w.KeyID, aead: aead, raw: raw, subject: w.Subject, tenant: w.Tenant, expiresAt: s.now().Add(s.ttl)}
	s.mu.Lock()
	if el, ok := s.byID[w.KeyID]; ok {
		s.drop(el)
	}
	s.byID[w.KeyID] = s.lru.PushFront(c)
	s.subject[subjectRef{w.Tenant, w.Subject}] = w.KeyID
	for s.lru.Len() > s.max {
		s.drop(s.lru.Back())
	}
	s.mu.Unlock()
	return aead, nil
}

func (k *Keyring) unwrap(w WrappedKey) ([]byte, error) {
	mk, ok := k.byID[w.MasterKeyID]
	if !ok {
		return nil, fmt.Errorf("subject key %s is wrapped by master key %s, which is not configured", w.KeyID, w.MasterKeyID)
	}
	ns := mk.aead.NonceSize()
	if len(w.Wrapped) < ns {
		return nil, fmt.Errorf("subject key %s: wrapped key too short", w.KeyID)
	}
	raw, err := mk.aead.Open(nil, w.Wrapped[:ns], w.Wrapped[ns:], wrapAAD(w))
	if err != nil {
		return nil, fmt.Errorf("subject key %s does not unwrap under master key %s", w.KeyID, w.MasterKeyID)
	}
	return raw, nil
}

func wrap(mk MasterKey, w WrappedKey, raw []byte) []byte {
	nonce := make([]byte, mk.aead.NonceSize(), mk.aead.NonceSize()+len(raw)+mk.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("ledger: random source failed: %v", err))
	}
	return mk.aead.Seal(nonce, nonce, raw, wrapAAD(w))
}

func wrapAAD(w WrappedKey) []byte {
	b := []byte("vigil/wrap/v1\n")
	b = appendBytes(b, []byte(w.Tenant))
	b = appendBytes(b, []byte(w.Subject))
	b = appendBytes(b, []byte(w.KeyID))
	return b
}

// fieldAAD binds a sealed field to its event, tenant, name, subject and key,
// so that a ciphertext moved to another event or field fails to open.
func fieldAAD(e *domain.Event, name string, subject domain.Subject, keyID string) []byte {
	b := make([]byte, 0, 96+len(e.Tenant)+len(name)+len(subject)+len(keyID))
	b = append(b, "vigil/seal/v1\n"...)
	b = appendBytes(b, e.ID[:])
	b = appendBytes(b, []byte(e.Tenant))
	b = appendBytes(b, []byte(name))
	b = appendBytes(b, []byte(subject))
	b = appendBytes(b, []byte(keyID))
	return binary.BigEndian.AppendUint32(b, 1)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCM(block)
}
