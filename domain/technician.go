package domain

import (
	"net/netip"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Technician is the technician aggregate: group membership, account state,
// failed-login counting and lockout, password and second-factor duties. It
// is not safe for concurrent use.
type Technician struct {
	root
	id                 string
	created            bool
	groupID            string
	disabled           bool
	erased             bool
	failures           int
	lockedUntil        time.Time
	mustChangePassword bool
	passwordChangedAt  time.Time
	twoFactor          bool
	loggedIn           bool
	ssoDisabled        bool
}

// NewTechnician returns the empty aggregate of technician id in tenant,
// ready for Load or Create.
func NewTechnician(tenant, id string) *Technician {
	return &Technician{root: root{tenant: tenant, stream: TechnicianStream(id)}, id: id}
}

// Load applies the technician's stored events in order. It returns an
// error of code invalid for events of another stream, out of order, or
// undecodable.
func (t *Technician) Load(events []Event) error { return t.load(events, t.apply) }

// ID returns the technician's id.
func (t *Technician) ID() string { return t.id }

// Exists reports whether the technician was created.
func (t *Technician) Exists() bool { return t.created }

// GroupID returns the technician's group.
func (t *Technician) GroupID() string { return t.groupID }

// Disabled reports whether the account is disabled.
func (t *Technician) Disabled() bool { return t.disabled }

// Erased reports whether the technician's data key was destroyed.
func (t *Technician) Erased() bool { return t.erased }

// Failures returns the number of consecutive failed logins counted towards
// the lockout threshold.
func (t *Technician) Failures() int { return t.failures }

// LockedUntil returns when the current or last lockout ends; zero if none.
func (t *Technician) LockedUntil() time.Time { return t.lockedUntil }

// Locked reports whether the technician is locked out at now. A lockout
// ends by itself at LockedUntil.
func (t *Technician) Locked(now time.Time) bool {
	return !t.lockedUntil.IsZero() && now.Before(t.lockedUntil)
}

// MustChangePassword reports whether an admin required a password change
// that has not happened yet.
func (t *Technician) MustChangePassword() bool { return t.mustChangePassword }

// PasswordChangedAt returns when the password was last changed (or the
// account created).
func (t *Technician) PasswordChangedAt() time.Time { return t.passwordChangedAt }

// TwoFactorEnrolled reports whether a second factor is enrolled.
func (t *Technician) TwoFactorEnrolled() bool { return t.twoFactor }

// SSODisabled reports whether an admin disabled the technician's SSO id.
func (t *Technician) SSODisabled() bool { return t.ssoDisabled }

// LoggedIn reports whether the technician has a console session open.
func (t *Technician) LoggedIn() bool { return t.loggedIn }

// Create records technician.created. It returns an error of code conflict
// when the technician exists and invalid for an empty group, name or
// e-mail address.
func (t *Technician) Create(cmd Cmd, groupID, name, email string) ([]Event, error) {
	if t.created {
		return nil, coded(CodeConflict, ErrConflict, "technician %s already exists", t.id)
	}
	if groupID == "" || strings.TrimSpace(name) == "" || !strings.Contains(email, "@") {
		return nil, Errorf(CodeInvalid, "technician needs a group, a name and an e-mail address")
	}
	return t.one(cmd, TechnicianCreated{GroupID: groupID, Name: name, Email: email})
}

// CheckLogin reports whether the technician may try to log in at now. It
// returns an error of code not_found, subject_erased, disabled (matching
// ErrDisabled) or locked_out (matching ErrLockedOut) while a lockout lasts.
func (t *Technician) CheckLogin(now time.Time) error {
	if err := t.usable(); err != nil {
		return err
	}
	if t.disabled {
		return coded(CodeDisabled, ErrDisabled, "technician %s is disabled", t.id)
	}
	if t.Locked(now) {
		return coded(CodeLockedOut, ErrLockedOut, "technician %s is locked out until %s", t.id, t.lockedUntil.UTC().Format(time.RFC3339))
	}
	return nil
}

// RecordLoginSuccess records technician.login_succeeded from ip, which
// resets the failure count. It refuses, recording nothing, with the errors
// of CheckLogin.
func (t *Technician) RecordLoginSuccess(cmd Cmd, ip netip.Addr, secondFactor bool) ([]Event, error) {
	if err := t.CheckLogin(cmd.At); err != nil {
		return nil, err
	}
	return t.one(cmd, LoginSucceeded{IP: addrString(ip), SecondFactor: secondFactor})
}

// RecordLoginFailure records technician.login_failed for reason and, when
// the failure brings the consecutive count to the policy's threshold,
// technician.locked_out until cmd.At plus the policy's lockout duration.
// Only bad_password and second_factor_failed count; a lockout that has
// expired starts the count again. It returns an error of code invalid for
// an unknown reason or unknown_user (which has no technician stream).
func (t *Technician) RecordLoginFailure(cmd Cmd, reason LoginFailureReason, ip netip.Addr, policy GroupPolicy) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if !reason.Valid() || reason == LoginUnknownUser {
		return nil, Errorf(CodeInvalid, "login failure reason %q on a technician stream", reason)
	}
	if policy.LockoutThreshold < 1 || policy.LockoutDuration < 1 {
		return nil, Errorf(CodeInvalid, "lockout policy without threshold or duration")
	}
	e, err := t.record(cmd, LoginFailed{Reason: reason, IP: addrString(ip)}, t.apply)
	if err != nil {
		return nil, err
	}
	events := []Event{e}
	if reason.countsTowardsLockout() && t.failures >= policy.LockoutThreshold && !t.Locked(cmd.At) {
		cmd.EventID = [16]byte{}
		lock, err := t.record(cmd, LockedOut{Until: cmd.At.Add(policy.LockoutDuration.Duration()), Failures: t.failures}, t.apply)
		if err != nil {
			return events, err
		}
		events = append(events, lock)
	}
	return events, nil
}

