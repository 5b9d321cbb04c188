package service

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/vigilhq/vigil/domain"
)

func requireAdmin(p Principal) error {
	if p.Role != RoleAdmin {
		return errForbidden("this needs an admin API key")
	}
	return nil
}

// GroupView is a group as the API shows it.
type GroupView struct {
	ID          string               `json:"id"`
	Name        string               `json:"name"`
	Permissions domain.PermissionSet `json:"permissions"`
	Policy      domain.GroupPolicy   `json:"policy"`
	IPAllowlist []string             `json:"ip_allowlist"`
}

func groupView(g *domain.Group) GroupView {
	v := GroupView{ID: g.ID(), Name: g.Name(), Permissions: g.Permissions(), Policy: g.Policy(), IPAllowlist: []string{}}
	for _, p := range g.IPAllowlist() {
		v.IPAllowlist = append(v.IPAllowlist, p.String())
	}
	return v
}

// GroupChange is a new group, or the parts of a group to replace.
type GroupChange struct {
	Name        *string
	Permissions *domain.PermissionSet
	Policy      *domain.GroupPolicy
	IPAllowlist *[]string
}

// CreateGroup creates a technician group (admin only). An omitted policy is
// the default policy, omitted permissions are all refused, an omitted
// allowlist allows every address. eventID, when set, is the id of the first
// event (idempotent requests).
func (s *Service) CreateGroup(ctx context.Context, p Principal, c GroupChange, eventID [16]byte) (GroupView, error) {
	if err := requireAdmin(p); err != nil {
		return GroupView{}, err
	}
	if c.Name == nil || strings.TrimSpace(*c.Name) == "" {
		return GroupView{}, domain.Errorf(domain.CodeInvalid, "a group needs a name")
	}
	perms := domain.PermissionSet{}
	if c.Permissions != nil {
		perms = *c.Permissions
	}
	policy := domain.DefaultGroupPolicy()
	if c.Policy != nil {
		policy = *c.Policy
	}
	id, _, _, err := newCredential("g")
	if err != nil {
		return GroupView{}, err
	}
	g := domain.NewGroup(p.Tenant, id)
	cmd := s.cmd(p, eventID)
	events, err := g.Create(cmd, strings.TrimSpace(*c.Name), perms, policy)
	if err != nil {
		return GroupView{}, err
	}
	if c.IPAllowlist != nil && len(*c.IPAllowlist) > 0 {
		cmd.EventID = [16]byte{}
		more, err := g.SetIPAllowlist(cmd, *c.IPAllowlist)
		if err != nil {
			return GroupView{}, err
		}
		events = append(events, more...)
	}
	if _, err := s.log.Append(ctx, g.Stream(), 0, events...); err != nil {
		return GroupView{}, err
	}
	return groupView(g), nil
}

// UpdateGroup replaces the parts of group id that c names (admin only);
// unchanged values record nothing.
func (s *Service) UpdateGroup(ctx context.Context, p Principal, id string, c GroupChange, eventID [16]byte) (GroupView, error) {
	if err := requireAdmin(p); err != nil {
		return GroupView{}, err
	}
	if c.Name != nil {
		return GroupView{}, domain.Errorf(domain.CodeInvalid, "a group's name cannot be changed")
	}
	return retry(ctx, func() (GroupView, error) {
		g, err := s.loadGroup(ctx, p.Tenant, id)
		if err != nil {
			return GroupView{}, err
		}
		cmd := s.cmd(p, eventID)
		var events []domain.Event
		add := func(evs []domain.Event, err error) error {
			if err != nil {
				return err
			}
			if len(evs) > 0 {
				cmd.EventID = [16]byte{} // only the first event takes the request's id
			}
			events = append(events, evs...)
			return nil
		}
		if c.Permissions != nil {
			if err := add(g.SetPermissions(cmd, *c.Permissions)); err != nil {
				return GroupView{}, err
			}
		}
		if c.Policy != nil {
			if err := add(g.SetPolicy(cmd, *c.Policy)); err != nil {
				return GroupView{}, err
			}
		}
		if c.IPAllowlist != nil {
			if err := add(g.SetIPAllowlist(cmd, *c.IPAllowlist)); err != nil {
				return GroupView{}, err
			}
		}
		if _, err := s.commit(ctx, g, events, nil); err != nil {
			return GroupView{}, err
		}
		return groupView(g), nil
	})
}

