package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/vigilhq/vigil/domain"
)

// Config wires a Service.
type Config struct {
	Log         Log
	Identity    IdentityStore
	Idempotency IdempotencyStore
	Activity    ActivityStore
	Crypto      Crypto
	// Region is the deployment's region; credentials of tenants of another
	// region are refused.
	Region string
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// Logger receives operational messages (default slog.Default()).
	Logger *slog.Logger
	// TOTPIssuer names the service in authenticator apps (default "Vigil").
	TOTPIssuer string
	// Limiter keeps the counts that bound password guessing (default:
	// Identity, when it implements LoginLimiter). Without one, logins are
	// not throttled per address and unknown e-mail addresses never lock.
	Limiter LoginLimiter
	// LoginFailuresPerAddress is how many failed logins one client address
	// (an IPv4 address, an IPv6 /64) may make in LoginFailureWindow before
	// its logins answer rate_limited (default 20; negative: no limit).
	LoginFailuresPerAddress int
	// LoginFailureWindow is the fixed window those failures are counted in
	// (default 10 minutes).
	LoginFailureWindow time.Duration
	// Assertions is the SAML assertion replay cache (default: Identity,
	// when it implements AssertionStore). Without one, SSO logins are
	// refused.
	Assertions AssertionStore
}

// Service runs commands. It is safe for concurrent use.
type Service struct {
	log      Log
	ids      IdentityStore
	idem     IdempotencyStore
	activity ActivityStore
	crypto   Crypto
	region   string
	now      func() time.Time
	logger   *slog.Logger
	issuer   string

	limiter       LoginLimiter
	assertions    AssertionStore
	addrFailures  int
	failureWindow time.Duration
	loginTime     loginTimer

	regions sync.Map // tenant id -> region (immutable, so cached forever)
	cache   *streamCache
	creds   *credCache // see AuthenticateDeferred
}

// New returns a service over the ports in c.
func New(c Config) *Service {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.TOTPIssuer == "" {
		c.TOTPIssuer = "Vigil"
	}
	if c.Limiter == nil {
		c.Limiter, _ = c.Identity.(LoginLimiter)
	}
	if c.Assertions == nil {
		c.Assertions, _ = c.Identity.(AssertionStore)
	}
	if c.LoginFailuresPerAddress == 0 {
		c.LoginFailuresPerAddress = DefaultLoginFailuresPerAddress
	}
	if c.LoginFailureWindow <= 0 {
		c.LoginFailureWindow = DefaultLoginFailureWindow
	}
	return &Service{
		log: c.Log, ids: c.Identity, idem: c.Idempotency, activity: c.Activity, crypto: c.Crypto,
		region: c.Region, now: c.Now, logger: c.Logger, issuer: c.TOTPIssuer,
		limiter: c.Limiter, assertions: c.Assertions, addrFailures: c.LoginFailuresPerAddress, failureWindow: c.LoginFailureWindow,
		cache: newStreamCache(20000), creds: newCredCache(credCacheMax),
	}
}

// Idempotency returns the service's idempotency store, for the API. The
// answers it stores are sealed (see sealedAnswers): they may carry personal
// data.
func (s *Service) Idempotency() IdempotencyStore {
	if s.idem == nil || s.crypto == nil {
		return s.idem
	}
	return sealedAnswers{store: s.idem, crypto: s.crypto}
}

// Now returns the service's clock reading.
func (s *Service) Now() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// Principal is an authenticated caller.
type Principal struct {
	Tenant string
	Role   Role
	// CredentialID is the id of the API key or token.
	CredentialID string
	// TechnicianID is set for technician tokens.
	TechnicianID string
	// Scope is the token's scope; API keys have ScopeFull.
	Scope string
}

// Actor returns the actor that principal's commands record. Customer
// commands reported with an ingest key are recorded by the session service
// as the customer's.
func (p Principal) Actor() domain.Actor {
	switch p.Role {
	case RoleTechnician:
		return domain.Actor{Kind: domain.ActorTechnician, ID: p.TechnicianID}
	case RoleAdmin:
		return domain.Actor{Kind: domain.ActorAdmin, ID: p.CredentialID}
	case RoleRelay:
		return domain.Actor{Kind: domain.ActorRelay, ID: p.CredentialID}
	}
	return domain.Actor{Kind: domain.ActorAPIKey, ID: p.CredentialID}
}

// Is reports whether p has one of roles.
func (p Principal) Is(roles ...Role) bool {
	for _, r := range roles {
		if p.Role == r {
			return true
		}
	}
	return false
}

func errUnauthenticated(msg string) error {
	return &domain.Error{Code: domain.CodeUnauthenticated, Message: msg, Err: domain.ErrUnauthenticated}
}

func errForbidden(format string, args ...any) error {
	return &domain.Error{Code: domain.CodeForbidden, Message: fmt.Sprintf(format, args...), Err: domain.ErrForbidden}
}

func errNotFound(format string, args ...any) error {
	return &domain.Error{Code: domain.CodeNotFound, Message: fmt.Sprintf(format, args...), Err: domain.ErrNotFound}
}

