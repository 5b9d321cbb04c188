package domain_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigilhq/vigil/domain"
)

var good = domain.LoginAttempt{IP: netip.MustParseAddr("192.0.2.10"), PasswordOK: true}
var badPassword = domain.LoginAttempt{IP: netip.MustParseAddr("192.0.2.10")}

func policyWithLockout(threshold int, d time.Duration) domain.GroupPolicy {
	p := domain.DefaultGroupPolicy()
	p.LockoutThreshold = threshold
	p.LockoutDuration = domain.SecondsOf(d)
	return p
}

func TestLockoutAfterThreshold(t *testing.T) {
	tests := []struct {
		name      string
		threshold int
		duration  time.Duration
	}{
		{"default five for fifteen minutes", domain.DefaultLockoutThreshold, domain.DefaultLockoutDuration},
		{"three for an hour", 3, time.Hour},
		{"one for a minute", 1, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGroup(t, "support", domain.GrantAll(), policyWithLockout(tt.threshold, tt.duration))
			tc := newTech(t, "alice", "support")
			for i := 1; i < tt.threshold; i++ {
				_, evs, err := tc.Login(byTech("alice", at(time.Duration(i)*time.Second)), badPassword, g)
				wantErr(t, err, domain.CodeUnauthenticated, domain.ErrUnauthenticated)
				wantTypes(t, evs, "technician.login_failed")
			}
			last := at(time.Duration(tt.threshold) * time.Second)
			_, evs, err := tc.Login(byTech("alice", last), badPassword, g)
			wantErr(t, err, domain.CodeUnauthenticated, domain.ErrUnauthenticated)
			wantTypes(t, evs, "technician.login_failed", "technician.locked_out")
			lock := payload[domain.LockedOut](t, evs[1:])
			if diff := cmp.Diff(domain.LockedOut{Until: last.Add(tt.duration), Failures: tt.threshold}, lock); diff != "" {
				t.Errorf("locked_out (-want +got):\n%s", diff)
			}
			failed := payload[domain.LoginFailed](t, evs[:1])
			if diff := cmp.Diff(domain.LoginFailed{Reason: domain.LoginBadPassword, IP: "192.0.2.10"}, failed); diff != "" {
				t.Errorf("login_failed (-want +got):\n%s", diff)
			}

			// While locked, even the right password fails and nothing counts.
			wantErr(t, tc.CheckLogin(last.Add(time.Second)), domain.CodeLockedOut, domain.ErrLockedOut)
			_, evs, err = tc.Login(byTech("alice", last.Add(time.Second)), good, g)
			wantErr(t, err, domain.CodeLockedOut, domain.ErrLockedOut)
			if got := payload[domain.LoginFailed](t, evs).Reason; got != domain.LoginLocked {
				t.Errorf("reason = %q, want locked", got)
			}
			if tc.Failures() != tt.threshold {
				t.Errorf("failures = %d, want %d", tc.Failures(), tt.threshold)
			}
			_, err = tc.RecordLoginSuccess(byTech("alice", last.Add(time.Second)), good.IP, false)
			wantErr(t, err, domain.CodeLockedOut, domain.ErrLockedOut)

			// The lock expires by itself.
			expiry := last.Add(tt.duration)
			if err := tc.CheckLogin(expiry.Add(-time.Nanosecond)); err == nil {
				t.Error("lock lifted before its end")
			}
			if err := tc.CheckLogin(expiry); err != nil {
				t.Errorf("CheckLogin at expiry: %v", err)
			}
			// After expiry counting starts again.
			_, evs, err = tc.Login(byTech("alice", expiry), badPassword, g)
			wantErr(t, err, domain.CodeUnauthenticated, domain.ErrUnauthenticated)
			if tt.threshold > 1 {
				wantTypes(t, evs, "technician.login_failed")
				if tc.Failures() != 1 {
					t.Errorf("failures after expiry = %d, want 1", tc.Failures())
				}
			}

			// Replay yields the same lock state.
			replay := domain.NewTechnician(tenant, "alice")
			if err := replay.Load(append(creationEvents(t, "alice", "support"), tc.Changes()...)); err != nil {
				t.Fatal(err)
			}
			if replay.Failures() != tc.Failures() || !replay.LockedUntil().Equal(tc.LockedUntil()) {
				t.Errorf("replay: failures %d until %v, want %d %v", replay.Failures(), replay.LockedUntil(), tc.Failures(), tc.LockedUntil())
			}
		})
	}
}

