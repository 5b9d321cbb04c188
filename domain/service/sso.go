package service

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/vigilhq/vigil/domain"
)

// AssertionStore is the replay cache of SAML assertions, shared by every
// node (adapters/postgres keeps it in PostgreSQL). Implementations are safe
// for concurrent use.
type AssertionStore interface {
	// ConsumeAssertion records assertionID of tenant as used until
	// expiresAt, atomically: it reports false, recording nothing, when the
	// id is recorded already (a replay), so that of two nodes accepting one
	// assertion at once exactly one gets true.
	ConsumeAssertion(ctx context.Context, tenant, assertionID string, expiresAt, now time.Time) (bool, error)
	// PurgeAssertions forgets ids whose expiresAt is before before and
	// returns how many.
	PurgeAssertions(ctx context.Context, before time.Time) (int, error)
}

// ssoActor records what the SSO service decides on its own (refusals
// before a technician is known, just-in-time provisioning).
var ssoActor = domain.Actor{Kind: domain.ActorSystem, ID: "sso"}

// SSOConfigView is a tenant's single sign-on configuration as the API
// shows it.
type SSOConfigView struct {
	Configured        bool   `json:"configured"`
	Protocol          string `json:"protocol,omitempty"`
	Enabled           bool   `json:"enabled"`
	IdPEntityID       string `json:"idp_entity_id,omitempty"`
	MetadataURL       string `json:"metadata_url,omitempty"`
	MetadataSHA256    string `json:"metadata_sha256,omitempty"`
	IDAttribute       string `json:"id_attribute,omitempty"`
	JITGroupID        string `json:"jit_group_id,omitempty"`
	AllowIdPInitiated bool   `json:"allow_idp_initiated"`
}

func ssoView(c domain.SSOConfigured, ok bool) SSOConfigView {
	if !ok {
		return SSOConfigView{}
	}
	return SSOConfigView{Configured: true, Protocol: c.Protocol, Enabled: c.Enabled, IdPEntityID: c.IdPEntityID,
		MetadataURL: c.MetadataURL, MetadataSHA256: c.MetadataSHA256, IDAttribute: c.IDAttribute,
		JITGroupID: c.JITGroupID, AllowIdPInitiated: c.AllowIdPInitiated}
}

// SSOConfig returns tenant's single sign-on configuration, read from the
// tenant's stream (cached, refreshed with one query), so that a change made
// on another node is seen on the next request; false when none was set.
// It returns forbidden for a tenant of another region and not_found for
// no tenant.
func (s *Service) SSOConfig(ctx context.Context, tenant string) (domain.SSOConfigured, bool, error) {
	if !ValidID(tenant) {
		return domain.SSOConfigured{}, false, errNotFound("tenant does not exist")
	}
	if err := s.checkRegion(ctx, tenant); err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return domain.SSOConfigured{}, false, errNotFound("tenant %s does not exist", tenant)
		}
		return domain.SSOConfigured{}, false, err
	}
	t := domain.NewTenant(tenant)
	if err := s.load(ctx, t); err != nil {
		return domain.SSOConfigured{}, false, err
	}
	if !t.Exists() {
		return domain.SSOConfigured{}, false, errNotFound("tenant %s does not exist", tenant)
	}
	c, ok := t.SSO()
	return c, ok, nil
}

// SSOConfigView returns the calling admin's tenant's configuration (admin
// and auditor).
func (s *Service) SSOConfigView(ctx context.Context, p Principal) (SSOConfigView, error) {
	if !p.Is(RoleAdmin, RoleAuditor) {
		return SSOConfigView{}, errForbidden("this needs an admin or auditor API key")
	}
	c, ok, err := s.SSOConfig(ctx, p.Tenant)
	if err != nil {
		return SSOConfigView{}, err
	}
	return ssoView(c, ok), nil
}

