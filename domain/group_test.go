package domain_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigilhq/vigil/domain"
)

func TestIPAllowlist(t *testing.T) {
	g := newGroup(t, "support", domain.GrantAll(), domain.DefaultGroupPolicy())
	tests := []struct {
		addr string
		want bool
	}{
		{"192.0.2.1", true}, // empty list allows everything
		{"2001:db8::1", true},
	}
	for _, tt := range tests {
		t.Run("empty/"+tt.addr, func(t *testing.T) {
			if got := g.IPAllowed(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("IPAllowed(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}

	evs := ok(t)(g.SetIPAllowlist(byAdmin(at(time.Minute)), []string{"10.1.2.3/8", " 203.0.113.7 ", "2001:db8:abcd::/48", "10.0.0.0/8", "::ffff:198.51.100.0/120"}))
	got := payload[domain.IPAllowlistChanged](t, evs).CIDRs
	want := []string{"10.0.0.0/8", "198.51.100.0/24", "203.0.113.7/32", "2001:db8:abcd::/48"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("canonical allowlist (-want +got):\n%s", diff)
	}

	tests = []struct {
		addr string
		want bool
	}{
		{"10.255.0.1", true},
		{"11.0.0.1", false},
		{"203.0.113.7", true},
		{"203.0.113.8", false},
		{"198.51.100.200", true},
		{"::ffff:10.9.9.9", true}, // IPv4-mapped IPv6 is treated as IPv4
		{"2001:db8:abcd:12::1", true},
		{"2001:db8:abce::1", false},
		{"fe80::1%eth0", false},
	}
	for _, tt := range tests {
		t.Run("list/"+tt.addr, func(t *testing.T) {
			if got := g.IPAllowed(netip.MustParseAddr(tt.addr)); got != tt.want {
				t.Errorf("IPAllowed(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
	if g.IPAllowed(netip.Addr{}) {
		t.Error("invalid address allowed by a non-empty list")
	}

	t.Run("unchanged list records nothing", func(t *testing.T) {
		wantTypes(t, ok(t)(g.SetIPAllowlist(byAdmin(at(time.Hour)), []string{"10.0.0.0/8", "198.51.100.0/24", "203.0.113.7", "2001:db8:abcd::/48"})))
	})
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "2001:db8::/129", "fe80::1%eth0", "", "::ffff:0.0.0.0/90"} {
		t.Run("invalid/"+bad, func(t *testing.T) {
			_, err := g.SetIPAllowlist(byAdmin(at(time.Hour)), []string{"10.0.0.0/8", bad})
			wantErr(t, err, domain.CodeInvalid, nil)
		})
	}
	t.Run("replay", func(t *testing.T) {
		replay := domain.NewGroup(tenant, "support")
		create := domain.NewGroup(tenant, "support")
		created := ok(t)(create.Create(byAdmin(t0), "Group support", domain.GrantAll(), domain.DefaultGroupPolicy()))
		if err := replay.Load(append(created, evs...)); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(g.IPAllowlist(), replay.IPAllowlist(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
			t.Errorf("replayed allowlist (-want +got):\n%s", diff)
		}
	})
	t.Run("clearing allows all again", func(t *testing.T) {
		ok(t)(g.SetIPAllowlist(byAdmin(at(2*time.Hour)), nil))
		if !g.IPAllowed(netip.MustParseAddr("11.0.0.1")) {
			t.Error("empty list refuses an address")
		}
	})
}

func TestGroupPolicyAndPermissions(t *testing.T) {
	g := domain.NewGroup(tenant, "support")
	_, err := g.SetPermissions(byAdmin(t0), domain.GrantAll())
	wantErr(t, err, domain.CodeNotFound, domain.ErrNotFound)
	_, err = g.Create(byAdmin(t0), " ", domain.GrantAll(), domain.DefaultGroupPolicy())
	wantErr(t, err, domain.CodeInvalid, nil)

	created := payload[domain.GroupCreated](t, ok(t)(g.Create(byAdmin(t0), "Support", domain.Grant(domain.PermRemoteControl), domain.DefaultGroupPolicy())))
	if diff := cmp.Diff(domain.GroupCreated{Name: "Support", Permissions: domain.PermissionSet{RemoteControl: true}, Policy: domain.DefaultGroupPolicy()}, created); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	if !g.Has(domain.PermRemoteControl) || g.Has(domain.PermReboot) {
		t.Errorf("permissions = %v", g.Permissions().Granted())
	}
	wantTypes(t, ok(t)(g.SetPermissions(byAdmin(t0), domain.Grant(domain.PermRemoteControl))))
	wantTypes(t, ok(t)(g.SetPermissions(byAdmin(t0), domain.GrantAll())), "group.permissions_changed")

	def := domain.DefaultGroupPolicy()
	if def.LockoutThreshold != 5 || def.LockoutDuration.Duration() != 15*time.Minute || def.Password.MinLength != 12 {
		t.Errorf("defaults = %+v", def)
	}
	bad := []struct {
		name   string
		change func(p *domain.GroupPolicy)
	}{
		{"zero threshold", func(p *domain.GroupPolicy) { p.LockoutThreshold = 0 }},
		{"zero lockout duration", func(p *domain.GroupPolicy) { p.LockoutDuration = 0 }},
		{"short passwords", func(p *domain.GroupPolicy) { p.Password.MinLength = 4 }},
		{"negative timeout", func(p *domain.GroupPolicy) { p.SessionInactivityTimeout = -1 }},
		{"negative max age", func(p *domain.GroupPolicy) { p.Password.MaxAge = -1 }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p := domain.DefaultGroupPolicy()
			tt.change(&p)
			_, err := g.SetPolicy(byAdmin(t0), p)
			wantErr(t, err, domain.CodeInvalid, nil)
		})
	}
	wantTypes(t, ok(t)(g.SetPolicy(byAdmin(t0), def)))
	p := def
	p.OneTimePromptAllowed = true
	wantTypes(t, ok(t)(g.SetPolicy(byAdmin(t0), p)), "group.policy_changed")
	if !g.OneTimePromptEnabled() {
		t.Error("one-time prompt not enabled with policy and permission")
	}
}

func TestTenant(t *testing.T) {
	tn := domain.NewTenant("acme")
	for _, region := range []string{"", "EU", "eu west", "-eu"} {
		t.Run("bad region "+region, func(t *testing.T) {
			_, err := tn.Create(byAdmin(t0), "Acme", region, domain.DefaultRetention)
			wantErr(t, err, domain.CodeInvalid, nil)
		})
	}
	_, err := tn.Create(byAdmin(t0), "Acme", "eu", domain.Retention{})
	wantErr(t, err, domain.CodeInvalid, nil)

	evs := ok(t)(tn.Create(byAdmin(t0), "Acme", "eu", domain.DefaultRetention))
	if diff := cmp.Diff(domain.TenantCreated{Name: "Acme", Region: "eu", Retention: domain.Retention{OnlineDays: 730, ArchiveDays: 730}}, payload[domain.TenantCreated](t, evs)); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	if evs[0].Stream != "tenant-acme" || evs[0].Tenant != "acme" {
		t.Errorf("stream %q tenant %q", evs[0].Stream, evs[0].Tenant)
	}
	_, err = tn.Create(byAdmin(t0), "Acme", "eu", domain.DefaultRetention)
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict)
	if err := tn.CheckRegion("eu"); err != nil {
		t.Errorf("CheckRegion(eu): %v", err)
	}
	wantErr(t, tn.CheckRegion("us"), domain.CodeForbidden, domain.ErrForbidden)

	replay := domain.NewTenant("acme")
	if err := replay.Load(evs); err != nil {
		t.Fatal(err)
	}
	if replay.Region() != "eu" || replay.Retention() != domain.DefaultRetention || replay.Name() != "Acme" {
		t.Errorf("replay: %q %+v", replay.Region(), replay.Retention())
	}
}