// Group returns group id (admin and auditor).
func (s *Service) Group(ctx context.Context, p Principal, id string) (GroupView, error) {
	if !p.Is(RoleAdmin, RoleAuditor) {
		return GroupView{}, errForbidden("this needs an admin or auditor API key")
	}
	g, err := s.loadGroup(ctx, p.Tenant, id)
	if err != nil {
		return GroupView{}, err
	}
	return groupView(g), nil
}

// GroupExists reports whether id names a group of p's tenant, whatever
// p's role: a reference to a group in another resource (a webhook's
// group_id) is checked before it is stored. A malformed id names no group.
func (s *Service) GroupExists(ctx context.Context, p Principal, id string) (bool, error) {
	if p.Tenant == "" || !ValidID(id) {
		return false, nil
	}
	_, err := s.loadGroup(ctx, p.Tenant, id)
	switch {
	case err == nil:
		return true, nil
	case domain.ErrorCode(err) == domain.CodeNotFound:
		return false, nil
	}
	return false, err
}

// NewTechnician is a technician to create.
type NewTechnician struct {
	Email              string
	Name               string
	GroupID            string
	Password           string
	MustChangePassword bool
}

// TechnicianView is a technician as the API shows it.
type TechnicianView struct {
	ID           string `json:"id"`
	GroupID      string `json:"group_id"`
	Email        string `json:"email,omitempty"`
	Name         string `json:"name,omitempty"`
	Locked       bool   `json:"locked"`
	Disabled     bool   `json:"disabled"`
	TwoFactor    bool   `json:"two_factor"`
	MustChangePW bool   `json:"must_change_password"`
	SSODisabled  bool   `json:"sso_disabled"`
}

// CreateTechnician creates a technician in a group of the tenant (admin
// only): the credential (scrypt hash, e-mail blind index) outside the log,
// technician.created (name and e-mail sealed) in it. Errors: invalid for a
// missing field or a malformed e-mail; not_found for an unknown group;
// weak_password for a password the group's policy refuses; conflict for an
// e-mail already registered in the tenant.
func (s *Service) CreateTechnician(ctx context.Context, p Principal, n NewTechnician, eventID [16]byte) (TechnicianView, error) {
	if err := requireAdmin(p); err != nil {
		return TechnicianView{}, err
	}
	return s.createTechnician(ctx, p, n, eventID, p.Actor())
}

// createTechnician is CreateTechnician recorded as actor's (an admin's, or
// the SSO service's when it provisions just in time).
func (s *Service) createTechnician(ctx context.Context, p Principal, n NewTechnician, eventID [16]byte, actor domain.Actor) (TechnicianView, error) {
	email := normalizeEmail(n.Email)
	name := strings.TrimSpace(n.Name)
	switch {
	case email == "" || name == "" || n.GroupID == "" || n.Password == "":
		return TechnicianView{}, domain.Errorf(domain.CodeInvalid, "email, name, group_id and password are required")
	case !validEmail(email):
		return TechnicianView{}, domain.Errorf(domain.CodeInvalid, "email %q is not an e-mail address", n.Email)
	}
	g, err := s.loadGroup(ctx, p.Tenant, n.GroupID)
	if err != nil {
		return TechnicianView{}, err
	}
	if err := checkNewPassword(g.Policy().Password, n.Password); err != nil {
		return TechnicianView{}, err
	}
	idx, err := s.crypto.BlindIndex(ctx, emailPurpose, email)
	if err != nil {
		return TechnicianView{}, err
	}
	hash, err := HashPassword(n.Password)
	if err != nil {
		return TechnicianView{}, err
	}
	id, _, _, err := newCredential("u")
	if err != nil {
		return TechnicianView{}, err
	}
	now := s.Now()
	// The credential goes first: its unique e-mail index is what refuses a
	// duplicate, before anything reaches the immutable log.
	if err := s.ids.CreateCredential(ctx, Credential{Tenant: p.Tenant, TechnicianID: id, EmailIndex: idx, PasswordHash: hash, UpdatedAt: now}); err != nil {
		if errors.Is(err, domain.ErrConflict) {
			return TechnicianView{}, &domain.Error{Code: domain.CodeConflict, Message: "a technician with this e-mail address exists in the tenant", Err: domain.ErrConflict}
		}
		return TechnicianView{}, err
	}
	t := domain.NewTechnician(p.Tenant, id)
	cmd := domain.Cmd{Actor: actor, At: s.Now(), EventID: eventID}
	events, err := t.Create(cmd, g.ID(), name, email)
	if err == nil && n.MustChangePassword {
		var more []domain.Event
		cmd.EventID = [16]byte{}
		more, err = t.RequirePasswordChange(cmd, "set by the administrator at creation")
		events = append(events, more...)
	}
	if err == nil {
		_, err = s.log.Append(ctx, t.Stream(), 0, events...)
	}
	if err != nil {
		if derr := s.ids.DeleteCredential(context.WithoutCancel(ctx), p.Tenant, id); derr != nil {
			s.logger.Error("remove the credential of a technician not created", "technician", id, "err", derr)
		}
		return TechnicianView{}, err
	}
	v := technicianView(t)
	v.Email, v.Name = email, name
	return v, nil
}