// creationEvents returns the technician.created event newTech records.
func creationEvents(t testing.TB, id, group string) []domain.Event {
	t.Helper()
	tc := domain.NewTechnician(tenant, id)
	return ok(t)(tc.Create(byAdmin(t0), group, "Name of "+id, id+"@example.com"))
}

func TestLoginSuccessResetsFailures(t *testing.T) {
	g := newGroup(t, "support", domain.GrantAll(), policyWithLockout(3, time.Hour))
	tc := newTech(t, "alice", "support")
	for i := range 2 {
		tc.Login(byTech("alice", at(time.Duration(i)*time.Second)), badPassword, g)
	}
	res, evs, err := tc.Login(byTech("alice", at(time.Minute)), good, g)
	ok(t)(evs, err)
	if diff := cmp.Diff(domain.LoginSucceeded{IP: "192.0.2.10"}, payload[domain.LoginSucceeded](t, evs)); diff != "" {
		t.Errorf("login_succeeded (-want +got):\n%s", diff)
	}
	if res != (domain.LoginResult{}) {
		t.Errorf("result = %+v, want nothing to do", res)
	}
	if tc.Failures() != 0 || !tc.LoggedIn() {
		t.Errorf("failures %d logged in %v", tc.Failures(), tc.LoggedIn())
	}
	// Two more failures do not lock: the count restarted.
	for i := range 2 {
		_, evs, _ := tc.Login(byTech("alice", at(time.Hour+time.Duration(i)*time.Second)), badPassword, g)
		wantTypes(t, evs, "technician.login_failed")
	}
}

func TestLoginRefusals(t *testing.T) {
	allowlisted := newGroup(t, "office", domain.GrantAll(), domain.DefaultGroupPolicy())
	ok(t)(allowlisted.SetIPAllowlist(byAdmin(t0), []string{"203.0.113.0/24", "2001:db8:1::/48"}))
	tests := []struct {
		name     string
		setup    func(t *testing.T, tc *domain.Technician)
		group    string
		attempt  domain.LoginAttempt
		reason   domain.LoginFailureReason
		code     string
		sentinel error
	}{
		{"bad password", nil, "support", badPassword, domain.LoginBadPassword, domain.CodeUnauthenticated, domain.ErrUnauthenticated},
		{"disabled", func(t *testing.T, tc *domain.Technician) { ok(t)(tc.Disable(byAdmin(t0), "left")) }, "support", good, domain.LoginDisabled, domain.CodeDisabled, domain.ErrDisabled},
		{"outside allowlist v4", nil, "office", domain.LoginAttempt{IP: netip.MustParseAddr("198.51.100.1"), PasswordOK: true}, domain.LoginIPNotAllowed, domain.CodeIPNotAllowed, domain.ErrIPNotAllowed},
		{"outside allowlist v6", nil, "office", domain.LoginAttempt{IP: netip.MustParseAddr("2001:db8:2::1"), PasswordOK: true}, domain.LoginIPNotAllowed, domain.CodeIPNotAllowed, domain.ErrIPNotAllowed},
		{"second factor wrong", func(t *testing.T, tc *domain.Technician) { ok(t)(tc.EnrollTwoFactor(byTech("alice", t0), "totp")) }, "support", good, domain.LoginSecondFactorFailed, domain.CodeUnauthenticated, domain.ErrUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGroup(t, "support", domain.GrantAll(), domain.DefaultGroupPolicy())
			if tt.group == "office" {
				g = allowlisted
			}
			tc := newTech(t, "alice", tt.group)
			if tt.setup != nil {
				tt.setup(t, tc)
				tc.ClearChanges()
			}
			_, evs, err := tc.Login(byTech("alice", at(time.Minute)), tt.attempt, g)
			wantErr(t, err, tt.code, tt.sentinel)
			if got := payload[domain.LoginFailed](t, evs).Reason; got != tt.reason {
				t.Errorf("reason = %q, want %q", got, tt.reason)
			}
		})
	}
	t.Run("inside allowlist", func(t *testing.T) {
		tc := newTech(t, "alice", "office")
		for _, ip := range []string{"203.0.113.77", "2001:db8:1:ffff::1", "::ffff:203.0.113.5"} {
			_, evs, err := tc.Login(byTech("alice", at(time.Minute)), domain.LoginAttempt{IP: netip.MustParseAddr(ip), PasswordOK: true}, allowlisted)
			wantTypes(t, ok(t)(evs, err), "technician.login_succeeded")
		}
	})
	t.Run("another group", func(t *testing.T) {
		tc := newTech(t, "alice", "support")
		_, evs, err := tc.Login(byTech("alice", at(time.Minute)), good, allowlisted)
		wantErr(t, err, domain.CodeInvalid, nil)
		wantTypes(t, evs)
	})
	t.Run("unknown technician", func(t *testing.T) {
		_, _, err := domain.NewTechnician(tenant, "ghost").Login(byTech("ghost", t0), good, allowlisted)
		wantErr(t, err, domain.CodeNotFound, domain.ErrNotFound)
	})
}

