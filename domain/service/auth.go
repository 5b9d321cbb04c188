package service

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"github.com/vigilhq/vigil/domain"
)

// emailPurpose separates the e-mail blind index from other indexes.
const emailPurpose = "technician-email"

// totpPurpose binds sealed TOTP secrets.
const totpPurpose = "totp-secret"

// maxTokenLifetime bounds a token whose group disabled the console
// inactivity timeout.
const maxTokenLifetime = 12 * time.Hour

func normalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// CreateTenant creates a tenant in region, records tenant.created, and
// returns it with a first admin API key (shown once). It returns an error
// of code invalid for an empty name or a region this deployment does not
// serve.
func (s *Service) CreateTenant(ctx context.Context, name, region string) (TenantRecord, string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return TenantRecord{}, "", domain.Errorf(domain.CodeInvalid, "tenant name is empty")
	}
	if s.region != "" && region != s.region {
		return TenantRecord{}, "", domain.Errorf(domain.CodeInvalid, "this deployment serves region %s, not %s", s.region, region)
	}
	id, _, _, err := newCredential("t")
	if err != nil {
		return TenantRecord{}, "", err
	}
	rec := TenantRecord{ID: id, Name: name, Region: region, CreatedAt: s.Now()}
	t := domain.NewTenant(id)
	events, err := t.Create(domain.Cmd{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "cli"}, At: rec.CreatedAt}, name, region, domain.DefaultRetention)
	if err != nil {
		return TenantRecord{}, "", err
	}
	if err := s.ids.CreateTenant(ctx, rec); err != nil {
		return TenantRecord{}, "", fmt.Errorf("create tenant: %w", err)
	}
	if _, err := s.log.Append(ctx, t.Stream(), 0, events...); err != nil {
		return TenantRecord{}, "", fmt.Errorf("create tenant: %w", err)
	}
	_, key, err := s.CreateAPIKey(ctx, id, RoleAdmin, "first admin key")
	if err != nil {
		return TenantRecord{}, "", err
	}
	return rec, key, nil
}

// CreateAPIKey makes a new API key of role for tenant and returns it with
// the full credential, which is shown once and never stored.
func (s *Service) CreateAPIKey(ctx context.Context, tenant string, role Role, description string) (APIKey, string, error) {
	if !ValidKeyRole(role) {
		return APIKey{}, "", domain.Errorf(domain.CodeInvalid, "role %q: want admin, auditor, integration, ingest or relay", role)
	}
	if _, err := s.ids.Tenant(ctx, tenant); err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return APIKey{}, "", errNotFound("tenant %s does not exist", tenant)
		}
		return APIKey{}, "", err
	}
	id, secret, full, err := newCredential(APIKeyPrefix)
	if err != nil {
		return APIKey{}, "", err
	}
	k := APIKey{ID: id, Tenant: tenant, Role: role, Hash: hashSecret(secret), Description: description, CreatedAt: s.Now()}
	if err := s.ids.CreateAPIKey(ctx, k); err != nil {
		return APIKey{}, "", fmt.Errorf("create API key: %w", err)
	}
	return k, full, nil
}

// RevokeAPIKey revokes the key with id (the id part of the credential, or
// the whole credential). It returns an error of code not_found for an
// unknown key.
func (s *Service) RevokeAPIKey(ctx context.Context, id string) error {
	if _, kid, _, ok := parseCredential(id); ok {
		id = kid
	}
	if err := s.ids.RevokeAPIKey(ctx, id, s.Now()); err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return errNotFound("API key %s does not exist", id)
		}
		return err
	}
	return nil
}

// LoginRequest is a technician's login attempt.
type LoginRequest struct {
	Email       string
	Password    string
	TOTP        string
	NewPassword string
	Tenant      string
	IP          netip.Addr
}

// LoginResult is a successful login.
type LoginResult struct {
	Token        string
	ExpiresAt    time.Time
	TechnicianID string
	Tenant       string
	Scope        string
}