// ConfigureSSO records the tenant's single sign-on configuration (admin
// only): tenant.sso_configured, or nothing when c is the configuration in
// force. The caller (the API, through package sso) has parsed the IdP's
// metadata and set IdPEntityID and MetadataSHA256. It returns not_found for
// a just-in-time group that does not exist and invalid for an incomplete
// configuration.
func (s *Service) ConfigureSSO(ctx context.Context, p Principal, c domain.SSOConfigured, eventID [16]byte) (SSOConfigView, error) {
	if err := requireAdmin(p); err != nil {
		return SSOConfigView{}, err
	}
	if c.JITGroupID != "" {
		if _, err := s.loadGroup(ctx, p.Tenant, c.JITGroupID); err != nil {
			return SSOConfigView{}, err
		}
	}
	return retry(ctx, func() (SSOConfigView, error) {
		t := domain.NewTenant(p.Tenant)
		if err := s.load(ctx, t); err != nil {
			return SSOConfigView{}, err
		}
		events, err := t.ConfigureSSO(s.cmd(p, eventID), c)
		if err != nil {
			return SSOConfigView{}, err
		}
		if _, err := s.commit(ctx, t, events, nil); err != nil {
			return SSOConfigView{}, err
		}
		got, ok := t.SSO()
		return ssoView(got, ok), nil
	})
}

// SSOLoginRequest is a login whose SAML response the SSO service
// validated: signature, issuer, audience, destination, recipient, request
// and validity period.
type SSOLoginRequest struct {
	Tenant string
	// SSOID is the NameID or the configured attribute's value.
	SSOID       string
	IdPEntityID string
	AssertionID string
	// ExpiresAt is when the assertion could no longer be accepted anyway:
	// its id is kept in the replay cache until then.
	ExpiresAt    time.Time
	IdPInitiated bool
	IP           netip.Addr
}

// SSOLogin turns a validated assertion into a technician token, as Login
// does for a password: the assertion is consumed in the shared replay cache
// (a second use, on any node, is refused as replayed); the SSO id is
// looked up first as a technician's SSO id (SetTechnicianSSOID), then as an
// e-mail address, both by their blind indexes in the tenant; an unknown id
// that is an e-mail address is provisioned into the configured group when just-in-time
// provisioning is on. Then the technician's own rules apply (disabled
// account, disabled SSO id, the group's IP allowlist; the token lives for
// the group's console inactivity timeout). Every outcome is recorded:
// technician.sso_login_succeeded or technician.sso_login_failed (on the
// tenant's stream, without personal data, while the technician is unknown).
// Errors: unauthenticated (replayed, unknown user), disabled,
// ip_not_allowed, not_found when SSO is not configured or is turned off.
func (s *Service) SSOLogin(ctx context.Context, req SSOLoginRequest) (LoginResult, error) {
	cfg, ok, err := s.SSOConfig(ctx, req.Tenant)
	if err != nil {
		return LoginResult{}, err
	}
	if !ok || !cfg.Enabled {
		return LoginResult{}, errNotFound("single sign-on is not configured for tenant %s", req.Tenant)
	}
	ssoID := normalizeSSOID(req.SSOID)
	attempt := domain.SSOAttempt{IP: req.IP, SSOID: ssoID, IdPEntityID: cfg.IdPEntityID, AssertionID: req.AssertionID, IdPInitiated: req.IdPInitiated}
	cred, err := s.ssoCredential(ctx, req.Tenant, ssoID)
	if err != nil {
		return LoginResult{}, err
	}
	fresh, err := s.consumeAssertion(ctx, req)
	if err != nil {
		return LoginResult{}, err
	}
	if !fresh {
		if cred == nil {
			s.RecordSSOFailure(ctx, req.Tenant, domain.SSOReplayed, req.AssertionID)
		} else {
			s.recordTechnicianSSOFailure(ctx, cred, attempt, domain.SSOReplayed)
		}
		return LoginResult{}, errUnauthenticated("this assertion was used already")
	}
	if cred == nil {
		if cfg.JITGroupID == "" || !validEmail(ssoID) {
			s.RecordSSOFailure(ctx, req.Tenant, domain.SSOUnknownUser, req.AssertionID)
			return LoginResult{}, errUnauthenticated("no technician has this single sign-on id")
		}
		if cred, err = s.provision(ctx, req.Tenant, cfg.JITGroupID, ssoID); err != nil {
			return LoginResult{}, err
		}
		attempt.Provisioned = true
	}
	return retry(ctx, func() (LoginResult, error) {
		tech, err := s.loadTechnician(ctx, cred.Tenant, cred.TechnicianID)
		if err != nil {
			return LoginResult{}, err
		}
		g, err := s.loadGroup(ctx, cred.Tenant, tech.GroupID())
		if err != nil {
			return LoginResult{}, err
		}
		cmd := domain.Cmd{Actor: domain.Actor{Kind: domain.ActorTechnician, ID: tech.ID()}, At: s.Now()}
		events, decided := tech.SSOLogin(cmd, attempt, g)
		if _, err := s.commit(ctx, tech, events, decided); err != nil {
			return LoginResult{}, err
		}
		return s.issueToken(ctx, cred.Tenant, tech.ID(), ScopeFull, g.Policy().ConsoleInactivityTimeout.Duration())
	})
}