// LoginAttempt is what the authentication service found out about one
// login attempt; the domain decides what it means.
type LoginAttempt struct {
	// IP is the address the attempt came from.
	IP netip.Addr
	// PasswordOK reports whether the password matched the stored hash.
	PasswordOK bool
	// SecondFactorOK reports whether a valid TOTP code was given.
	SecondFactorOK bool
}

// LoginResult tells a successful login what the technician must do next.
type LoginResult struct {
	// MustChangePassword is set when an admin required a change or the
	// password is older than the policy's maximum age.
	MustChangePassword bool
	// MustEnrollSecondFactor is set when the group requires a second factor
	// that the technician has not enrolled yet.
	MustEnrollSecondFactor bool
}

// Login decides a login attempt by the technician, a member of g, and
// records its outcome: technician.login_succeeded, or technician.login_failed
// (and technician.locked_out when the failure reaches the threshold). The
// checks run in order: disabled, locked out, IP allowlist, the group's
// sso_only policy, password, second factor (when enrolled). On refusal it
// returns the recorded events and an error of code disabled, locked_out,
// ip_not_allowed, forbidden (sso_only) or unauthenticated,
// each matching its sentinel. It returns an error of code invalid, recording
// nothing, when g is not the technician's group.
func (t *Technician) Login(cmd Cmd, a LoginAttempt, g *Group) (LoginResult, []Event, error) {
	if err := t.usable(); err != nil {
		return LoginResult{}, nil, err
	}
	if g == nil || g.ID() != t.groupID || !g.Exists() {
		return LoginResult{}, nil, Errorf(CodeInvalid, "login of technician %s checked against another group", t.id)
	}
	policy := g.Policy()
	fail := func(reason LoginFailureReason, err error) (LoginResult, []Event, error) {
		events, rerr := t.RecordLoginFailure(cmd, reason, a.IP, policy)
		if rerr != nil {
			return LoginResult{}, events, rerr
		}
		return LoginResult{}, events, err
	}
	switch {
	case t.disabled:
		return fail(LoginDisabled, coded(CodeDisabled, ErrDisabled, "technician %s is disabled", t.id))
	case t.Locked(cmd.At):
		return fail(LoginLocked, coded(CodeLockedOut, ErrLockedOut, "technician %s is locked out until %s", t.id, t.lockedUntil.UTC().Format(time.RFC3339)))
	case !g.IPAllowed(a.IP):
		return fail(LoginIPNotAllowed, coded(CodeIPNotAllowed, ErrIPNotAllowed, "login from an address outside the group's allowlist"))
	case policy.SSOOnly:
		return fail(LoginSSORequired, coded(CodeForbidden, ErrForbidden, "members of this group log in through single sign-on only"))
	case !a.PasswordOK:
		return fail(LoginBadPassword, coded(CodeUnauthenticated, ErrUnauthenticated, "wrong e-mail address or password"))
	case t.twoFactor && !a.SecondFactorOK:
		return fail(LoginSecondFactorFailed, coded(CodeUnauthenticated, ErrUnauthenticated, "wrong second-factor code"))
	}
	events, err := t.RecordLoginSuccess(cmd, a.IP, t.twoFactor)
	if err != nil {
		return LoginResult{}, nil, err
	}
	res := LoginResult{
		MustChangePassword:     t.mustChangePassword || t.passwordExpired(cmd.At, policy.Password),
		MustEnrollSecondFactor: policy.RequireSecondFactor && !t.twoFactor,
	}
	return res, events, nil
}