// Authenticate resolves a bearer credential: an API key or a technician
// token. It returns an error of code unauthenticated for anything unknown,
// revoked, ended or expired, and forbidden for a tenant of another region.
// A technician token's inactivity window slides with each use.
func (s *Service) Authenticate(ctx context.Context, bearer string) (Principal, error) {
	prefix, id, secret, ok := parseCredential(bearer)
	if !ok {
		return Principal{}, errUnauthenticated("missing or malformed credential")
	}
	switch prefix {
	case APIKeyPrefix:
		k, err := s.ids.APIKey(ctx, id)
		if errors.Is(err, domain.ErrNotFound) {
			return Principal{}, errUnauthenticated("unknown credential")
		}
		if err != nil {
			return Principal{}, err
		}
		return s.checkAPIKey(ctx, k, secret)
	default:
		t, err := s.ids.Token(ctx, id)
		if errors.Is(err, domain.ErrNotFound) {
			return Principal{}, errUnauthenticated("unknown credential")
		}
		if err != nil {
			return Principal{}, err
		}
		return s.checkToken(ctx, t, secret)
	}
}

// checkAPIKey authenticates secret against the API key's row k, just read.
func (s *Service) checkAPIKey(ctx context.Context, k APIKey, secret string) (Principal, error) {
	if !secretMatches(k.Hash, secret) {
		return Principal{}, errUnauthenticated("unknown credential")
	}
	if s.creds != nil {
		s.creds.put(APIKeyPrefix, k.ID, cachedCred{isKey: true, key: k})
	}
	if !k.RevokedAt.IsZero() {
		return Principal{}, errUnauthenticated("the API key was revoked")
	}
	if err := s.checkRegion(ctx, k.Tenant); err != nil {
		return Principal{}, err
	}
	return Principal{Tenant: k.Tenant, Role: k.Role, CredentialID: k.ID, Scope: ScopeFull}, nil
}

// checkToken authenticates secret against the token's row t, just read.
// The token's inactivity window slides with each use.
func (s *Service) checkToken(ctx context.Context, t Token, secret string) (Principal, error) {
	if !secretMatches(t.Hash, secret) {
		return Principal{}, errUnauthenticated("unknown credential")
	}
	now := s.Now()
	if s.creds != nil {
		defer func() { s.creds.put(TokenPrefix, t.ID, cachedCred{token: t}) }()
	}
	if !t.EndedAt.IsZero() {
		return Principal{}, errUnauthenticated("the session token has ended; log in again")
	}
	if !now.Before(t.ExpiresAt) {
		return Principal{}, errUnauthenticated("the session token expired after inactivity; log in again")
	}
	if err := s.checkRegion(ctx, t.Tenant); err != nil {
		return Principal{}, err
	}
	// Slide the window, at most every few seconds per token: each use
	// would otherwise be a write.
	window := t.ExpiresAt.Sub(t.LastSeenAt)
	if now.Sub(t.LastSeenAt) > min(window/20, 15*time.Second) {
		if err := s.ids.TouchToken(ctx, t.ID, now, now.Add(window)); err != nil {
			return Principal{}, err
		}
		t.LastSeenAt, t.ExpiresAt = now, now.Add(window)
	}
	return Principal{Tenant: t.Tenant, Role: RoleTechnician, CredentialID: t.ID, TechnicianID: t.TechnicianID, Scope: t.Scope}, nil
}

func (s *Service) checkRegion(ctx context.Context, tenant string) error {
	region, ok := s.regions.Load(tenant)
	if !ok {
		t, err := s.ids.Tenant(ctx, tenant)
		if err != nil {
			return fmt.Errorf("tenant of credential: %w", err)
		}
		region = t.Region
		s.regions.Store(tenant, region)
	}
	if s.region != "" && region.(string) != s.region {
		return errForbidden("this deployment serves region %s; the tenant is in %s", s.region, region)
	}
	return nil
}

// aggregate is what every domain aggregate offers the service.
type aggregate interface {
	Load([]domain.Event) error
	Stream() string
	Tenant() string
	StoredVersion() int64
}

// load reads a's stream (sealed: the rules use public fields only) and
// applies it.
func (s *Service) load(ctx context.Context, a aggregate) error {
	evs, err := s.events(ctx, a.Tenant(), a.Stream())
	if err != nil {
		return err
	}
	return a.Load(evs)
}

// retry runs attempt until it does not fail on a stream version clash, at
// most eight times: each attempt reloads what it decides on. Two writers of
// one stream (a console command and a relay report, say) that clash tend
// to retry in step and clash again, so every retry waits a random few
// milliseconds, more each time.
func retry[T any](ctx context.Context, attempt func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for i := 0; i < 8; i++ {
		v, err = attempt()
		if !errors.Is(err, domain.ErrConcurrency) {
			return v, err
		}
		wait := time.Duration(rand.Int64N(int64(time.Millisecond) << i))
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(wait):
		}
	}
	return v, err
}

// commit appends what a decided. A decision may come with an error and
// events to append anyway (refusals are audited); then the error is
// returned after the append.
func (s *Service) commit(ctx context.Context, a aggregate, events []domain.Event, decided error) ([]domain.Event, error) {
	if len(events) == 0 {
		return nil, decided
	}
	out, err := s.log.Append(ctx, a.Stream(), a.StoredVersion(), events...)
	if err != nil {
		return nil, err
	}
	return out, decided
}

func (s *Service) cmd(p Principal, eventID [16]byte) domain.Cmd {
	return domain.Cmd{Actor: p.Actor(), At: s.Now(), EventID: eventID}
}

func (s *Service) loadTechnician(ctx context.Context, tenant, id string) (*domain.Technician, error) {
	t, err := s.technician(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if !t.Exists() {
		return nil, errNotFound("technician %s does not exist", id)
	}
	return t, nil
}

func (s *Service) loadGroup(ctx context.Context, tenant, id string) (*domain.Group, error) {
	if id == "" {
		return nil, errNotFound("group does not exist")
	}
	g, err := s.group(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if !g.Exists() {
		return nil, errNotFound("group %s does not exist", id)
	}
	return g, nil
}