// consumeAssertion records the assertion in the replay cache; without one
// (a service wired without it) every assertion is fresh, which the
// constructor prevents for PostgreSQL.
func (s *Service) consumeAssertion(ctx context.Context, req SSOLoginRequest) (bool, error) {
	if s.assertions == nil {
		return false, errors.New("no assertion replay cache is configured")
	}
	if req.AssertionID == "" {
		return false, domain.Errorf(domain.CodeInvalid, "an assertion without an id cannot be checked for replay")
	}
	return s.assertions.ConsumeAssertion(ctx, req.Tenant, req.AssertionID, req.ExpiresAt, s.Now())
}

// ssoIDPurpose separates the SSO id blind index from other indexes.
const ssoIDPurpose = "technician-sso-id"

// normalizeSSOID is the form an SSO id is indexed and compared in:
// trimmed and lower-cased (as e-mail addresses are; the opaque ids of
// Entra and Okta do not differ by case alone).
func normalizeSSOID(id string) string { return strings.ToLower(strings.TrimSpace(id)) }

// ssoCredential finds the technician of tenant whose SSO id is ssoID or,
// when none has it, whose e-mail address is ssoID; nil when none is. Both
// are read from the identity store (PostgreSQL), so every node agrees.
func (s *Service) ssoCredential(ctx context.Context, tenant, ssoID string) (*Credential, error) {
	if ssoID == "" {
		return nil, nil
	}
	sidx, err := s.crypto.BlindIndex(ctx, ssoIDPurpose, ssoID)
	if err != nil {
		return nil, err
	}
	cred, err := s.ids.CredentialBySSO(ctx, tenant, sidx)
	if err == nil {
		return &cred, nil
	}
	if !errors.Is(err, domain.ErrNotFound) {
		return nil, err
	}
	idx, err := s.crypto.BlindIndex(ctx, emailPurpose, ssoID)
	if err != nil {
		return nil, err
	}
	creds, err := s.ids.CredentialsByEmail(ctx, idx)
	if err != nil {
		return nil, err
	}
	for i := range creds {
		if creds[i].Tenant == tenant {
			return &creds[i], nil
		}
	}
	return nil, nil
}

