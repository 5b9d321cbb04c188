package service_test

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// answer is what a caller sees of a login's outcome: the code and message
// of the error ("" for success), which the API turns into status and body.
func answer(err error) string {
	if err == nil {
		return "ok"
	}
	return domain.ErrorCode(err) + ": " + domain.ErrorMessage(err)
}

const badLogin = "unauthenticated: wrong e-mail address or password"

// TestTOTPCodeIsAcceptedOnce: a code that logged in once is refused the
// second time, as a failed second factor, on another node too; the code
// that confirmed the enrolment does not log in; of two nodes that get one
// fresh code at once, exactly one accepts it.
func TestTOTPCodeIsAcceptedOnce(t *testing.T) {
	w := newWorld(t)
	g := w.group(nil)
	id := w.technician(g, "totp@example.com")
	p := w.logIn("totp@example.com")
	enr, err := w.svc.EnrollTOTP(w.ctx, p, "")
	if err != nil {
		t.Fatal(err)
	}
	code := func() string {
		c, err := totp.GenerateCodeCustom(enr.Secret, w.clock.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Stay clear of a step's end, so that "now" is one step all along.
	if rem := 30 - w.clock.Now().Unix()%30; rem < 10 {
		w.clock.Advance(time.Duration(rem+1) * time.Second)
	}
	enrolCode := code()
	if _, err := w.svc.EnrollTOTP(w.ctx, p, enrolCode); err != nil {
		t.Fatal(err)
	}
	second := w.newService() // another node on the same database
	login := func(svc *service.Service, code string) error {
		_, err := svc.Login(w.ctx, service.LoginRequest{Email: "totp@example.com", Password: worldPassword, TOTP: code})
		return err
	}
	const wrongCode = "unauthenticated: wrong second-factor code"
	if got := answer(login(w.svc, enrolCode)); got != wrongCode {
		t.Errorf("the enrolment's code logs in: %s", got)
	}

	w.clock.Advance(30 * time.Second)
	c := code()
	if err := login(w.svc, c); err != nil {
		t.Fatalf("fresh code: %v", err)
	}
	for name, svc := range map[string]*service.Service{"SameNode": w.svc, "OtherNode": second} {
		if got := answer(login(svc, c)); got != wrongCode {
			t.Errorf("%s: replayed code answers %q, want %q", name, got, wrongCode)
		}
	}
	// An older code (the previous step, still within the skew) neither.
	if got := answer(login(second, enrolCode)); got != wrongCode {
		t.Errorf("code of an earlier step answers %q", got)
	}
	evs := w.stream(domain.TechnicianStream(id))
	failed := 0
	for _, e := range evs {
		if p, err := domain.Decode(e); err == nil {
			if f, ok := p.(*domain.LoginFailed); ok && f.Reason == domain.LoginSecondFactorFailed {
				failed++
			}
		}
	}
	if failed != 4 {
		t.Errorf("%d login_failed (second factor) recorded, want 4", failed)
	}

	// One fresh code at two nodes at once: one login.
	w.clock.Advance(30 * time.Second)
	c = code()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, svc := range []*service.Service{w.svc, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = login(svc, c)
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Errorf("two nodes, one code: %v and %v; want exactly one login", errs[0], errs[1])
	}
}

// TestUnknownEmailAnswersAsAnAccount: wrong passwords for a registered
// address and an unknown one get the same answers, 401 until the
// threshold, then 423 (for the right password too), with or without the
// tenant named; a lockout of either ends after the default duration. A
// disabled account or one whose group does not allow the address answers
// so only to the right password.
func TestUnknownEmailAnswersAsAnAccount(t *testing.T) {
	w := newWorld(t)
	g := w.group(nil)
	w.technician(g, "known@example.com")
	w.technician(g, "known2@example.com")
	ip := 0
	login := func(email, tenant, password string) error {
		ip++ // every attempt from another address: this is not the address throttle
		_, err := w.svc.Login(w.ctx, service.LoginRequest{Email: email, Password: password, Tenant: tenant,
			IP: netip.AddrFrom4([4]byte{198, 51, byte(ip >> 8), byte(ip)})})
		return err
	}
	for _, c := range []struct{ name, known, unknown, tenant string }{
		{"NoTenant", "known@example.com", "nobody@example.com", ""},
		{"Tenant", "known2@example.com", "nobody2@example.com", w.tenant},
	} {
		t.Run(c.name, func(t *testing.T) {
			for i := 1; i <= domain.DefaultLockoutThreshold+1; i++ {
				want := badLogin
				if i > domain.DefaultLockoutThreshold {
					want = answer(errLocked)
				}
				k, u := answer(login(c.known, c.tenant, "Wrong-Password-1")), answer(login(c.unknown, c.tenant, "Wrong-Password-1"))
				if k != want || u != want {
					t.Fatalf("attempt %d: known %q, unknown %q; want both %q", i, k, u, want)
				}
			}
			k, u := answer(login(c.known, c.tenant, worldPassword)), answer(login(c.unknown, c.tenant, worldPassword))
			if k != answer(errLocked) || u != k {
				t.Errorf("locked, right password: known %q, unknown %q", k, u)
			}
		})
	}
	w.clock.Advance(domain.DefaultLockoutDuration + time.Minute)
	if got := answer(login("nobody@example.com", "", "Wrong-Password-1")); got != badLogin {
		t.Errorf("unknown address after the lockout: %q", got)
	}
	if err := login("known@example.com", "", worldPassword); err != nil {
		t.Errorf("known address after the lockout: %v", err)
	}

	// Refusals that come before the password is checked tell nothing to
	// whoever does not know it.
	restricted := domain.DefaultGroupPolicy()
	gr := w.group(&restricted)
	if _, err := w.svc.UpdateGroup(w.ctx, w.admin, gr, service.GroupChange{IPAllowlist: &[]string{"10.0.0.0/8"}}, [16]byte{}); err != nil {
		t.Fatal(err)
	}
	w.technician(gr, "elsewhere@example.com")
	disabled := w.technician(g, "gone@example.com")
	if _, err := w.svc.DisableTechnician(w.ctx, w.admin, disabled, "left", [16]byte{}); err != nil {
		t.Fatal(err)
	}
	for email, right := range map[string]string{"elsewhere@example.com": domain.CodeIPNotAllowed, "gone@example.com": domain.CodeDisabled} {
		for i := 1; i <= domain.DefaultLockoutThreshold+1; i++ {
			want := badLogin
			if i > domain.DefaultLockoutThreshold {
				want = answer(errLocked)
			}
			if got := answer(login(email, "", "Wrong-Password-1")); got != want {
				t.Errorf("%s, wrong password %d: %q, want %q", email, i, got, want)
			}
		}
		if got := domain.ErrorCode(login(email, "", worldPassword)); got != right {
			t.Errorf("%s, right password: %s, want %s", email, got, right)
		}
	}
}

// errLocked is the one answer of a locked login name.
var errLocked = &domain.Error{Code: domain.CodeLockedOut,
	Message: "too many failed logins: this account is locked out for a while, or until an administrator unlocks it"}

// TestLoginThrottlePerAddress: an address (an IPv6 /64 counts as one) that
// failed the limit in a window gets rate_limited for every login until the
// window ends, on every node, and those refusals count toward no account's
// lockout; so one address locks out at most limit/threshold accounts.
// Successful logins do not count.
func TestLoginThrottlePerAddress(t *testing.T) {
	const limit = 2 * domain.DefaultLockoutThreshold // two accounts' worth
	withLimit := func(c *service.Config) { c.LoginFailuresPerAddress = limit }
	w := newWorld(t, withLimit)
	g := w.group(nil)
	second := w.newService(withLimit)
	var emails []string
	for i := range 4 {
		emails = append(emails, fmt.Sprintf("t%d@example.com", i))
		w.technician(g, emails[i])
	}
	// Stay clear of a window's end.
	now := w.clock.Now()
	if rem := now.Truncate(service.DefaultLoginFailureWindow).Add(service.DefaultLoginFailureWindow).Sub(now); rem < 5*time.Minute {
		w.clock.Advance(rem + time.Second)
	}
	attacker := []netip.Addr{netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")}
	n := 0
	login := func(email, password string, ip netip.Addr) error {
		svc := w.svc
		if n++; n%2 == 0 {
			svc = second
		}
		_, err := svc.Login(w.ctx, service.LoginRequest{Email: email, Password: password, IP: ip})
		return err
	}
	// Successful logins are forgiven.
	for i := range limit + 2 {
		if err := login(emails[3], worldPassword, attacker[i%2]); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	// Two accounts locked: the limit's failures.
	for _, email := range emails[:2] {
		for i := range domain.DefaultLockoutThreshold {
			if got := answer(login(email, "Wrong-Password-1", attacker[i%2])); got != badLogin {
				t.Fatalf("%s attempt %d: %q", email, i, got)
			}
		}
		if got := domain.ErrorCode(login(email, worldPassword, netip.MustParseAddr("192.0.2.1"))); got != domain.CodeLockedOut {
			t.Fatalf("%s not locked out: %s", email, got)
		}
	}
	victim := domain.TechnicianStream(techID(t, w, emails[2]))
	before := len(w.stream(victim))
	for i := range 6 {
		err := login(emails[2], "Wrong-Password-1", attacker[i%2])
		var rl *service.RateLimitedError
		if !errors.As(err, &rl) || domain.ErrorCode(err) != domain.CodeRateLimited {
			t.Fatalf("attempt %d past the limit: %v, want rate_limited", i, err)
		}
		if rl.RetryAfter <= 0 || rl.RetryAfter > service.DefaultLoginFailureWindow {
			t.Errorf("Retry-After %s", rl.RetryAfter)
		}
	}
	if got := domain.ErrorCode(login(emails[3], worldPassword, attacker[0])); got != domain.CodeRateLimited {
		t.Errorf("right password from the throttled address: %s, want rate_limited", got)
	}
	if after := len(w.stream(victim)); after != before {
		t.Errorf("throttled attempts appended %d events to the account", after-before)
	}
	// The account is not locked: its owner logs in from elsewhere.
	if err := login(emails[2], worldPassword, netip.MustParseAddr("2001:db8:1:3::1")); err != nil {
		t.Errorf("account of throttled attempts: %v", err)
	}
	// The next window starts afresh.
	w.clock.Advance(service.DefaultLoginFailureWindow)
	if got := answer(login(emails[2], "Wrong-Password-1", attacker[1])); got != badLogin {
		t.Errorf("next window: %q", got)
	}
}

func techID(t *testing.T, w *world, email string) string {
	t.Helper()
	res, err := w.svc.Login(w.ctx, service.LoginRequest{Email: email, Password: worldPassword, IP: netip.MustParseAddr("203.0.113.200")})
	if err != nil {
		t.Fatal(err)
	}
	return res.TechnicianID
}
