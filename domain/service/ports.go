// Package service runs Vigil's commands: it authenticates callers, loads
// aggregates from the log, lets them decide, and appends what they record.
// It holds the ports it needs (the log, the identity store, the crypto of
// the ledger) and no adapter; the HTTP API, the relay and the bus
// subscribers all go through it.
package service

import (
	"context"
	"time"

	"github.com/vigilhq/vigil/domain"
)

// Role is what a credential may do.
type Role string

// The roles. Technician is the role of a technician's login token; the
// others are API key roles.
const (
	RoleAdmin       Role = "admin"
	RoleAuditor     Role = "auditor"
	RoleIntegration Role = "integration"
	RoleIngest      Role = "ingest"
	RoleRelay       Role = "relay"
	RoleTechnician  Role = "technician"
	// RoleMedia is the Rescue Lens media service's session manager,
	// which reports conferences and camera streams (issue 18).
	RoleMedia Role = "media"
)

// ValidKeyRole reports whether r is a role an API key may have.
func ValidKeyRole(r Role) bool {
	switch r {
	case RoleAdmin, RoleAuditor, RoleIntegration, RoleIngest, RoleRelay, RoleMedia:
		return true
	}
	return false
}

// TenantRecord is a tenant as the identity store keeps it.
type TenantRecord struct {
	ID        string
	Name      string
	Region    string
	CreatedAt time.Time
}

// APIKey is a stored API key. Hash is SHA-256 of the secret part; the
// secret itself is shown once and never stored.
type APIKey struct {
	ID          string
	Tenant      string
	Role        Role
	Hash        []byte
	Description string
	CreatedAt   time.Time
	RevokedAt   time.Time // zero while valid
}

// Credential is what authenticates a technician, kept outside the log:
// the scrypt password hash, and the TOTP secret sealed under the
// technician's data key (so that erasing the technician destroys it).
type Credential struct {
	Tenant       string
	TechnicianID string
	// EmailIndex is the keyed blind index of the lower-cased e-mail
	// address; the address itself is only in the log, sealed.
	EmailIndex   []byte
	PasswordHash string
	// TOTPSecret is the sealed secret of an enrolled second factor, nil
	// when none; TOTPPending the sealed secret of an enrolment not yet
	// confirmed.
	TOTPSecret  []byte
	TOTPPending []byte
	UpdatedAt   time.Time
}

// Token scopes.
const (
	ScopeFull       = "full"
	ScopeTOTPEnroll = "totp_enroll"
)

// Token is a technician's login token. Hash is SHA-256 of its secret part.
type Token struct {
	ID           string
	Tenant       string
	TechnicianID string
	Hash         []byte
	Scope        string
	CreatedAt    time.Time
	LastSeenAt   time.Time
	// ExpiresAt is LastSeenAt plus the console inactivity timeout at the
	// time of the last use.
	ExpiresAt time.Time
	// EndedAt is set when the token was logged out or expired and its
	// logout recorded.
	EndedAt time.Time
}

// IdentityStore keeps tenants, API keys, technician credentials and tokens.
// Lookups return domain.ErrNotFound for what does not exist; creations
// return domain.ErrConflict for a duplicate. Implementations are safe for
// concurrent use.
type IdentityStore interface {
	CreateTenant(ctx context.Context, t TenantRecord) error
	Tenant(ctx context.Context, id string) (TenantRecord, error)

	CreateAPIKey(ctx context.Context, k APIKey) error
	APIKey(ctx context.Context, id string) (APIKey, error)
	// RevokeAPIKey marks the key revoked at at; revoking twice keeps the
	// first time. domain.ErrNotFound for an unknown id.
	RevokeAPIKey(ctx context.Context, id string, at time.Time) error

	// CreateCredential stores c; domain.ErrConflict when the tenant already
	// has a technician with the same e-mail index or technician id.
	CreateCredential(ctx context.Context, c Credential) error
	DeleteCredential(ctx context.Context, tenant, technicianID string) error
	Credential(ctx context.Context, tenant, technicianID string) (Credential, error)
	// CredentialsByEmail returns every credential with the e-mail index, in
	// any tenant (an address may be registered in several).
	CredentialsByEmail(ctx context.Context, emailIndex []byte) ([]Credential, error)
	UpdatePassword(ctx context.Context, tenant, technicianID, hash string, at time.Time) error
	// SetSSOIndex sets the keyed blind index of the technician's SSO id
	// (nil clears it); domain.ErrConflict when another technician of the
	// tenant has it, domain.ErrNotFound when there is no such credential.
	SetSSOIndex(ctx context.Context, tenant, technicianID string, ssoIndex []byte) error
	// CredentialBySSO returns the credential of tenant whose SSO id has the
	// index; domain.ErrNotFound when none has.
	CredentialBySSO(ctx context.Context, tenant string, ssoIndex []byte) (Credential, error)
	// SetTOTP replaces the enrolled and pending sealed secrets.
	SetTOTP(ctx context.Context, tenant, technicianID string, secret, pending []byte) error
	// UseTOTPStep records that a code of time step step (Unix time / 30)
	// was accepted for the technician, atomically and only when step is
	// after the last step recorded: it reports false, changing nothing, for
	// a step at or before it (a replayed code), so that of two nodes
	// accepting one code at once exactly one gets true.
	// domain.ErrNotFound when there is no such credential.
	UseTOTPStep(ctx context.Context, tenant, technicianID string, step int64) (bool, error)

	CreateToken(ctx context.Context, t Token) error
	Token(ctx context.Context, id string) (Token, error)
	// TouchToken records a use of a live token.
	TouchToken(ctx context.Context, id string, lastSeen, expiresAt time.Time) error
	SetTokenScope(ctx context.Context, id, scope string) error
	// EndToken sets EndedAt unless it is set, and reports whether it was.
	EndToken(ctx context.Context, id string, at time.Time) (bool, error)
	// ExpiredTokens returns up to limit tokens not ended whose ExpiresAt is
	// before now, oldest first.
	ExpiredTokens(ctx context.Context, now time.Time, limit int) ([]Token, error)
	// EndTechnicianTokens ends every live token of the technician (on
	// disable) and returns how many it ended.
	EndTechnicianTokens(ctx context.Context, tenant, technicianID string, at time.Time) (int, error)
}

