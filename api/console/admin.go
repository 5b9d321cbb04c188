package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/webhooks"
)

// The Admin Center. Every change is the service command the HTTP API runs
// for the same change (CreateGroup, UpdateGroup, CreateTechnician,
// UnlockTechnician, DisableTechnician, the webhook service's Create and
// Replay), so it records the same events; API keys, kept outside the log,
// are created and revoked as `vigil apikey` does.

func (c *Console) admin(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	c.render(w, r, rc, http.StatusOK, "admin", "Admin Center", nil)
	return nil
}

func urlQuery(s string) string { return url.QueryEscape(s) }

// done redirects to path with a confirmation shown on the page.
func done(w http.ResponseWriter, r *http.Request, path, msg string) {
	http.Redirect(w, r, path+"?done="+url.QueryEscape(msg), http.StatusSeeOther)
}

func (c *Console) needDirectory() error {
	if c.opts.Directory == nil || c.opts.Log == nil {
		return domain.Errorf(domain.CodeNotFound, "the Admin Center is not configured on this node")
	}
	return nil
}

// policyField is one setting of a group policy as a form control.
type policyField struct {
	Name, Label string
	Bool        bool
	Checked     bool
	Value       string
}

// policyFields flattens a policy's JSON (nested objects with a dotted
// name) into form controls, in a stable order.
func policyFields(p domain.GroupPolicy) []policyField {
	raw, _ := json.Marshal(p)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	var out []policyField
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			name := prefix + k
			switch v := m[k].(type) {
			case bool:
				out = append(out, policyField{Name: name, Label: strings.ReplaceAll(name, "_", " "), Bool: true, Checked: v})
			case float64:
				out = append(out, policyField{Name: name, Label: strings.ReplaceAll(name, "_", " "), Value: strconv.FormatFloat(v, 'f', -1, 64)})
			case map[string]any:
				walk(name+".", v)
			}
		}
	}
	walk("", m)
	return out
}

// policyFromForm rebuilds a policy from the form, reading every setting the
// default policy has (an unchecked box is false).
func policyFromForm(r *http.Request) (domain.GroupPolicy, error) {
	m := map[string]any{}
	for _, f := range policyFields(domain.DefaultGroupPolicy()) {
		var v any
		if f.Bool {
			v = r.PostFormValue("policy."+f.Name) == "on"
		} else {
			n, err := strconv.ParseInt(strings.TrimSpace(r.PostFormValue("policy."+f.Name)), 10, 64)
			if err != nil {
				return domain.GroupPolicy{}, domain.Errorf(domain.CodeInvalid, "%s: want a whole number", f.Label)
			}
			v = n
		}
		parts := strings.Split(f.Name, ".")
		cur := m
		for _, p := range parts[:len(parts)-1] {
			next, _ := cur[p].(map[string]any)
			if next == nil {
				next = map[string]any{}
				cur[p] = next
			}
			cur = next
		}
		cur[parts[len(parts)-1]] = v
	}
	raw, _ := json.Marshal(m)
	p := domain.DefaultGroupPolicy()
	if err := service.DecodeStrict(raw, &p); err != nil {
		return p, err
	}
	return p, nil
}

type permField struct {
	Name    string
	Checked bool
}

func permFields(s domain.PermissionSet) []permField {
	raw, _ := json.Marshal(s)
	var m map[string]bool
	_ = json.Unmarshal(raw, &m)
	out := make([]permField, 0, 15)
	for _, p := range domain.Permissions() {
		out = append(out, permField{Name: string(p), Checked: m[string(p)]})
	}
	return out
}

func permsFromForm(r *http.Request) (domain.PermissionSet, error) {
	m := map[string]bool{}
	for _, p := range domain.Permissions() {
		m[string(p)] = r.PostFormValue("perm."+string(p)) == "on"
	}
	raw, _ := json.Marshal(m)
	var s domain.PermissionSet
	err := service.DecodeStrict(raw, &s)
	return s, err
}

type groupForm struct {
	ID, Name    string
	Perms       []permField
	Policy      []policyField
	IPAllowlist string
}