// Login authenticates a technician and issues a token. Every outcome is
// recorded on the technician's stream (a failure for an unknown e-mail on
// the tenant's stream when the tenant is known). An unknown e-mail address
// answers as an account with a wrong password does: the same errors, the
// same lockout after the default threshold, about the same time. Errors:
// unauthenticated for a wrong e-mail, password or TOTP code (a code is
// accepted once: a replay is a wrong code); locked_out; rate_limited
// (a *RateLimitedError) once the client address failed too often, before
// anything is checked; ip_not_allowed, disabled and forbidden (a member of
// an sso_only group), only with the right password (with a wrong one they
// are a wrong password); password_change_required
// when a change is due and no new password was given; weak_password for a
// new password the policy refuses; invalid when the e-mail exists in
// several tenants and none was named.
func (s *Service) Login(ctx context.Context, req LoginRequest) (LoginResult, error) {
	email := normalizeEmail(req.Email)
	if email == "" || req.Password == "" {
		return LoginResult{}, domain.Errorf(domain.CodeInvalid, "email and password are required")
	}
	slot, err := s.reserveAddress(ctx, req.IP)
	if err != nil {
		return LoginResult{}, err
	}
	res, err := s.login(ctx, req, email)
	if !failedLogin(err) {
		s.forgive(ctx, slot)
	}
	return res, err
}

func (s *Service) login(ctx context.Context, req LoginRequest, email string) (LoginResult, error) {
	start := time.Now()
	idx, err := s.crypto.BlindIndex(ctx, emailPurpose, email)
	if err != nil {
		return LoginResult{}, err
	}
	creds, err := s.ids.CredentialsByEmail(ctx, idx)
	if err != nil {
		return LoginResult{}, err
	}
	var cred *Credential
	for i := range creds {
		if req.Tenant != "" && creds[i].Tenant != req.Tenant {
			continue
		}
		if s.checkRegion(ctx, creds[i].Tenant) != nil {
			continue
		}
		if cred != nil {
			return LoginResult{}, domain.Errorf(domain.CodeInvalid, "this e-mail address is registered in several tenants: name the tenant")
		}
		cred = &creds[i]
	}
	if cred == nil {
		// Spend what a failed login of an account spends: a password check
		// of the same cost, a write, the log's append when the tenant is
		// known, and then the typical time of the rest.
		CheckPassword(dummyHash(), req.Password)
		if req.Tenant != "" {
			s.recordUnknownUser(ctx, req.Tenant)
		}
		err := s.nameFailure(ctx, req.Tenant, idx)
		s.padLogin(ctx, start)
		return LoginResult{}, err
	}

	// The secrets are checked once, whatever the retries on a version
	// clash: a TOTP code is used up by its check.
	var (
		pwChecked, pwOK     bool
		totpChecked, totpOK bool
	)
	res, err := retry(ctx, func() (LoginResult, error) {
		tech, err := s.loadTechnician(ctx, cred.Tenant, cred.TechnicianID)
		if err != nil {
			return LoginResult{}, err
		}
		g, err := s.loadGroup(ctx, cred.Tenant, tech.GroupID())
		if err != nil {
			return LoginResult{}, err
		}
		policy := g.Policy()
		if req.NewPassword != "" {
			if err := checkNewPassword(policy.Password, req.NewPassword); err != nil {
				return LoginResult{}, err
			}
		}
		if !pwChecked {
			pwOK, pwChecked = CheckPassword(cred.PasswordHash, req.Password), true
		}
		attempt := domain.LoginAttempt{IP: req.IP, PasswordOK: pwOK}
		if tech.TwoFactorEnrolled() && pwOK {
			if !totpChecked {
				if totpOK, err = s.checkTOTP(ctx, cred, cred.TOTPSecret, req.TOTP); err != nil {
					return LoginResult{}, err
				}
				totpChecked = true
			}
			attempt.SecondFactorOK = totpOK
		}
		actor := domain.Actor{Kind: domain.ActorTechnician, ID: tech.ID()}
		cmd := domain.Cmd{Actor: actor, At: s.Now()}
		res, events, decided := tech.Login(cmd, attempt, g)
		if decided == nil && res.MustChangePassword {
			if req.NewPassword == "" {
				// Record the successful authentication, then ask for the
				// change: the console retries with new_password.
				if _, err := s.commit(ctx, tech, events, nil); err != nil {
					return LoginResult{}, err
				}
				return LoginResult{}, &domain.Error{Code: domain.CodePasswordChange, Message: "a password change is required: log in again with new_password"}
			}
			more, err := tech.ChangePassword(cmd, req.NewPassword, policy.Password)
			if err != nil {
				return LoginResult{}, err
			}
			events = append(events, more...)
		}
		if _, err := s.commit(ctx, tech, events, decided); err != nil {
			return LoginResult{}, err
		}
		if req.NewPassword != "" && res.MustChangePassword {
			hash, err := HashPassword(req.NewPassword)
			if err != nil {
				return LoginResult{}, err
			}
			if err := s.ids.UpdatePassword(ctx, cred.Tenant, cred.TechnicianID, hash, cmd.At); err != nil {
				return LoginResult{}, err
			}
		}
		scope := ScopeFull
		if res.MustEnrollSecondFactor {
			scope = ScopeTOTPEnroll
		}
		return s.issueToken(ctx, cred.Tenant, tech.ID(), scope, policy.ConsoleInactivityTimeout.Duration())
	})
	switch domain.ErrorCode(err) {
	case domain.CodeDisabled, domain.CodeIPNotAllowed, domain.CodeForbidden:
		if !pwOK {
			// Refused before the password counted: without the right
			// password, answer as for a name with no account.
			err = s.nameFailure(ctx, req.Tenant, idx)
		}
	case domain.CodeLockedOut:
		err = errLockedOut()
	case domain.CodeUnauthenticated:
		if !pwOK {
			err = errBadLogin()
		}
	}
	if failedLogin(err) {
		s.loginTime.observe(time.Since(start))
	}
	return res, err
}

