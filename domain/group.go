package domain

import (
	"net/netip"
	"slices"
	"strings"
)

// Group is the technician-group aggregate: permissions, policy and IP
// allowlist. It is not safe for concurrent use.
type Group struct {
	root
	id          string
	created     bool
	name        string
	perms       PermissionSet
	policy      GroupPolicy
	allowlist   []netip.Prefix
	allowBroken bool
}

// NewGroup returns the empty aggregate of group id in tenant, ready for
// Load or Create.
func NewGroup(tenant, id string) *Group {
	return &Group{root: root{tenant: tenant, stream: GroupStream(id)}, id: id}
}

// Load applies the group's stored events in order. It returns an error of
// code invalid for events of another stream, out of order, or undecodable.
func (g *Group) Load(events []Event) error { return g.load(events, g.apply) }

// ID returns the group's id.
func (g *Group) ID() string { return g.id }

// Exists reports whether the group was created.
func (g *Group) Exists() bool { return g.created }

// Name returns the group's name.
func (g *Group) Name() string { return g.name }

// Permissions returns the group's permissions.
func (g *Group) Permissions() PermissionSet { return g.perms }

// Has reports whether the group grants p.
func (g *Group) Has(p Permission) bool { return g.perms.Has(p) }

// Policy returns the group's policy.
func (g *Group) Policy() GroupPolicy { return g.policy }

// OneTimePromptEnabled reports whether technicians of the group may use the
// one-time prompt: the policy allows it and the permission is granted.
func (g *Group) OneTimePromptEnabled() bool {
	return g.policy.OneTimePromptAllowed && g.perms.Has(PermOneTimePrompt)
}

// IPAllowlist returns the allowed prefixes; empty means every address.
func (g *Group) IPAllowlist() []netip.Prefix { return slices.Clone(g.allowlist) }

// IPAllowed reports whether technicians of the group may log in from addr.
// An empty allowlist allows every address; otherwise addr (with an
// IPv4-mapped IPv6 address treated as IPv4) must fall in one prefix. A
// stored allowlist that no longer parses allows nothing.
func (g *Group) IPAllowed(addr netip.Addr) bool {
	if g.allowBroken {
		return false
	}
	if len(g.allowlist) == 0 {
		return true
	}
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range g.allowlist {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Create records group.created with the given name, permissions and policy
// (use DefaultGroupPolicy for the defaults). It returns an error of code
// conflict if the group exists and invalid for an empty name or an invalid
// policy.
func (g *Group) Create(cmd Cmd, name string, perms PermissionSet, policy GroupPolicy) ([]Event, error) {
	if g.created {
		return nil, coded(CodeConflict, ErrConflict, "group %s already exists", g.id)
	}
	if strings.TrimSpace(name) == "" {
		return nil, Errorf(CodeInvalid, "group without a name")
	}
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	return g.one(cmd, GroupCreated{Name: name, Permissions: perms, Policy: policy})
}

// SetPermissions records group.permissions_changed, or nothing when perms
// equals the current set. It returns an error of code not_found for a group
// that does not exist.
func (g *Group) SetPermissions(cmd Cmd, perms PermissionSet) ([]Event, error) {
	if err := g.mustExist(); err != nil {
		return nil, err
	}
	if perms == g.perms {
		return nil, nil
	}
	return g.one(cmd, PermissionsChanged{Permissions: perms})
}

// SetPolicy records group.policy_changed, or nothing when policy equals the
// current one. It returns an error of code not_found for a group that does
// not exist and invalid for an invalid policy.
func (g *Group) SetPolicy(cmd Cmd, policy GroupPolicy) ([]Event, error) {
	if err := g.mustExist(); err != nil {
		return nil, err
	}
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	if policy == g.policy {
		return nil, nil
	}
	return g.one(cmd, PolicyChanged{Policy: policy})
}

// SetIPAllowlist records group.ip_allowlist_changed with cidrs in canonical
// form: each entry is a CIDR prefix or a bare address (a single host),
// IPv4 or IPv6; host bits are masked off and duplicates dropped. It records
// nothing when the canonical list equals the current one, and returns an
// error of code invalid naming the first entry that does not parse.
func (g *Group) SetIPAllowlist(cmd Cmd, cidrs []string) ([]Event, error) {
	if err := g.mustExist(); err != nil {
		return nil, err
	}
	prefixes, err := ParseAllowlist(cidrs)
	if err != nil {
		return nil, err
	}
	canon := make([]string, len(prefixes))
	for i, p := range prefixes {
		canon[i] = p.String()
	}
	current := make([]string, len(g.allowlist))
	for i, p := range g.allowlist {
		current[i] = p.String()
	}
	if slices.Equal(canon, current) {
		return nil, nil
	}
	return g.one(cmd, IPAllowlistChanged{CIDRs: canon})
}

// ParseAllowlist parses allowlist entries (CIDR prefixes or bare addresses,
// IPv4 or IPv6) into masked prefixes, sorted and without duplicates. It
// returns an error of code invalid naming the first bad entry.
func ParseAllowlist(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		var p netip.Prefix
		if strings.Contains(c, "/") {
			var err error
			if p, err = netip.ParsePrefix(c); err != nil {
				return nil, Errorf(CodeInvalid, "allowlist entry %q is not a CIDR prefix", c)
			}
		} else {
			a, err := netip.ParseAddr(c)
			if err != nil || a.Zone() != "" {
				return nil, Errorf(CodeInvalid, "allowlist entry %q is not an address or CIDR prefix", c)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			a := p.Addr().Unmap()
			bits := p.Bits() - 96
			if bits < 0 {
				return nil, Errorf(CodeInvalid, "allowlist entry %q covers more than the IPv4-mapped range", c)
			}
			p = netip.PrefixFrom(a, bits)
		}
		out = append(out, p.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out), nil
}

func (g *Group) mustExist() error {
	if !g.created {
		return coded(CodeNotFound, ErrNotFound, "group %s does not exist", g.id)
	}
	return nil
}

func (g *Group) one(cmd Cmd, p Payload) ([]Event, error) {
	e, err := g.record(cmd, p, g.apply)
	if err != nil {
		return nil, err
	}
	return []Event{e}, nil
}

func (g *Group) apply(_ Event, p Payload) {
	switch p := p.(type) {
	case GroupCreated:
		g.created = true
		g.name = p.Name
		g.perms = p.Permissions
		g.policy = p.Policy
	case PermissionsChanged:
		g.perms = p.Permissions
	case PolicyChanged:
		g.policy = p.Policy
	case IPAllowlistChanged:
		list, err := ParseAllowlist(p.CIDRs)
		g.allowlist, g.allowBroken = list, err != nil
	}
}