func technicianView(t *domain.Technician) TechnicianView {
	return TechnicianView{ID: t.ID(), GroupID: t.GroupID(), Disabled: t.Disabled(), TwoFactor: t.TwoFactorEnrolled(), MustChangePW: t.MustChangePassword(),
		SSODisabled: t.SSODisabled()}
}

func validEmail(e string) bool {
	local, domainPart, ok := strings.Cut(e, "@")
	return ok && local != "" && strings.Contains(domainPart, ".") && !strings.ContainsAny(e, " \t\r\n<>") && len(e) <= 254
}

// UnlockTechnician lifts a lockout (admin only); unlocking an unlocked
// technician records nothing.
func (s *Service) UnlockTechnician(ctx context.Context, p Principal, id string, eventID [16]byte) (TechnicianView, error) {
	return s.changeTechnician(ctx, p, id, func(t *domain.Technician, cmd domain.Cmd) ([]domain.Event, error) {
		if !t.Locked(cmd.At) && t.Failures() == 0 {
			return nil, nil
		}
		return t.Unlock(cmd, "unlocked by an administrator")
	}, eventID)
}

// DisableTechnician disables a technician and ends their console tokens
// (admin only).
func (s *Service) DisableTechnician(ctx context.Context, p Principal, id, reason string, eventID [16]byte) (TechnicianView, error) {
	if reason == "" {
		reason = "disabled by an administrator"
	}
	v, err := s.changeTechnician(ctx, p, id, func(t *domain.Technician, cmd domain.Cmd) ([]domain.Event, error) {
		if t.Disabled() {
			return nil, nil
		}
		return t.Disable(cmd, reason)
	}, eventID)
	if err != nil {
		return v, err
	}
	if _, err := s.ids.EndTechnicianTokens(ctx, p.Tenant, id, s.Now()); err != nil {
		return v, fmt.Errorf("end the tokens of disabled technician %s: %w", id, err)
	}
	return v, nil
}

func (s *Service) changeTechnician(ctx context.Context, p Principal, id string, decide func(*domain.Technician, domain.Cmd) ([]domain.Event, error), eventID [16]byte) (TechnicianView, error) {
	if err := requireAdmin(p); err != nil {
		return TechnicianView{}, err
	}
	return retry(ctx, func() (TechnicianView, error) {
		t, err := s.loadTechnician(ctx, p.Tenant, id)
		if err != nil {
			return TechnicianView{}, err
		}
		cmd := s.cmd(p, eventID)
		events, err := decide(t, cmd)
		if err != nil {
			return TechnicianView{}, err
		}
		if _, err := s.commit(ctx, t, events, nil); err != nil {
			return TechnicianView{}, err
		}
		v := technicianView(t)
		v.Locked = t.Locked(cmd.At)
		return v, nil
	})
}

// ParseIP parses a client address for the domain, the zero Addr for "".
func ParseIP(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, domain.Errorf(domain.CodeInvalid, "ip %q is not an IP address", s)
	}
	return a.Unmap(), nil
}