func checkNewPassword(p domain.PasswordPolicy, pw string) error {
	if err := p.Check(pw); err != nil {
		var de *domain.Error
		if errors.As(err, &de) {
			return &WeakPasswordError{Err: de, Strength: PasswordStrength(pw)}
		}
		return err
	}
	return nil
}

// WeakPasswordError is a refused password with its strength score (0–4),
// for the console's meter. It matches domain.ErrWeakPassword.
type WeakPasswordError struct {
	Err      *domain.Error
	Strength int
}

// Error implements error.
func (e *WeakPasswordError) Error() string { return e.Err.Error() }

// Unwrap returns the coded error.
func (e *WeakPasswordError) Unwrap() error { return e.Err }

func (s *Service) recordUnknownUser(ctx context.Context, tenant string) {
	if _, err := s.ids.Tenant(ctx, tenant); err != nil {
		return // not a tenant: nothing to record it on
	}
	t := domain.NewTenant(tenant)
	e, err := domain.NewEvent(domain.Meta{Tenant: tenant, Stream: t.Stream(), Actor: domain.Actor{Kind: domain.ActorSystem, ID: "auth"}, OccurredAt: s.Now()},
		domain.LoginFailed{Reason: domain.LoginUnknownUser})
	if err != nil {
		s.logger.Error("record unknown-user login", "err", err)
		return
	}
	if _, err := s.log.Append(ctx, t.Stream(), -1, e); err != nil {
		s.logger.Error("record unknown-user login", "err", err)
	}
}

func (s *Service) issueToken(ctx context.Context, tenant, technicianID, scope string, timeout time.Duration) (LoginResult, error) {
	if timeout <= 0 || timeout > maxTokenLifetime {
		timeout = maxTokenLifetime
	}
	id, secret, full, err := newCredential(TokenPrefix)
	if err != nil {
		return LoginResult{}, err
	}
	now := s.Now()
	t := Token{ID: id, Tenant: tenant, TechnicianID: technicianID, Hash: hashSecret(secret), Scope: scope, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(timeout)}
	if err := s.ids.CreateToken(ctx, t); err != nil {
		return LoginResult{}, err
	}
	return LoginResult{Token: full, ExpiresAt: t.ExpiresAt, TechnicianID: technicianID, Tenant: tenant, Scope: scope}, nil
}

func totpOpts() totp.ValidateOpts {
	return totp.ValidateOpts{Period: totpPeriod, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}
}

// checkTOTP reports whether code is valid now for the sealed secret (the
// step before and after count too, for clocks that drift) and was not
// accepted before: the step it belongs to is recorded for the technician,
// atomically in the identity store, so that a code is accepted once across
// every node; a code of that step or an earlier one is refused.
func (s *Service) checkTOTP(ctx context.Context, cred *Credential, sealed []byte, code string) (bool, error) {
	if len(sealed) == 0 || len(code) != 6 {
		return false, nil
	}
	secret, err := s.crypto.OpenSecret(ctx, cred.Tenant, domain.TechnicianSubject(cred.TechnicianID), totpPurpose, sealed)
	if err != nil {
		s.logger.Warn("TOTP secret does not open", "technician", cred.TechnicianID, "err", err)
		return false, nil
	}
	step, ok := totpStep(string(secret), code, s.Now())
	if !ok {
		return false, nil
	}
	return s.ids.UseTOTPStep(ctx, cred.Tenant, cred.TechnicianID, step)
}

// totpPeriod is the TOTP time step, in seconds.
const totpPeriod = 30

// totpStep returns the time step (Unix time / 30) among now's and its
// neighbours whose code is code.
func totpStep(secret, code string, now time.Time) (int64, bool) {
	step := now.Unix() / totpPeriod
	for _, st := range []int64{step - 1, step, step + 1} {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(st*totpPeriod, 0).UTC(), totpOpts())
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return st, true
		}
	}
	return 0, false
}