func TestFailuresThatDoNotCount(t *testing.T) {
	g := newGroup(t, "support", domain.GrantAll(), policyWithLockout(2, time.Hour))
	tc := newTech(t, "alice", "support")
	for _, r := range []domain.LoginFailureReason{domain.LoginIPNotAllowed, domain.LoginLocked, domain.LoginDisabled, domain.LoginIPNotAllowed} {
		evs := ok(t)(tc.RecordLoginFailure(byTech("alice", at(time.Second)), r, netip.Addr{}, g.Policy()))
		wantTypes(t, evs, "technician.login_failed")
	}
	if tc.Failures() != 0 {
		t.Errorf("failures = %d, want 0", tc.Failures())
	}
	_, err := tc.RecordLoginFailure(byTech("alice", at(time.Second)), domain.LoginUnknownUser, netip.Addr{}, g.Policy())
	wantErr(t, err, domain.CodeInvalid, nil)
	_, err = tc.RecordLoginFailure(byTech("alice", at(time.Second)), "cosmic_ray", netip.Addr{}, g.Policy())
	wantErr(t, err, domain.CodeInvalid, nil)
}

func TestSecondFactor(t *testing.T) {
	required := domain.DefaultGroupPolicy()
	required.RequireSecondFactor = true
	g := newGroup(t, "support", domain.GrantAll(), required)
	tc := newTech(t, "alice", "support")

	res, evs, err := tc.Login(byTech("alice", at(time.Minute)), good, g)
	ok(t)(evs, err)
	if !res.MustEnrollSecondFactor {
		t.Error("second factor required but not asked to enrol")
	}
	ok(t)(tc.EnrollTwoFactor(byTech("alice", at(2*time.Minute)), "totp"))
	_, err = tc.EnrollTwoFactor(byTech("alice", at(2*time.Minute)), "totp")
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict)
	_, err = domain.NewTechnician(tenant, "x").EnrollTwoFactor(byTech("x", t0), "sms")
	wantErr(t, err, domain.CodeNotFound, nil)

	res, evs, err = tc.Login(byTech("alice", at(3*time.Minute)), domain.LoginAttempt{IP: good.IP, PasswordOK: true, SecondFactorOK: true}, g)
	if !payload[domain.LoginSucceeded](t, ok(t)(evs, err)).SecondFactor {
		t.Error("login_succeeded without second_factor")
	}
	if res.MustEnrollSecondFactor {
		t.Error("asked to enrol again")
	}
}