func (t *Technician) passwordExpired(now time.Time, p PasswordPolicy) bool {
	return p.MaxAge > 0 && !now.Before(t.passwordChangedAt.Add(p.MaxAge.Duration()))
}

// Unlock records technician.unlocked, lifting a lockout and resetting the
// failure count. It returns an error of code conflict when the technician
// is neither locked at cmd.At nor has failures counted.
func (t *Technician) Unlock(cmd Cmd, reason string) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if !t.Locked(cmd.At) && t.failures == 0 {
		return nil, coded(CodeConflict, ErrConflict, "technician %s is not locked out", t.id)
	}
	return t.one(cmd, Unlocked{Reason: reason})
}

// Disable records technician.disabled, preceded by technician.logged_out
// (reason disabled) when a console session is open. It returns an error of
// code conflict when already disabled.
func (t *Technician) Disable(cmd Cmd, reason string) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if t.disabled {
		return nil, coded(CodeConflict, ErrConflict, "technician %s is already disabled", t.id)
	}
	var events []Event
	if t.loggedIn {
		e, err := t.record(cmd, LoggedOut{Reason: LogoutDisabled}, t.apply)
		if err != nil {
			return nil, err
		}
		events = append(events, e)
		cmd.EventID = [16]byte{}
	}
	e, err := t.record(cmd, TechnicianDisabled{Reason: reason}, t.apply)
	if err != nil {
		return events, err
	}
	return append(events, e), nil
}

// ChangePassword checks password against policy and records
// technician.password_changed; the caller stores the hash elsewhere. It
// returns an error of code disabled for a disabled technician and
// weak_password (matching ErrWeakPassword) when the policy is not met.
func (t *Technician) ChangePassword(cmd Cmd, password string, policy PasswordPolicy) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if t.disabled {
		return nil, coded(CodeDisabled, ErrDisabled, "technician %s is disabled", t.id)
	}
	if err := policy.Check(password); err != nil {
		return nil, err
	}
	return t.one(cmd, PasswordChanged{})
}

// ChangeOwnPassword decides a technician's change of their own password
// (the caller has checked the current password and, when one is enrolled or
// the group requires it, the second-factor code) and records
// technician.password_changed, or technician.password_change_refused with
// the first reason that applies: bad_password, second_factor_required (the
// group requires a second factor not enrolled yet), second_factor_failed,
// weak_password. On refusal it returns the recorded event and an error of
// code unauthenticated, second_factor_required or weak_password.
func (t *Technician) ChangeOwnPassword(cmd Cmd, ip netip.Addr, currentOK, secondFactorOK bool, password string, policy GroupPolicy) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if t.disabled {
		return nil, coded(CodeDisabled, ErrDisabled, "technician %s is disabled", t.id)
	}
	refuse := func(reason PasswordChangeRefusal, err error) ([]Event, error) {
		evs, rerr := t.one(cmd, PasswordChangeRefused{Reason: reason, IP: addrString(ip)})
		if rerr != nil {
			return nil, rerr
		}
		return evs, err
	}
	switch {
	case !currentOK:
		return refuse(PasswordChangeBadPassword, coded(CodeUnauthenticated, ErrUnauthenticated, "wrong current password"))
	case policy.RequireSecondFactor && !t.twoFactor:
		return refuse(PasswordChangeSecondFactorRequired, Errorf(CodeSecondFactor, "enrol a second factor before changing the password"))
	case t.twoFactor && !secondFactorOK:
		return refuse(PasswordChangeSecondFactorFailed, coded(CodeUnauthenticated, ErrUnauthenticated, "wrong or missing second-factor code"))
	}
	if err := policy.Password.Check(password); err != nil {
		evs, rerr := refuse(PasswordChangeWeakPassword, nil)
		if rerr != nil {
			return nil, rerr
		}
		return evs, err
	}
	return t.one(cmd, PasswordChanged{SecondFactor: t.twoFactor})
}