func (c *Console) groups(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	if err := c.needDirectory(); err != nil {
		return err
	}
	ids, err := c.opts.Directory.GroupIDs(r.Context(), rc.p.Tenant)
	if err != nil {
		return err
	}
	var d struct {
		Groups []groupForm
		New    groupForm
	}
	for _, id := range ids {
		g, err := c.opts.Service.Group(r.Context(), rc.p, id)
		if err != nil {
			return err
		}
		d.Groups = append(d.Groups, groupForm{ID: g.ID, Name: g.Name, Perms: permFields(g.Permissions), Policy: policyFields(g.Policy),
			IPAllowlist: strings.Join(g.IPAllowlist, "\n")})
	}
	sort.Slice(d.Groups, func(i, j int) bool { return d.Groups[i].Name < d.Groups[j].Name })
	d.New = groupForm{Perms: permFields(domain.PermissionSet{}), Policy: policyFields(domain.DefaultGroupPolicy())}
	c.render(w, r, rc, http.StatusOK, "groups", "Groups", d)
	return nil
}

// groupSave creates a group (no id) or replaces a group's name,
// permissions, policy and allowlist.
func (c *Console) groupSave(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	name := strings.TrimSpace(r.PostFormValue("name"))
	perms, err := permsFromForm(r)
	if err != nil {
		return err
	}
	pol, err := policyFromForm(r)
	if err != nil {
		return err
	}
	allow := append([]string{}, strings.Fields(r.PostFormValue("ip_allowlist"))...)
	ch := service.GroupChange{Name: &name, Permissions: &perms, Policy: &pol, IPAllowlist: &allow}
	if id := r.PostFormValue("id"); id != "" {
		ch.Name = nil // a group's name is fixed at creation
		if _, err := c.opts.Service.UpdateGroup(r.Context(), rc.p, id, ch, [16]byte{}); err != nil {
			return err
		}
		done(w, r, Prefix+"admin/groups", "Group "+name+" saved.")
		return nil
	}
	if _, err := c.opts.Service.CreateGroup(r.Context(), rc.p, ch, [16]byte{}); err != nil {
		return err
	}
	done(w, r, Prefix+"admin/groups", "Group "+name+" created.")
	return nil
}

type techRow struct {
	ID, Name, Email, GroupID string
	Locked, Disabled, TOTP   bool
	SSODisabled              bool
	MustChangePassword       bool
}

func (c *Console) technicians(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	if err := c.needDirectory(); err != nil {
		return err
	}
	ctx := r.Context()
	ids, err := c.opts.Directory.TechnicianIDs(ctx, rc.p.Tenant)
	if err != nil {
		return err
	}
	now := c.opts.Service.Now()
	var d struct {
		Rows   []techRow
		Groups []string
	}
	for _, id := range ids {
		evs, err := c.opts.Log.Load(ctx, rc.p.Tenant, domain.TechnicianStream(id))
		if err != nil {
			return err
		}
		t := domain.NewTechnician(rc.p.Tenant, id)
		if err := t.Load(evs); err != nil {
			return err
		}
		row := techRow{ID: id, GroupID: t.GroupID(), Locked: t.Locked(now), Disabled: t.Disabled(), TOTP: t.TwoFactorEnrolled(), MustChangePassword: t.MustChangePassword(), SSODisabled: t.SSODisabled()}
		for _, e := range evs {
			if e.Type != "technician.created" {
				continue
			}
			for _, f := range e.Personal {
				var s string
				_ = json.Unmarshal(f.Value, &s)
				if f.Erased {
					s = "[erased]"
				}
				switch f.Name {
				case "name":
					row.Name = s
				case "email":
					row.Email = s
				}
			}
		}
		d.Rows = append(d.Rows, row)
	}
	if d.Groups, err = c.opts.Directory.GroupIDs(ctx, rc.p.Tenant); err != nil {
		return err
	}
	c.render(w, r, rc, http.StatusOK, "technicians", "Technicians", d)
	return nil
}

func (c *Console) technicianCreate(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	t, err := c.opts.Service.CreateTechnician(r.Context(), rc.p, service.NewTechnician{
		Email: r.PostFormValue("email"), Name: r.PostFormValue("name"), GroupID: r.PostFormValue("group_id"),
		Password: r.PostFormValue("password"), MustChangePassword: r.PostFormValue("must_change_password") == "on",
	}, [16]byte{})
	if err != nil {
		return err
	}
	done(w, r, Prefix+"admin/technicians", "Technician "+t.ID+" created.")
	return nil
}

