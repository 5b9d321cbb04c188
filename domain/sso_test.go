package domain_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/domain"
)

var ssoAttempt = domain.SSOAttempt{IP: netip.MustParseAddr("192.0.2.10"), SSOID: "alice@example.com",
	IdPEntityID: "https://idp.example/metadata", AssertionID: "_a1"}

func TestSSOLoginRules(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, tc *domain.Technician, g *domain.Group)
		reason domain.SSOFailureReason
		code   string
	}{
		{name: "succeeds"},
		{name: "account disabled", reason: domain.SSODisabledAccount, code: domain.CodeDisabled, setup: func(t *testing.T, tc *domain.Technician, _ *domain.Group) {
			ok(t)(tc.Disable(byAdmin(at(time.Second)), "left"))
		}},
		{name: "SSO id disabled", reason: domain.SSOIDDisabled, code: domain.CodeDisabled, setup: func(t *testing.T, tc *domain.Technician, _ *domain.Group) {
			ok(t)(tc.DisableSSO(byAdmin(at(time.Second)), "lost laptop"))
		}},
		{name: "SSO id disabled then enabled", setup: func(t *testing.T, tc *domain.Technician, _ *domain.Group) {
			ok(t)(tc.DisableSSO(byAdmin(at(time.Second)), ""))
			ok(t)(tc.EnableSSO(byAdmin(at(2*time.Second)), ""))
		}},
		{name: "outside the allowlist", reason: domain.SSOIPNotAllowed, code: domain.CodeIPNotAllowed, setup: func(t *testing.T, _ *domain.Technician, g *domain.Group) {
			ok(t)(g.SetIPAllowlist(byAdmin(at(time.Second)), []string{"198.51.100.0/24"}))
		}},
		{name: "a password lockout does not refuse the IdP's login", setup: func(t *testing.T, tc *domain.Technician, g *domain.Group) {
			for i := 0; i < domain.DefaultLockoutThreshold; i++ {
				_, _, _ = tc.Login(byTech("alice", at(time.Second)), badPassword, g)
			}
			if !tc.Locked(at(2 * time.Second)) {
				t.Fatal("not locked")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGroup(t, "support", domain.GrantAll(), domain.DefaultGroupPolicy())
			tc := newTech(t, "alice", "support")
			if tt.setup != nil {
				tt.setup(t, tc, g)
			}
			evs, err := tc.SSOLogin(byTech("alice", at(time.Minute)), ssoAttempt, g)
			if tt.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				wantTypes(t, evs, "technician.sso_login_succeeded")
				if p := payload[domain.SSOLoginSucceeded](t, evs); p.SSOID != ssoAttempt.SSOID || p.IP != "192.0.2.10" || p.AssertionID != "_a1" {
					t.Fatalf("payload %+v", p)
				}
				if !tc.LoggedIn() {
					t.Fatal("not logged in after an SSO login")
				}
				return
			}
			wantTypes(t, evs, "technician.sso_login_failed")
			if domain.ErrorCode(err) != tt.code {
				t.Fatalf("error %v, want code %s", err, tt.code)
			}
			if got := payload[domain.SSOLoginFailed](t, evs).Reason; got != tt.reason {
				t.Fatalf("reason %s, want %s", got, tt.reason)
			}
		})
	}
}

func TestSSOOnlyRefusesPasswordLogins(t *testing.T) {
	p := domain.DefaultGroupPolicy()
	p.SSOOnly = true
	g := newGroup(t, "support", domain.GrantAll(), p)
	tc := newTech(t, "alice", "support")
	_, evs, err := tc.Login(byTech("alice", at(time.Second)), good, g)
	wantErr(t, err, domain.CodeForbidden, domain.ErrForbidden)
	if got := payload[domain.LoginFailed](t, evs).Reason; got != domain.LoginSSORequired {
		t.Fatalf("reason %s", got)
	}
	if tc.Failures() != 0 {
		t.Fatal("an sso_required refusal counted towards the lockout")
	}
}