// provision creates the technician of an unknown SSO id in group, with a
// random password nobody knows (the group's members log in through the IdP;
// an admin may still require a password change to give one).
func (s *Service) provision(ctx context.Context, tenant, groupID, email string) (*Credential, error) {
	g, err := s.loadGroup(ctx, tenant, groupID)
	if err != nil {
		return nil, fmt.Errorf("just-in-time group: %w", err)
	}
	// A random password nobody knows, long enough for any policy (at most
	// 256 characters) and holding every class a policy may require.
	raw := make([]byte, 192)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	password := ("Sso-9" + base64.RawURLEncoding.EncodeToString(raw))[:256]
	name, _, _ := strings.Cut(email, "@")
	p := Principal{Tenant: tenant, Role: RoleAdmin, CredentialID: "sso"}
	v, err := s.createTechnician(ctx, p, NewTechnician{Email: email, Name: name, GroupID: g.ID(), Password: password}, [16]byte{}, ssoActor)
	if errors.Is(err, domain.ErrConflict) {
		// Provisioned by a concurrent login.
		return s.ssoCredential(ctx, tenant, email)
	}
	if err != nil {
		return nil, err
	}
	cmd := domain.Cmd{Actor: ssoActor, At: s.Now()}
	if _, err := s.setSSOID(ctx, tenant, v.ID, email, func() domain.Cmd { return cmd }); err != nil {
		return nil, fmt.Errorf("store the SSO id of provisioned technician %s: %w", v.ID, err)
	}
	cred, err := s.ids.Credential(ctx, tenant, v.ID)
	if err != nil {
		return nil, err
	}
	return &cred, nil
}

// SetTechnicianSSOID sets technician id's SSO id (admin only): the value a
// SAML login's NameID, or the configured attribute, is matched against
// before e-mail addresses. It is stored normalized (trimmed, lower-cased)
// as a keyed blind index in the identity store and recorded, sealed, by
// technician.sso_id_set; "" clears it. Errors: invalid for an id over 256
// characters or with a control character, conflict when another
// technician of the tenant has the id, not_found, subject_erased.
func (s *Service) SetTechnicianSSOID(ctx context.Context, p Principal, id, ssoID string, eventID [16]byte) (TechnicianView, error) {
	if err := requireAdmin(p); err != nil {
		return TechnicianView{}, err
	}
	return s.setSSOID(ctx, p.Tenant, id, normalizeSSOID(ssoID), func() domain.Cmd { return s.cmd(p, eventID) })
}

// setSSOID stores the index, then records the event (as a password hash is
// stored before its event: a crash between the two leaves the id in force
// without its event, which setting it again records).
func (s *Service) setSSOID(ctx context.Context, tenant, id, ssoID string, cmd func() domain.Cmd) (TechnicianView, error) {
	var idx []byte
	if ssoID != "" {
		var err error
		if idx, err = s.crypto.BlindIndex(ctx, ssoIDPurpose, ssoID); err != nil {
			return TechnicianView{}, err
		}
	}
	return retry(ctx, func() (TechnicianView, error) {
		t, err := s.loadTechnician(ctx, tenant, id)
		if err != nil {
			return TechnicianView{}, err
		}
		c := cmd()
		events, err := t.SetSSOID(c, ssoID)
		if err != nil {
			return TechnicianView{}, err
		}
		if err := s.ids.SetSSOIndex(ctx, tenant, id, idx); err != nil {
			if errors.Is(err, domain.ErrConflict) {
				return TechnicianView{}, &domain.Error{Code: domain.CodeConflict, Message: "another technician of the tenant has this sso_id", Err: domain.ErrConflict}
			}
			return TechnicianView{}, err
		}
		if _, err := s.commit(ctx, t, events, nil); err != nil {
			return TechnicianView{}, err
		}
		v := technicianView(t)
		v.Locked = t.Locked(c.At)
		return v, nil
	})
}