func (c *Console) technicianChange(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	id := r.PathValue("id")
	var err error
	switch r.PathValue("action") {
	case "unlock":
		_, err = c.opts.Service.UnlockTechnician(r.Context(), rc.p, id, [16]byte{})
	case "disable":
		_, err = c.opts.Service.DisableTechnician(r.Context(), rc.p, id, strings.TrimSpace(r.PostFormValue("reason")), [16]byte{})
	case "disable-sso":
		_, err = c.opts.Service.DisableSSO(r.Context(), rc.p, id, strings.TrimSpace(r.PostFormValue("reason")), [16]byte{})
	case "enable-sso":
		_, err = c.opts.Service.EnableSSO(r.Context(), rc.p, id, strings.TrimSpace(r.PostFormValue("reason")), [16]byte{})
	default:
		return domain.Errorf(domain.CodeNotFound, "no such action")
	}
	if err != nil {
		return err
	}
	done(w, r, Prefix+"admin/technicians", "Technician "+id+": "+r.PathValue("action")+" done.")
	return nil
}

var keyRoles = []string{string(service.RoleAdmin), string(service.RoleAuditor), string(service.RoleIntegration), string(service.RoleIngest), string(service.RoleRelay)}

type keysPage struct {
	Keys            []service.APIKey
	Roles           []string
	Created, NewKey string
}

func (c *Console) keysData(r *http.Request, rc *reqctx) (keysPage, error) {
	if err := c.needDirectory(); err != nil {
		return keysPage{}, err
	}
	keys, err := c.opts.Directory.APIKeys(r.Context(), rc.p.Tenant)
	return keysPage{Keys: keys, Roles: keyRoles}, err
}

func (c *Console) keys(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	d, err := c.keysData(r, rc)
	if err != nil {
		return err
	}
	c.render(w, r, rc, http.StatusOK, "keys", "API keys", d)
	return nil
}

// keyCreate makes a key and shows its secret once, on this answer only.
func (c *Console) keyCreate(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	k, secret, err := c.opts.Service.CreateAPIKey(r.Context(), rc.p.Tenant, service.Role(r.PostFormValue("role")), strings.TrimSpace(r.PostFormValue("description")))
	if err != nil {
		return err
	}
	d, err := c.keysData(r, rc)
	if err != nil {
		return err
	}
	d.Created, d.NewKey = k.ID, secret
	c.render(w, r, rc, http.StatusCreated, "keys", "API keys", d)
	return nil
}

func (c *Console) keyRevoke(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	id := r.PathValue("id")
	keys, err := c.opts.Directory.APIKeys(r.Context(), rc.p.Tenant)
	if err != nil {
		return err
	}
	mine := false
	for _, k := range keys {
		mine = mine || k.ID == id
	}
	if !mine {
		return domain.Errorf(domain.CodeNotFound, "API key %s does not exist", id)
	}
	if id == rc.p.CredentialID {
		return domain.Errorf(domain.CodeConflict, "this is the key you are signed in with")
	}
	if err := c.opts.Service.RevokeAPIKey(r.Context(), id); err != nil {
		return err
	}
	done(w, r, Prefix+"admin/keys", "API key "+id+" revoked.")
	return nil
}

type webhookRow struct {
	webhooks.Subscription
	Deliveries []webhooks.Delivery
	Dead       []webhooks.Delivery
}

type webhooksPage struct {
	Rows          []webhookRow
	Created       string
	Secret        string
	EventTypesTip string
}

func (c *Console) webhooksData(r *http.Request, rc *reqctx) (webhooksPage, error) {
	if c.opts.Webhooks == nil {
		return webhooksPage{}, domain.Errorf(domain.CodeNotFound, "webhooks are not configured on this node")
	}
	subs, err := c.opts.Webhooks.List(r.Context(), rc.p)
	if err != nil {
		return webhooksPage{}, err
	}
	d := webhooksPage{EventTypesTip: "session.created session.closed"}
	for _, s := range subs {
		row := webhookRow{Subscription: s}
		if row.Deliveries, err = c.opts.Webhooks.Deliveries(r.Context(), rc.p, s.ID, webhooks.DeliveryFilter{Limit: 20}); err != nil {
			return d, err
		}
		if row.Dead, err = c.opts.Webhooks.Deliveries(r.Context(), rc.p, s.ID, webhooks.DeliveryFilter{State: "dead", Limit: 20}); err != nil {
			return d, err
		}
		d.Rows = append(d.Rows, row)
	}
	return d, nil
}

