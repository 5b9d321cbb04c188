package service

import (
	"context"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/vigilhq/vigil/domain"
)

// What bounds password guessing besides each technician's lockout (the
// whitepaper's rule, decided by domain.Technician):
//
//   - per client address, a count of failed logins in fixed windows, shared
//     by every node through the LoginLimiter (PostgreSQL): past the limit an
//     address's logins answer rate_limited before any password is checked,
//     so they count toward no account's lockout, and one address can lock
//     out at most limit/threshold accounts per window (4 with the defaults);
//   - per login name without an account (an unknown e-mail address), the
//     same lockout rule with the default policy, so that an unknown address
//     answers 401 and then 423 exactly as an account does, and the answers
//     do not tell which addresses are registered;
//   - a dummy scrypt of the same cost for an unknown address, and a pause
//     that brings its answer to the typical time of a failed login of an
//     account (which also appends to the log).

// Defaults of Config.LoginFailuresPerAddress and LoginFailureWindow.
const (
	DefaultLoginFailuresPerAddress = 20
	DefaultLoginFailureWindow      = 10 * time.Minute
)

// loginFailureRetention is how long the login counts are kept: past their
// window or lockout they decide nothing.
const loginFailureRetention = 24 * time.Hour

// addressPurpose separates the client address index from other indexes.
const addressPurpose = "login-address"

// RateLimitedError refuses a login from an address that failed too often:
// code rate_limited; RetryAfter is when its window ends. It matches the
// coded error with errors.As.
type RateLimitedError struct {
	Err        *domain.Error
	RetryAfter time.Duration
}

// Error implements error.
func (e *RateLimitedError) Error() string { return e.Err.Error() }

// Unwrap returns the coded error.
func (e *RateLimitedError) Unwrap() error { return e.Err }

// RetryAfterSeconds returns RetryAfter in whole seconds, rounded up, as
// the Retry-After header wants it.
func (e *RateLimitedError) RetryAfterSeconds() string {
	return strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10)
}

// errLockedOut is the one answer of a locked login name, account or not: it
// names no technician and no time.
func errLockedOut() error {
	return &domain.Error{Code: domain.CodeLockedOut, Err: domain.ErrLockedOut,
		Message: "too many failed logins: this account is locked out for a while, or until an administrator unlocks it"}
}

// errBadLogin is the one answer of a wrong e-mail address or password.
func errBadLogin() error { return errUnauthenticated("wrong e-mail address or password") }

// addressSlot is one reserved failure of a client address.
type addressSlot struct {
	key    []byte
	window time.Time
}

// addressKey is what an address is counted under: an IPv4 address, or the
// /64 of an IPv6 one (a host usually has a whole /64).
func addressKey(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid():
		return "unknown"
	case ip.Is4():
		return ip.String()
	}
	return netip.PrefixFrom(ip, 64).Masked().String()
}

// reserveAddress counts a failure for ip before the attempt runs, or
// refuses with a RateLimitedError when its window is full. The slot is nil
// when nothing is counted (no limiter, no limit).
func (s *Service) reserveAddress(ctx context.Context, ip netip.Addr) (*addressSlot, error) {
	if s.limiter == nil || s.addrFailures < 0 {
		return nil, nil
	}
	key, err := s.crypto.BlindIndex(ctx, addressPurpose, addressKey(ip))
	if err != nil {
		return nil, err
	}
	now := s.Now()
	window := now.Truncate(s.failureWindow)
	ok, err := s.limiter.ReserveLoginFailure(ctx, key, window, s.addrFailures)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &RateLimitedError{
			Err: &domain.Error{Code: domain.CodeRateLimited,
				Message: "too many failed logins from this address: try again later"},
			RetryAfter: window.Add(s.failureWindow).Sub(now),
		}
	}
	return &addressSlot{key: key, window: window}, nil
}

// forgive takes back the slot of an attempt that did not fail.
func (s *Service) forgive(ctx context.Context, slot *addressSlot) {
	if slot == nil {
		return
	}
	if err := s.limiter.ForgiveLoginFailure(context.WithoutCancel(ctx), slot.key, slot.window); err != nil {
		s.logger.Warn("forgive a login failure", "err", err)
	}
}

// failedLogin reports whether a login's outcome is a failed attempt for
// the address count: a wrong secret or a refusal that did not check it.
func failedLogin(err error) bool {
	switch domain.ErrorCode(err) {
	case domain.CodeUnauthenticated, domain.CodeLockedOut, domain.CodeDisabled, domain.CodeIPNotAllowed:
		return true
	}
	return false
}

// nameFailure counts a failed login for a login name with no lockout of
// its own and returns the answer: errLockedOut while it is locked, else
// errBadLogin.
func (s *Service) nameFailure(ctx context.Context, tenant string, emailIndex []byte) error {
	if s.limiter == nil {
		return errBadLogin()
	}
	locked, err := s.limiter.CountAccountFailure(ctx, tenant, emailIndex, s.Now(),
		domain.DefaultLockoutThreshold, domain.DefaultLockoutDuration)
	if err != nil {
		return err
	}
	if locked {
		return errLockedOut()
	}
	return errBadLogin()
}

// loginTimer follows the typical duration of a failed login of an
// account, a moving average over the last few.
type loginTimer struct {
	mu  sync.Mutex
	avg time.Duration
}

func (t *loginTimer) observe(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.avg == 0 {
		t.avg = d
		return
	}
	t.avg += (d - t.avg) / 8
}

func (t *loginTimer) typical() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.avg
}

// padLogin waits until a login that began at start has taken the typical
// time of an account's failed login.
func (s *Service) padLogin(ctx context.Context, start time.Time) {
	wait := s.loginTime.typical() - time.Since(start)
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// purgeLoginFailures forgets login counts that decide nothing any more.
func (s *Service) purgeLoginFailures(ctx context.Context) {
	if s.limiter == nil {
		return
	}
	if _, err := s.limiter.PurgeLoginFailures(ctx, s.Now().Add(-max(loginFailureRetention, s.failureWindow))); err != nil && ctx.Err() == nil {
		s.logger.Warn("purge login failures", "err", err)
	}
}