func TestPasswordChange(t *testing.T) {
	p := domain.DefaultGroupPolicy()
	p.Password.MaxAge = domain.SecondsOf(90 * 24 * time.Hour)
	g := newGroup(t, "support", domain.GrantAll(), p)
	tc := newTech(t, "alice", "support")

	res, _, err := tc.Login(byTech("alice", at(time.Minute)), good, g)
	if err != nil || res.MustChangePassword {
		t.Fatalf("fresh password: %+v %v", res, err)
	}
	ok(t)(tc.RequirePasswordChange(byAdmin(at(time.Hour)), "admin"))
	wantTypes(t, ok(t)(tc.RequirePasswordChange(byAdmin(at(time.Hour)), "admin"))) // already required
	res, _, _ = tc.Login(byTech("alice", at(2*time.Hour)), good, g)
	if !res.MustChangePassword {
		t.Error("required change not reported")
	}

	_, err = tc.ChangePassword(byTech("alice", at(3*time.Hour)), "short", g.Policy().Password)
	wantErr(t, err, domain.CodeWeakPassword, domain.ErrWeakPassword)
	wantTypes(t, ok(t)(tc.ChangePassword(byTech("alice", at(3*time.Hour)), "Correct-Horse-42", g.Policy().Password)), "technician.password_changed")
	if tc.MustChangePassword() {
		t.Error("change still required after changing")
	}

	res, _, _ = tc.Login(byTech("alice", at(3*time.Hour+89*24*time.Hour)), good, g)
	if res.MustChangePassword {
		t.Error("password reported expired before its max age")
	}
	res, _, _ = tc.Login(byTech("alice", at(3*time.Hour+90*24*time.Hour)), good, g)
	if !res.MustChangePassword {
		t.Error("expired password not reported")
	}

	ok(t)(tc.Disable(byAdmin(at(1000*time.Hour)), ""))
	_, err = tc.ChangePassword(byTech("alice", at(1001*time.Hour)), "Correct-Horse-43", g.Policy().Password)
	wantErr(t, err, domain.CodeDisabled, domain.ErrDisabled)
}

func TestPasswordPolicyCheck(t *testing.T) {
	policy := domain.DefaultGroupPolicy().Password
	withSymbol := policy
	withSymbol.RequireSymbol = true
	tests := []struct {
		name     string
		policy   domain.PasswordPolicy
		password string
		ok       bool
	}{
		{"good", policy, "Correcthorse42", true},
		{"too short", policy, "Short1a", false},
		{"twelve runes not bytes", policy, "Éééééééééé1a", true},
		{"no upper", policy, "correcthorse42", false},
		{"no lower", policy, "CORRECTHORSE42", false},
		{"no digit", policy, "Correcthorsexx", false},
		{"symbol required", withSymbol, "Correcthorse42", false},
		{"symbol given", withSymbol, "Correct horse 42!", true},
		{"invalid utf-8", policy, "Correcthorse42\xff", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.policy.Check(tt.password)
			if tt.ok {
				if err != nil {
					t.Errorf("Check: %v", err)
				}
				return
			}
			wantErr(t, err, domain.CodeWeakPassword, domain.ErrWeakPassword)
		})
	}
}

func TestUnlock(t *testing.T) {
	g := newGroup(t, "support", domain.GrantAll(), policyWithLockout(2, time.Hour))
	tc := newTech(t, "alice", "support")
	_, err := tc.Unlock(byAdmin(t0), "")
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict)
	for i := range 2 {
		tc.Login(byTech("alice", at(time.Duration(i)*time.Second)), badPassword, g)
	}
	if !tc.Locked(at(time.Minute)) {
		t.Fatal("not locked")
	}
	wantTypes(t, ok(t)(tc.Unlock(byAdmin(at(time.Minute)), "called the helpdesk")), "technician.unlocked")
	if err := tc.CheckLogin(at(time.Minute)); err != nil {
		t.Errorf("CheckLogin after unlock: %v", err)
	}
	if tc.Failures() != 0 {
		t.Errorf("failures = %d after unlock", tc.Failures())
	}
	_, evs, err := tc.Login(byTech("alice", at(2*time.Minute)), good, g)
	wantTypes(t, ok(t)(evs, err), "technician.login_succeeded")
}

