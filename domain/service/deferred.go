package service

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/vigilhq/vigil/domain"
)

// Deferred authentication (issue 15). A session command used to cost a
// round trip of its own for its credential (the API key or token row)
// before the one that reads the session's, technician's and group's new
// events. Now, for a credential this process has authenticated before,
// AuthenticateDeferred answers from memory and leaves the credential's row
// to be read by SessionCommand in the same round trip as that prefetch read
// (CredentialProbe), before anything is decided. Coherence across nodes is
// unchanged: the row is still read from the database within the request,
// so a key revoked, a token ended or a technician disabled on another node
// is refused on the very next request. Only what cannot change is taken
// from memory to start with: which tenant, technician and role a
// credential id belongs to, and its secret's hash.

// CredentialProbe is the read of one credential's row that a store may run
// in the same round trip as a session command's prefetch read (see
// ProbeFrom). A store that does not know probes leaves Done false and the
// service reads the row itself.
type CredentialProbe struct {
	// APIKey is set for an API key; otherwise the credential is a
	// technician's token.
	APIKey bool
	ID     string

	// Set by the store that ran the probe. Err is domain.ErrNotFound for
	// an id with no row.
	Done  bool
	Token Token
	Key   APIKey
	Err   error
}

type probeKey struct{}

// ProbeFrom returns the credential probe to run with the read made under
// ctx, or nil.
func ProbeFrom(ctx context.Context) *CredentialProbe {
	p, _ := ctx.Value(probeKey{}).(*CredentialProbe)
	if p == nil || p.Done {
		return nil
	}
	return p
}

// deferredAuth is a credential authenticated from memory, to be confirmed
// against its row before the request decides anything.
type deferredAuth struct {
	principal Principal
	secret    string
	probe     CredentialProbe
	confirmed bool
}

type deferredKey struct{}

// AuthenticateDeferred is Authenticate for a request that does nothing but
// one SessionCommand (the HTTP API's session command route): for a
// credential this process authenticated before, it reads nothing and
// returns a context that makes SessionCommand confirm the credential
// against its row in the round trip of its first read. Otherwise, and for
// every other use of the principal, it is Authenticate. The caller must
// pass the returned context to SessionCommand.
func (s *Service) AuthenticateDeferred(ctx context.Context, bearer string) (context.Context, Principal, error) {
	prefix, id, secret, ok := parseCredential(bearer)
	if !ok || s.creds == nil {
		p, err := s.Authenticate(ctx, bearer)
		return ctx, p, err
	}
	c, hit := s.creds.get(prefix, id)
	if !hit || !secretMatches(c.hash(), secret) || !c.usable(s.Now()) {
		p, err := s.Authenticate(ctx, bearer)
		return ctx, p, err
	}
	if err := s.checkRegion(ctx, c.tenant()); err != nil {
		return ctx, Principal{}, err
	}
	d := &deferredAuth{principal: c.principal(), secret: secret, probe: CredentialProbe{APIKey: c.isKey, ID: id}}
	return context.WithValue(ctx, deferredKey{}, d), d.principal, nil
}

// ConfirmDeferred confirms the credential of a context returned by
// AuthenticateDeferred against its row now, for a request that answers
// without calling SessionCommand (a replayed idempotent answer). It returns
// nil for a context with nothing to confirm.
func (s *Service) ConfirmDeferred(ctx context.Context) error {
	d, _ := ctx.Value(deferredKey{}).(*deferredAuth)
	return s.confirmDeferred(ctx, d)
}

// confirmDeferred checks a credential that AuthenticateDeferred took from
// memory against its row: the row read by the store with ctx's prefetch,
// or read now. It returns an error of code unauthenticated when the
// credential no longer holds, and nil when ctx carries nothing to confirm.
func (s *Service) confirmDeferred(ctx context.Context, d *deferredAuth) error {
	if d == nil || d.confirmed {
		return nil
	}
	pr := &d.probe
	if !pr.Done {
		if pr.APIKey {
			pr.Key, pr.Err = s.ids.APIKey(ctx, pr.ID)
		} else {
			pr.Token, pr.Err = s.ids.Token(ctx, pr.ID)
		}
		pr.Done = true
	}
	if errors.Is(pr.Err, domain.ErrNotFound) {
		return errUnauthenticated("unknown credential")
	}
	if pr.Err != nil {
		return pr.Err
	}
	var (
		p   Principal
		err error
	)
	if pr.APIKey {
		p, err = s.checkAPIKey(ctx, pr.Key, d.secret)
	} else {
		p, err = s.checkToken(ctx, pr.Token, d.secret)
	}
	if err != nil {
		return err
	}
	if p != d.principal {
		// Only the scope of a token can change, and only to full, which a
		// deferred principal has already: refuse rather than decide on a
		// principal that is not the credential's.
		return errUnauthenticated("the credential changed during the request; send it again")
	}
	d.confirmed = true
	return nil
}

// credCacheMax bounds the credentials kept: at about 400 bytes each with
// the map's own, 20 MB at most.
const credCacheMax = 50000

// credCache keeps the credentials this process authenticated, by prefix
// and id, so that AuthenticateDeferred can name the principal before the
// credential's row is read. Bounded: the least recently used tenth goes
// when it is full. Each entry holds ids, a role, a scope, times and a
// SHA-256 hash of the secret (never the secret): about 300 bytes.
type credCache struct {
	mu      sync.Mutex
	entries map[string]*cachedCred
	max     int
	tick    uint64
}

type cachedCred struct {
	isKey bool
	key   APIKey
	token Token
	used  uint64
}

func (c *cachedCred) hash() []byte {
	if c.isKey {
		return c.key.Hash
	}
	return c.token.Hash
}

func (c *cachedCred) tenant() string {
	if c.isKey {
		return c.key.Tenant
	}
	return c.token.Tenant
}

// usable reports whether the cached row, as last read, let the credential
// in: only those are deferred (anything else gets Authenticate's error).
// A token is deferred only with the full scope, the only scope a token can
// change to.
func (c *cachedCred) usable(now time.Time) bool {
	if c.isKey {
		return c.key.RevokedAt.IsZero()
	}
	t := c.token
	return t.EndedAt.IsZero() && now.Before(t.ExpiresAt) && t.Scope == ScopeFull
}

func (c *cachedCred) principal() Principal {
	if c.isKey {
		return Principal{Tenant: c.key.Tenant, Role: c.key.Role, CredentialID: c.key.ID, Scope: ScopeFull}
	}
	t := c.token
	return Principal{Tenant: t.Tenant, Role: RoleTechnician, CredentialID: t.ID, TechnicianID: t.TechnicianID, Scope: t.Scope}
}

func newCredCache(max int) *credCache {
	return &credCache{entries: map[string]*cachedCred{}, max: max}
}

func (c *credCache) get(prefix, id string) (cachedCred, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[prefix+id]
	if !ok {
		return cachedCred{}, false
	}
	c.tick++
	e.used = c.tick
	return *e, true
}

func (c *credCache) put(prefix, id string, e cachedCred) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[prefix+id]; !ok && len(c.entries) >= c.max {
		evictLeastUsed(c.entries, func(e *cachedCred) uint64 { return e.used })
	}
	c.tick++
	e.used = c.tick
	c.entries[prefix+id] = &e
}