// SSOAttempt is what the SSO service found out about one login through the
// tenant's identity provider, whose response it validated.
type SSOAttempt struct {
	// IP is the address the attempt came from.
	IP netip.Addr
	// SSOID is the SSO id the assertion carried.
	SSOID string
	// IdPEntityID is the identity provider.
	IdPEntityID string
	// AssertionID is the id of the assertion.
	AssertionID string
	// IdPInitiated reports an unsolicited response.
	IdPInitiated bool
	// Provisioned reports that the technician was created for this login.
	Provisioned bool
}

// SSOLogin decides a login through the tenant's identity provider by the
// technician, a member of g, and records technician.sso_login_succeeded or
// technician.sso_login_failed. The checks run in order: account disabled,
// SSO id disabled, IP allowlist. A lockout for wrong passwords does not
// refuse an SSO login: the identity provider authenticated the technician.
// On refusal it returns the recorded event and an error of code disabled or
// ip_not_allowed; it returns invalid, recording nothing, when g is not the
// technician's group.
func (t *Technician) SSOLogin(cmd Cmd, a SSOAttempt, g *Group) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if g == nil || g.ID() != t.groupID || !g.Exists() {
		return nil, Errorf(CodeInvalid, "login of technician %s checked against another group", t.id)
	}
	fail := func(reason SSOFailureReason, err error) ([]Event, error) {
		evs, rerr := t.one(cmd, SSOLoginFailed{Reason: reason, IdPEntityID: a.IdPEntityID, AssertionID: a.AssertionID, SSOID: a.SSOID, IP: addrString(a.IP)})
		if rerr != nil {
			return nil, rerr
		}
		return evs, err
	}
	switch {
	case t.disabled:
		return fail(SSODisabledAccount, coded(CodeDisabled, ErrDisabled, "technician %s is disabled", t.id))
	case t.ssoDisabled:
		return fail(SSOIDDisabled, coded(CodeDisabled, ErrDisabled, "the single sign-on id of technician %s is disabled", t.id))
	case !g.IPAllowed(a.IP):
		return fail(SSOIPNotAllowed, coded(CodeIPNotAllowed, ErrIPNotAllowed, "login from an address outside the group's allowlist"))
	}
	return t.one(cmd, SSOLoginSucceeded{IdPEntityID: a.IdPEntityID, AssertionID: a.AssertionID, IdPInitiated: a.IdPInitiated,
		Provisioned: a.Provisioned, SSOID: a.SSOID, IP: addrString(a.IP)})
}

// RecordSSOFailure records technician.sso_login_failed for a refusal the
// SSO service decided (a replayed assertion of a known technician, say).
// It returns an error of code invalid for an unknown reason.
func (t *Technician) RecordSSOFailure(cmd Cmd, a SSOAttempt, reason SSOFailureReason) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if !reason.Valid() {
		return nil, Errorf(CodeInvalid, "SSO failure reason %q", reason)
	}
	return t.one(cmd, SSOLoginFailed{Reason: reason, IdPEntityID: a.IdPEntityID, AssertionID: a.AssertionID, SSOID: a.SSOID, IP: addrString(a.IP)})
}

// DisableSSO records technician.sso_disabled, or nothing when the SSO id is
// disabled already.
func (t *Technician) DisableSSO(cmd Cmd, reason string) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if t.ssoDisabled {
		return nil, nil
	}
	return t.one(cmd, SSODisabled{Reason: reason})
}

// MaxSSOIDLength bounds an SSO id, in characters.
const MaxSSOIDLength = 256

// SetSSOID records technician.sso_id_set: ssoID (already normalized by the
// caller) becomes the id SAML logins map to this technician; empty clears
// it. It returns an error of code invalid for an id longer than
// MaxSSOIDLength or holding a control character, and the errors of a
// technician that does not exist or was erased.
func (t *Technician) SetSSOID(cmd Cmd, ssoID string) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if utf8.RuneCountInString(ssoID) > MaxSSOIDLength || strings.ContainsFunc(ssoID, unicode.IsControl) {
		return nil, Errorf(CodeInvalid, "sso_id must be a line of at most %d characters", MaxSSOIDLength)
	}
	return t.one(cmd, SSOIDSet{SSOID: ssoID})
}