// LoginLimiter keeps the counts that bound password guessing, shared by
// every node (Store of adapters/postgres keeps them in PostgreSQL). Keys
// are keyed blind indexes: no address or e-mail address is stored.
// Implementations are safe for concurrent use.
type LoginLimiter interface {
	// ReserveLoginFailure counts one failed login for the client address
	// key in the window that starts at window, unless limit failures are
	// counted there already: then it counts nothing and reports false.
	// Counting before the attempt runs (and forgiving it after a success)
	// makes the limit exact however many attempts run at once.
	ReserveLoginFailure(ctx context.Context, addressKey []byte, window time.Time, limit int) (bool, error)
	// ForgiveLoginFailure takes back one reservation of ReserveLoginFailure
	// for an attempt that did not fail.
	ForgiveLoginFailure(ctx context.Context, addressKey []byte, window time.Time) error
	// CountAccountFailure applies the lockout rule of a technician (see
	// domain.Technician.RecordLoginFailure) to a login name that has no
	// lockout of its own: an e-mail address of no technician in tenant ("":
	// the login named none). When the name is locked at now it counts
	// nothing and reports true; otherwise it counts one failure (starting
	// again from zero after an expired lockout) and, at threshold failures,
	// locks the name until now+lockFor.
	CountAccountFailure(ctx context.Context, tenant string, emailIndex []byte, now time.Time, threshold int, lockFor time.Duration) (locked bool, err error)
	// PurgeLoginFailures forgets address counts of windows that started
	// before cutoff, and login names neither counted since cutoff nor
	// locked after it; it returns how many rows it removed.
	PurgeLoginFailures(ctx context.Context, cutoff time.Time) (int, error)
}

// IdempotencyKey names one stored answer: the same key from another
// credential is another entry.
type IdempotencyKey struct {
	Tenant    string
	Principal string // the credential's id
	Key       string
}

// StoredResponse is a stored answer to an idempotent request.
type StoredResponse struct {
	RequestHash []byte
	Status      int // 0 while the first request is still running
	Body        []byte
}

// IdempotencyStore keeps the answers to requests that carried an
// Idempotency-Key.
type IdempotencyStore interface {
	// Claim records that a request with k and requestHash is running,
	// unless k is known: then it returns the stored entry and false.
	Claim(ctx context.Context, k IdempotencyKey, requestHash []byte, now time.Time) (StoredResponse, bool, error)
	// Complete stores the answer of the claimed request.
	Complete(ctx context.Context, k IdempotencyKey, status int, body []byte) error
	// Release forgets a claim whose request failed before appending
	// anything, so that it may be retried.
	Release(ctx context.Context, k IdempotencyKey) error
	// Purge forgets entries created before cutoff and returns how many.
	Purge(ctx context.Context, cutoff time.Time) (int, error)
}

// OpenSession is a session the idle scheduler watches.
type OpenSession struct {
	Tenant       string
	GUID         string
	LastActivity time.Time
	// IdleAfter is the governing group's session inactivity timeout at the
	// last activity; 0 disables idle closing.
	IdleAfter time.Duration
}

// ActivityStore tracks the open sessions' last activity for the idle
// scheduler, in the database so that it survives restarts.
type ActivityStore interface {
	// TouchSession upserts the session's last activity and timeout.
	TouchSession(ctx context.Context, s OpenSession) error
	// EndSession forgets a closed session.
	EndSession(ctx context.Context, tenant, guid string) error
	// IdleSessions returns up to limit open sessions idle at now (last
	// activity plus timeout before now, timeout > 0), oldest first.
	IdleSessions(ctx context.Context, now time.Time, limit int) ([]OpenSession, error)
}

// Crypto is what the service needs of the ledger's key management: a keyed
// blind index, and secrets sealed under a data subject's key.
type Crypto interface {
	// BlindIndex returns a keyed HMAC of value for lookups (purpose
	// separates the uses), without storing value.
	BlindIndex(ctx context.Context, purpose, value string) ([]byte, error)
	// SealSecret encrypts plain under subject's data key in tenant, bound
	// to purpose.
	SealSecret(ctx context.Context, tenant string, subject domain.Subject, purpose string, plain []byte) ([]byte, error)
	// OpenSecret decrypts what SealSecret returned; domain.ErrSubjectErased
	// when the key was destroyed.
	OpenSecret(ctx context.Context, tenant string, subject domain.Subject, purpose string, sealed []byte) ([]byte, error)
}

// Log is the event log as the services use it: domain.EventStore, plus
// reading a stream without opening its sealed fields (what the aggregates
// decide on), and opening them for the timeline.
type Log interface {
	domain.EventStore
	// ReadSealed returns the events of stream in tenant with version above
	// after, in version order, with their personal fields still sealed.
	ReadSealed(ctx context.Context, tenant, stream string, after int64) ([]domain.Event, error)
	Open(ctx context.Context, e *domain.Event) error
}
