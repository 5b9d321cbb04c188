package domain

import "strings"

// Tenant is the tenant aggregate: name, residency region and retention
// periods. It is not safe for concurrent use.
type Tenant struct {
	root
	id        string
	created   bool
	name      string
	region    string
	retention Retention
	sso       *SSOConfigured
}

// NewTenant returns the empty aggregate of tenant id, ready for Load or
// Create. A tenant's events belong to the tenant itself.
func NewTenant(id string) *Tenant {
	return &Tenant{root: root{tenant: id, stream: TenantStream(id)}, id: id}
}

// Load applies the tenant's stored events in order. It returns an error of
// code invalid for events of another stream, out of order, or undecodable.
func (t *Tenant) Load(events []Event) error { return t.load(events, t.apply) }

// ID returns the tenant's id.
func (t *Tenant) ID() string { return t.id }

// Exists reports whether the tenant was created.
func (t *Tenant) Exists() bool { return t.created }

// Name returns the tenant's name.
func (t *Tenant) Name() string { return t.name }

// Region returns the tenant's residency region.
func (t *Tenant) Region() string { return t.region }

// Retention returns the tenant's retention periods.
func (t *Tenant) Retention() Retention { return t.retention }

// SSO returns the tenant's single sign-on configuration, and false when
// none was ever configured.
func (t *Tenant) SSO() (SSOConfigured, bool) {
	if t.sso == nil {
		return SSOConfigured{}, false
	}
	return *t.sso, true
}

// ConfigureSSO records tenant.sso_configured with c, its Change set to
// "configured" or "changed"; the caller has parsed and checked the IdP
// metadata. It records nothing when c equals the configuration in force,
// and returns an error of code invalid for another protocol than "saml", an
// empty IdP entity id or empty metadata.
func (t *Tenant) ConfigureSSO(cmd Cmd, c SSOConfigured) ([]Event, error) {
	if !t.created {
		return nil, coded(CodeNotFound, ErrNotFound, "tenant %s does not exist", t.id)
	}
	if c.Protocol != "saml" || c.IdPEntityID == "" || c.Metadata == "" {
		return nil, Errorf(CodeInvalid, "single sign-on needs the saml protocol, an IdP entity id and its metadata")
	}
	c.Change = "configured"
	if t.sso != nil {
		c.Change = "changed"
		same := *t.sso
		same.Change = c.Change
		if same == c {
			return nil, nil
		}
	}
	e, err := t.record(cmd, c, t.apply)
	if err != nil {
		return nil, err
	}
	return []Event{e}, nil
}

// CheckRegion returns an error of code forbidden (matching ErrForbidden)
// when the tenant lives in another region than the deployment's: a
// deployment serves one region only.
func (t *Tenant) CheckRegion(deployment string) error {
	if t.region != deployment {
		return coded(CodeForbidden, ErrForbidden, "tenant %s lives in region %q, this deployment serves %q", t.id, t.region, deployment)
	}
	return nil
}

// Create records tenant.created. The region is a lower-case name of
// letters, digits and hyphens; retention periods must be at least one day.
// It returns an error of code conflict when the tenant exists and invalid
// for bad arguments.
func (t *Tenant) Create(cmd Cmd, name, region string, retention Retention) ([]Event, error) {
	if t.created {
		return nil, coded(CodeConflict, ErrConflict, "tenant %s already exists", t.id)
	}
	if strings.TrimSpace(name) == "" {
		return nil, Errorf(CodeInvalid, "tenant without a name")
	}
	if !validRegion(region) {
		return nil, Errorf(CodeInvalid, "region %q: want lower-case letters, digits and hyphens", region)
	}
	if retention.OnlineDays < 1 || retention.ArchiveDays < 0 {
		return nil, Errorf(CodeInvalid, "retention: want at least one day online and no negative archive period")
	}
	e, err := t.record(cmd, TenantCreated{Name: name, Region: region, Retention: retention}, t.apply)
	if err != nil {
		return nil, err
	}
	return []Event{e}, nil
}

// ChangeRetention records tenant.retention_changed; nothing when the
// periods are those in force. Periods must be at least one day online and
// no negative archive period. It returns an error of code not_found for a
// tenant that does not exist and invalid for bad periods.
func (t *Tenant) ChangeRetention(cmd Cmd, retention Retention) ([]Event, error) {
	if !t.created {
		return nil, coded(CodeNotFound, ErrNotFound, "tenant %s does not exist", t.id)
	}
	if retention.OnlineDays < 1 || retention.ArchiveDays < 0 {
		return nil, Errorf(CodeInvalid, "retention: want at least one day online and no negative archive period")
	}
	if retention == t.retention {
		return nil, nil
	}
	e, err := t.record(cmd, TenantRetentionChanged{Retention: retention, Previous: t.retention}, t.apply)
	if err != nil {
		return nil, err
	}
	return []Event{e}, nil
}

func validRegion(r string) bool {
	if r == "" || len(r) > 63 || r[0] == '-' || r[len(r)-1] == '-' {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func (t *Tenant) apply(_ Event, p Payload) {
	switch p := p.(type) {
	case TenantCreated:
		t.created = true
		t.name = p.Name
		t.region = p.Region
		t.retention = p.Retention
	case TenantRetentionChanged:
		t.retention = p.Retention
	case SSOConfigured:
		c := p
		t.sso = &c
	}
}