func TestDisableAndLogout(t *testing.T) {
	g := newGroup(t, "support", domain.GrantAll(), domain.DefaultGroupPolicy())
	tc := newTech(t, "alice", "support")
	_, err := tc.Logout(byTech("alice", t0), domain.LogoutUser)
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict)

	_, evs, err := tc.Login(byTech("alice", at(time.Minute)), good, g)
	ok(t)(evs, err)
	_, err = tc.Logout(byTech("alice", t0), "bored")
	wantErr(t, err, domain.CodeInvalid, nil)
	out := payload[domain.LoggedOut](t, ok(t)(tc.Logout(bySystem(at(time.Hour)), domain.LogoutInactivity)))
	if out.Reason != domain.LogoutInactivity {
		t.Errorf("reason = %q", out.Reason)
	}

	_, evs, err = tc.Login(byTech("alice", at(2*time.Hour)), good, g)
	ok(t)(evs, err)
	wantTypes(t, ok(t)(tc.Disable(byAdmin(at(3*time.Hour)), "left the company")), "technician.logged_out", "technician.disabled")
	if tc.LoggedIn() || !tc.Disabled() {
		t.Errorf("logged in %v disabled %v", tc.LoggedIn(), tc.Disabled())
	}
	wantErr(t, tc.CheckLogin(at(4*time.Hour)), domain.CodeDisabled, domain.ErrDisabled)
	_, err = tc.Disable(byAdmin(at(3*time.Hour)), "")
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict)
}

func TestTechnicianCreateAndGroupChange(t *testing.T) {
	tc := domain.NewTechnician(tenant, "alice")
	_, err := tc.Create(byAdmin(t0), "support", "Alice", "not-an-address")
	wantErr(t, err, domain.CodeInvalid, nil)
	evs := ok(t)(tc.Create(byAdmin(t0), "support", "Alice", "alice@example.com"))
	if len(evs[0].Personal) != 2 || evs[0].Personal[0].Subject != domain.TechnicianSubject("alice") {
		t.Errorf("name and e-mail not sealed under the technician: %+v", evs[0].Personal)
	}
	_, err = tc.Create(byAdmin(t0), "support", "Alice", "alice@example.com")
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict)

	ch := payload[domain.TechnicianGroupChanged](t, ok(t)(tc.ChangeGroup(byAdmin(at(time.Hour)), "escalation")))
	if diff := cmp.Diff(domain.TechnicianGroupChanged{FromGroupID: "support", ToGroupID: "escalation"}, ch); diff != "" {
		t.Errorf("group_changed (-want +got):\n%s", diff)
	}
	wantTypes(t, ok(t)(tc.ChangeGroup(byAdmin(at(time.Hour)), "escalation")))
	if tc.GroupID() != "escalation" {
		t.Errorf("group = %q", tc.GroupID())
	}
}

func TestErasedTechnician(t *testing.T) {
	tc := newTech(t, "alice", "support")
	erased, err := domain.NewEvent(domain.Meta{Tenant: tenant, Stream: tc.Stream(), Actor: domain.Actor{Kind: domain.ActorAdmin, ID: "dpo"}, OccurredAt: at(time.Hour)},
		domain.SubjectErased{Subject: domain.TechnicianSubject("alice"), KeyID: "k1", EventsAffected: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.Load([]domain.Event{erased}); err != nil {
		t.Fatal(err)
	}
	if !tc.Erased() {
		t.Fatal("not erased")
	}
	wantErr(t, tc.CheckLogin(at(2*time.Hour)), domain.CodeSubjectErased, domain.ErrSubjectErased)
}