// EnableSSO records technician.sso_enabled, or nothing when the SSO id is
// not disabled.
func (t *Technician) EnableSSO(cmd Cmd, reason string) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if !t.ssoDisabled {
		return nil, nil
	}
	return t.one(cmd, SSOEnabled{Reason: reason})
}

// RequirePasswordChange records technician.password_change_required, or
// nothing when a change is already required.
func (t *Technician) RequirePasswordChange(cmd Cmd, reason string) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if t.mustChangePassword {
		return nil, nil
	}
	return t.one(cmd, PasswordChangeRequired{Reason: reason})
}

// EnrollTwoFactor records technician.two_factor_enrolled. The only method
// is "totp". It returns an error of code invalid for another method and
// conflict when already enrolled.
func (t *Technician) EnrollTwoFactor(cmd Cmd, method string) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if method != "totp" {
		return nil, Errorf(CodeInvalid, "second-factor method %q: want totp", method)
	}
	if t.twoFactor {
		return nil, coded(CodeConflict, ErrConflict, "technician %s already enrolled a second factor", t.id)
	}
	return t.one(cmd, TwoFactorEnrolled{Method: method})
}

// Logout records technician.logged_out. It returns an error of code invalid
// for an unknown reason and conflict when no console session is open.
func (t *Technician) Logout(cmd Cmd, reason LogoutReason) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if !reason.Valid() {
		return nil, Errorf(CodeInvalid, "logout reason %q", reason)
	}
	if !t.loggedIn {
		return nil, coded(CodeConflict, ErrConflict, "technician %s is not logged in", t.id)
	}
	return t.one(cmd, LoggedOut{Reason: reason})
}

// ChangeGroup records technician.group_changed, or nothing when groupID is
// the current group.
func (t *Technician) ChangeGroup(cmd Cmd, groupID string) ([]Event, error) {
	if err := t.usable(); err != nil {
		return nil, err
	}
	if groupID == "" {
		return nil, Errorf(CodeInvalid, "empty group id")
	}
	if groupID == t.groupID {
		return nil, nil
	}
	return t.one(cmd, TechnicianGroupChanged{FromGroupID: t.groupID, ToGroupID: groupID})
}

func (t *Technician) usable() error {
	if !t.created {
		return coded(CodeNotFound, ErrNotFound, "technician %s does not exist", t.id)
	}
	if t.erased {
		return coded(CodeSubjectErased, ErrSubjectErased, "technician %s was erased", t.id)
	}
	return nil
}

func (t *Technician) one(cmd Cmd, p Payload) ([]Event, error) {
	e, err := t.record(cmd, p, t.apply)
	if err != nil {
		return nil, err
	}
	return []Event{e}, nil
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func (t *Technician) apply(e Event, p Payload) {
	switch p := p.(type) {
	case TechnicianCreated:
		t.created = true
		t.groupID = p.GroupID
		t.passwordChangedAt = e.OccurredAt
	case LoginSucceeded:
		t.failures = 0
		t.lockedUntil = time.Time{}
		t.loggedIn = true
	case SSOLoginSucceeded:
		t.loggedIn = true
	case SSODisabled:
		t.ssoDisabled = true
	case SSOEnabled:
		t.ssoDisabled = false
	case LoginFailed:
		if !t.lockedUntil.IsZero() && !e.OccurredAt.Before(t.lockedUntil) {
			// The lockout expired: counting starts again.
			t.failures = 0
			t.lockedUntil = time.Time{}
		}
		if p.Reason.countsTowardsLockout() {
			t.failures++
		}
	case LockedOut:
		t.lockedUntil = p.Until
	case Unlocked:
		t.failures = 0
		t.lockedUntil = time.Time{}
	case PasswordChanged:
		t.mustChangePassword = false
		t.passwordChangedAt = e.OccurredAt
	case PasswordChangeRequired:
		t.mustChangePassword = true
	case TwoFactorEnrolled:
		t.twoFactor = true
	case LoggedOut:
		t.loggedIn = false
	case TechnicianDisabled:
		t.disabled = true
		t.loggedIn = false
	case TechnicianGroupChanged:
		t.groupID = p.ToGroupID
	case SubjectErased:
		t.erased = true
	}
}