// RecordSSOFailure records technician.sso_login_failed on the tenant's
// stream, without personal data: a refusal before any technician could be
// trusted to be named (a bad signature, an unknown user). Failing to record
// is logged, not returned: the login is refused either way.
func (s *Service) RecordSSOFailure(ctx context.Context, tenant string, reason domain.SSOFailureReason, assertionID string) {
	cfg, ok, err := s.SSOConfig(ctx, tenant)
	if err != nil || !ok {
		return // no tenant or no SSO: nothing to record it on
	}
	e, err := domain.NewEvent(domain.Meta{Tenant: tenant, Stream: domain.TenantStream(tenant), Actor: ssoActor, OccurredAt: s.Now()},
		domain.SSOLoginFailed{Reason: reason, IdPEntityID: cfg.IdPEntityID, AssertionID: assertionID})
	if err == nil {
		_, err = s.log.Append(context.WithoutCancel(ctx), domain.TenantStream(tenant), -1, e)
	}
	if err != nil {
		s.logger.Error("record SSO login failure", "tenant", tenant, "reason", reason, "err", err)
	}
}

func (s *Service) recordTechnicianSSOFailure(ctx context.Context, cred *Credential, a domain.SSOAttempt, reason domain.SSOFailureReason) {
	_, err := retry(ctx, func() ([]domain.Event, error) {
		tech, err := s.loadTechnician(ctx, cred.Tenant, cred.TechnicianID)
		if err != nil {
			return nil, err
		}
		cmd := domain.Cmd{Actor: domain.Actor{Kind: domain.ActorTechnician, ID: tech.ID()}, At: s.Now()}
		events, err := tech.RecordSSOFailure(cmd, a, reason)
		if err != nil {
			return nil, err
		}
		return s.commit(ctx, tech, events, nil)
	})
	if err != nil {
		s.logger.Error("record SSO login failure", "technician", cred.TechnicianID, "reason", reason, "err", err)
	}
}

// DisableSSO disables technician id's SSO id (admin only): every node
// refuses the technician's next SSO login (the technician's stream is read
// again on each login), and the technician's live tokens end. Disabling
// twice records nothing.
func (s *Service) DisableSSO(ctx context.Context, p Principal, id, reason string, eventID [16]byte) (TechnicianView, error) {
	if reason == "" {
		reason = "disabled by an administrator"
	}
	v, err := s.changeTechnician(ctx, p, id, func(t *domain.Technician, cmd domain.Cmd) ([]domain.Event, error) {
		return t.DisableSSO(cmd, reason)
	}, eventID)
	if err != nil {
		return v, err
	}
	if _, err := s.ids.EndTechnicianTokens(ctx, p.Tenant, id, s.Now()); err != nil {
		return v, fmt.Errorf("end the tokens of technician %s: %w", id, err)
	}
	return v, nil
}

// EnableSSO enables technician id's SSO id again (admin only); enabling an
// enabled id records nothing.
func (s *Service) EnableSSO(ctx context.Context, p Principal, id, reason string, eventID [16]byte) (TechnicianView, error) {
	if reason == "" {
		reason = "enabled by an administrator"
	}
	return s.changeTechnician(ctx, p, id, func(t *domain.Technician, cmd domain.Cmd) ([]domain.Event, error) {
		return t.EnableSSO(cmd, reason)
	}, eventID)
}

// RequirePasswordChange makes technician id change their password at the
// next login (admin only): technician.password_change_required, or nothing
// when a change is already due.
func (s *Service) RequirePasswordChange(ctx context.Context, p Principal, id, reason string, eventID [16]byte) (TechnicianView, error) {
	if reason == "" {
		reason = "required by an administrator"
	}
	return s.changeTechnician(ctx, p, id, func(t *domain.Technician, cmd domain.Cmd) ([]domain.Event, error) {
		return t.RequirePasswordChange(cmd, reason)
	}, eventID)
}

// PasswordChange is a technician's change of their own password.
type PasswordChange struct {
	Current string
	New     string
	// TOTP is the second-factor code, required when the technician enrolled
	// one.
	TOTP string
	IP   netip.Addr
}