func (c *Console) webhooks(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	d, err := c.webhooksData(r, rc)
	if err != nil {
		return err
	}
	c.render(w, r, rc, http.StatusOK, "webhooks", "Webhooks", d)
	return nil
}

// webhookCreate subscribes and shows the signing secret once.
func (c *Console) webhookCreate(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	if c.opts.Webhooks == nil {
		return domain.Errorf(domain.CodeNotFound, "webhooks are not configured on this node")
	}
	s, err := c.opts.Webhooks.Create(r.Context(), rc.p, webhooks.NewSubscription{
		URL: strings.TrimSpace(r.PostFormValue("url")), EventTypes: strings.Fields(r.PostFormValue("event_types")),
		GroupID: strings.TrimSpace(r.PostFormValue("group_id")), ExcludeChat: r.PostFormValue("exclude_chat") == "on",
		Description: strings.TrimSpace(r.PostFormValue("description")),
	})
	if err != nil {
		return err
	}
	d, err := c.webhooksData(r, rc)
	if err != nil {
		return err
	}
	d.Created, d.Secret = s.ID, s.Secret
	c.render(w, r, rc, http.StatusCreated, "webhooks", "Webhooks", d)
	return nil
}

// webhookReplay queues again the deliveries since a date (default: the
// last 24 hours), dead letters included.
func (c *Console) webhookReplay(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	if c.opts.Webhooks == nil {
		return domain.Errorf(domain.CodeNotFound, "webhooks are not configured on this node")
	}
	since := c.opts.Service.Now().Add(-24 * time.Hour)
	if v := r.PostFormValue("since"); v != "" {
		t, err := parseDay(v, false)
		if err != nil {
			return err
		}
		since = t
	}
	n, err := c.opts.Webhooks.Replay(r.Context(), rc.p, r.PathValue("id"), since)
	if err != nil {
		return err
	}
	done(w, r, Prefix+"admin/webhooks", strconv.FormatInt(n, 10)+" deliveries queued again.")
	return nil
}

type tenantPage struct {
	ID, Name, Region        string
	Retention               []kv
	OnlineDays, ArchiveDays int
	Events                  []service.TimelineEvent
}

// tenant shows the tenant's settings as its stream records them.
func (c *Console) tenant(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	if err := c.needDirectory(); err != nil {
		return err
	}
	evs, err := c.opts.Log.Load(r.Context(), rc.p.Tenant, domain.TenantStream(rc.p.Tenant))
	if err != nil {
		return err
	}
	d := tenantPage{ID: rc.p.Tenant}
	var ret domain.Retention
	for _, e := range evs {
		switch e.Type {
		case "tenant.created":
			var tc domain.TenantCreated
			if json.Unmarshal(e.Data, &tc) == nil {
				d.Name, d.Region, ret = tc.Name, tc.Region, tc.Retention
			}
		case "tenant.retention_changed":
			var rc domain.TenantRetentionChanged
			if json.Unmarshal(e.Data, &rc) == nil {
				ret = rc.Retention
			}
		}
	}
	raw, _ := json.Marshal(ret)
	d.Retention = fields(raw)
	d.OnlineDays, d.ArchiveDays = ret.OnlineDays, ret.ArchiveDays
	d.Events = service.ToTimeline(evs, true)
	c.render(w, r, rc, http.StatusOK, "tenant", "Tenant settings", d)
	return nil
}

// tenantRetention sets the tenant's retention periods through the same
// service command as PUT /v1/tenant/retention (tenant.retention_changed).
func (c *Console) tenantRetention(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	online, err1 := strconv.Atoi(strings.TrimSpace(r.PostFormValue("online_days")))
	archive, err2 := strconv.Atoi(strings.TrimSpace(r.PostFormValue("archive_days")))
	if err1 != nil || err2 != nil {
		return domain.Errorf(domain.CodeInvalid, "retention periods are whole numbers of days")
	}
	got, err := c.opts.Service.ChangeRetention(r.Context(), rc.p, domain.Retention{OnlineDays: online, ArchiveDays: archive}, [16]byte{})
	if err != nil {
		return err
	}
	done(w, r, Prefix+"admin/tenant", fmt.Sprintf("Retention set: %d days online, then %d days archived.", got.OnlineDays, got.ArchiveDays))
	return nil
}