func TestChangeOwnPassword(t *testing.T) {
	p := domain.DefaultGroupPolicy()
	tests := []struct {
		name               string
		currentOK, totpOK  bool
		enrolled, required bool
		password           string
		refusal            domain.PasswordChangeRefusal
	}{
		{name: "without a second factor", currentOK: true, password: "Correct-Horse-9"},
		{name: "with a second factor", currentOK: true, enrolled: true, totpOK: true, password: "Correct-Horse-9"},
		{name: "wrong current password", enrolled: true, totpOK: true, password: "Correct-Horse-9", refusal: domain.PasswordChangeBadPassword},
		{name: "missing code", currentOK: true, enrolled: true, password: "Correct-Horse-9", refusal: domain.PasswordChangeSecondFactorFailed},
		{name: "group requires a factor not enrolled", currentOK: true, required: true, password: "Correct-Horse-9", refusal: domain.PasswordChangeSecondFactorRequired},
		{name: "weak", currentOK: true, password: "short", refusal: domain.PasswordChangeWeakPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := p
			pol.RequireSecondFactor = tt.required
			tc := newTech(t, "alice", "support")
			if tt.enrolled {
				ok(t)(tc.EnrollTwoFactor(byTech("alice", at(time.Second)), "totp"))
			}
			evs, err := tc.ChangeOwnPassword(byTech("alice", at(time.Minute)), netip.MustParseAddr("192.0.2.10"), tt.currentOK, tt.totpOK, tt.password, pol)
			if tt.refusal == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := payload[domain.PasswordChanged](t, evs); got.SecondFactor != tt.enrolled {
					t.Fatalf("second_factor = %v", got.SecondFactor)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if got := payload[domain.PasswordChangeRefused](t, evs); got.Reason != tt.refusal || got.IP != "192.0.2.10" {
				t.Fatalf("refusal %+v, want %s", got, tt.refusal)
			}
		})
	}
}

func TestTenantSSOConfiguration(t *testing.T) {
	tn := domain.NewTenant("acme")
	ok(t)(tn.Create(byAdmin(t0), "Acme", "eu", domain.DefaultRetention))
	c := domain.SSOConfigured{Protocol: "saml", Enabled: true, IdPEntityID: "https://idp.example/metadata", Metadata: "<md/>", MetadataSHA256: "ab"}
	evs, err := tn.ConfigureSSO(byAdmin(at(time.Second)), c)
	if err != nil || payload[domain.SSOConfigured](t, evs).Change != "configured" {
		t.Fatalf("first: %v %v", evs, err)
	}
	if evs, err := tn.ConfigureSSO(byAdmin(at(2*time.Second)), c); err != nil || len(evs) != 0 {
		t.Fatalf("the same again records %d events, %v", len(evs), err)
	}
	c.JITGroupID = "support"
	evs, err = tn.ConfigureSSO(byAdmin(at(3*time.Second)), c)
	if err != nil || payload[domain.SSOConfigured](t, evs).Change != "changed" {
		t.Fatalf("change: %v %v", evs, err)
	}
	if got, set := tn.SSO(); !set || got.JITGroupID != "support" {
		t.Fatalf("state %+v %v", got, set)
	}
	if _, err := tn.ConfigureSSO(byAdmin(at(4*time.Second)), domain.SSOConfigured{Protocol: "oidc"}); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Fatalf("another protocol: %v", err)
	}
}

func TestSetSSOID(t *testing.T) {
	tc := newTech(t, "alice", "support")
	evs := ok(t)(tc.SetSSOID(byAdmin(at(time.Second)), "00u1a2b3c4d5e6f7g8h9"))
	wantTypes(t, evs, "technician.sso_id_set")
	if p := payload[domain.SSOIDSet](t, evs); p.SSOID != "00u1a2b3c4d5e6f7g8h9" {
		t.Fatalf("payload %+v", p)
	}
	// The id is personal: sealed under the technician's key, never in data.
	if strings.Contains(string(evs[0].Data), "00u1a2b3") || len(evs[0].Personal) != 1 || evs[0].Personal[0].Name != "sso_id" {
		t.Fatalf("sso_id not sealed: data %s, personal %+v", evs[0].Data, evs[0].Personal)
	}
	ok(t)(tc.SetSSOID(byAdmin(at(2*time.Second)), "")) // clearing is recorded too
	for _, bad := range []string{strings.Repeat("x", domain.MaxSSOIDLength+1), "a\nb", "a\u0085b"} {
		evs, err := tc.SetSSOID(byAdmin(at(3*time.Second)), bad)
		wantErr(t, err, domain.CodeInvalid, nil)
		if len(evs) != 0 {
			t.Fatalf("%q recorded %d events", bad, len(evs))
		}
	}
	_, err := domain.NewTechnician("t1", "ghost").SetSSOID(byAdmin(at(time.Second)), "x")
	wantErr(t, err, domain.CodeNotFound, domain.ErrNotFound)
}