// ChangePassword changes the calling technician's password: the current
// password must be right and, for a technician with a second factor, the
// TOTP code too (a code is accepted once); a group that requires a second
// factor refuses the change until one is enrolled. Every outcome is
// recorded (technician.password_changed with second_factor, or
// technician.password_change_refused), and attempts count against the
// client address like logins. Errors: forbidden for anyone but a
// technician; invalid without both passwords; unauthenticated for a wrong
// password or code; second_factor_required; weak_password; rate_limited.
func (s *Service) ChangePassword(ctx context.Context, p Principal, c PasswordChange) error {
	if p.Role != RoleTechnician {
		return errForbidden("only a technician changes their own password")
	}
	if c.Current == "" || c.New == "" {
		return domain.Errorf(domain.CodeInvalid, "current_password and new_password are required")
	}
	slot, err := s.reserveAddress(ctx, c.IP)
	if err != nil {
		return err
	}
	err = s.changePassword(ctx, p, c)
	if !failedLogin(err) {
		s.forgive(ctx, slot)
	}
	return err
}

func (s *Service) changePassword(ctx context.Context, p Principal, c PasswordChange) error {
	cred, err := s.ids.Credential(ctx, p.Tenant, p.TechnicianID)
	if err != nil {
		return err
	}
	currentOK := CheckPassword(cred.PasswordHash, c.Current)
	var (
		totpChecked, totpOK bool
		hash                string
	)
	_, err = retry(ctx, func() ([]domain.Event, error) {
		tech, err := s.loadTechnician(ctx, p.Tenant, p.TechnicianID)
		if err != nil {
			return nil, err
		}
		g, err := s.loadGroup(ctx, p.Tenant, tech.GroupID())
		if err != nil {
			return nil, err
		}
		if currentOK && tech.TwoFactorEnrolled() && !totpChecked {
			if totpOK, err = s.checkTOTP(ctx, &cred, cred.TOTPSecret, c.TOTP); err != nil {
				return nil, err
			}
			totpChecked = true
		}
		events, decided := tech.ChangeOwnPassword(s.cmd(p, [16]byte{}), c.IP, currentOK, totpOK, c.New, g.Policy())
		if decided != nil {
			if domain.ErrorCode(decided) == domain.CodeWeakPassword {
				decided = checkNewPassword(g.Policy().Password, c.New)
			}
			return s.commit(ctx, tech, events, decided)
		}
		if hash == "" {
			if hash, err = HashPassword(c.New); err != nil {
				return nil, err
			}
		}
		// The hash first: a crash between the two leaves the new password
		// in force without its event, rather than an event claiming a
		// change that did not happen.
		if err := s.ids.UpdatePassword(ctx, p.Tenant, p.TechnicianID, hash, s.Now()); err != nil {
			return nil, err
		}
		return s.commit(ctx, tech, events, nil)
	})
	return err
}

// ReserveSSOAttempt counts an attempt to log in through SSO from ip
// against the address's budget of failed logins (the one password logins
// use), before the response is looked at: every refusal is appended to the
// log, so an address that posts garbage is cut off as a password guesser
// is. The caller reports the outcome with done(failed); a success gives the
// slot back. It returns rate_limited (a *RateLimitedError) once the budget
// is spent.
func (s *Service) ReserveSSOAttempt(ctx context.Context, ip netip.Addr) (done func(failed bool), err error) {
	slot, err := s.reserveAddress(ctx, ip)
	if err != nil {
		return nil, err
	}
	return func(failed bool) {
		if !failed {
			s.forgive(ctx, slot)
		}
	}, nil
}

// purgeAssertions forgets replay-cache entries of assertions that could no
// longer be accepted anyway.
func (s *Service) purgeAssertions(ctx context.Context) {
	if s.assertions == nil {
		return
	}
	if _, err := s.assertions.PurgeAssertions(ctx, s.Now()); err != nil && ctx.Err() == nil {
		s.logger.Warn("purge SAML assertions", "err", err)
	}
}