// TOTPEnrollment is a second factor being enrolled.
type TOTPEnrollment struct {
	Secret     string
	OTPAuthURL string
	Enrolled   bool
}

// EnrollTOTP enrols the calling technician's second factor in two steps:
// without a code it creates a secret (sealed under the technician's data
// key) and returns it; with a code it checks the code against that secret,
// records technician.two_factor_enrolled and lifts a token of scope
// totp_enroll to full. It returns forbidden for anyone but a technician,
// unauthenticated for a wrong code, and conflict for a code without a
// pending enrolment.
func (s *Service) EnrollTOTP(ctx context.Context, p Principal, code string) (TOTPEnrollment, error) {
	if p.Role != RoleTechnician {
		return TOTPEnrollment{}, errForbidden("only a technician enrols a second factor")
	}
	cred, err := s.ids.Credential(ctx, p.Tenant, p.TechnicianID)
	if err != nil {
		return TOTPEnrollment{}, err
	}
	subject := domain.TechnicianSubject(p.TechnicianID)
	if code == "" {
		key, err := totp.Generate(totp.GenerateOpts{Issuer: s.issuer, AccountName: p.TechnicianID})
		if err != nil {
			return TOTPEnrollment{}, err
		}
		sealed, err := s.crypto.SealSecret(ctx, p.Tenant, subject, totpPurpose, []byte(key.Secret()))
		if err != nil {
			return TOTPEnrollment{}, err
		}
		if err := s.ids.SetTOTP(ctx, p.Tenant, p.TechnicianID, cred.TOTPSecret, sealed); err != nil {
			return TOTPEnrollment{}, err
		}
		return TOTPEnrollment{Secret: key.Secret(), OTPAuthURL: key.URL()}, nil
	}
	if len(cred.TOTPPending) == 0 {
		return TOTPEnrollment{}, &domain.Error{Code: domain.CodeConflict, Message: "no enrolment is pending: ask for a secret first", Err: domain.ErrConflict}
	}
	ok, err := s.checkTOTP(ctx, &cred, cred.TOTPPending, code)
	if err != nil {
		return TOTPEnrollment{}, err
	}
	if !ok {
		return TOTPEnrollment{}, errUnauthenticated("wrong second-factor code")
	}
	_, err = retry(ctx, func() ([]domain.Event, error) {
		tech, err := s.loadTechnician(ctx, p.Tenant, p.TechnicianID)
		if err != nil {
			return nil, err
		}
		events, err := tech.EnrollTwoFactor(s.cmd(p, [16]byte{}), "totp")
		if err != nil {
			return nil, err
		}
		return s.commit(ctx, tech, events, nil)
	})
	if err != nil {
		return TOTPEnrollment{}, err
	}
	if err := s.ids.SetTOTP(ctx, p.Tenant, p.TechnicianID, cred.TOTPPending, nil); err != nil {
		return TOTPEnrollment{}, err
	}
	if p.Scope != ScopeFull {
		if err := s.ids.SetTokenScope(ctx, p.CredentialID, ScopeFull); err != nil {
			return TOTPEnrollment{}, err
		}
	}
	return TOTPEnrollment{Enrolled: true}, nil
}

// Logout ends the calling technician's token and records
// technician.logged_out. Logging out twice is a no-op.
func (s *Service) Logout(ctx context.Context, p Principal) error {
	if p.Role != RoleTechnician {
		return errForbidden("only a technician token logs out")
	}
	return s.endToken(ctx, p.Tenant, p.TechnicianID, p.CredentialID, p.Actor(), domain.LogoutUser)
}

// endToken ends a token and records the logout. A technician with several
// consoles is logged out once: a second logout finds no open console and
// records nothing.
func (s *Service) endToken(ctx context.Context, tenant, technicianID, tokenID string, actor domain.Actor, reason domain.LogoutReason) error {
	ended, err := s.ids.EndToken(ctx, tokenID, s.Now())
	if err != nil || !ended {
		return err
	}
	_, err = retry(ctx, func() ([]domain.Event, error) {
		tech, err := s.loadTechnician(ctx, tenant, technicianID)
		if err != nil {
			return nil, err
		}
		events, err := tech.Logout(domain.Cmd{Actor: actor, At: s.Now()}, reason)
		if errors.Is(err, domain.ErrConflict) || errors.Is(err, domain.ErrDisabled) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return s.commit(ctx, tech, events, nil)
	})
	return err
}
