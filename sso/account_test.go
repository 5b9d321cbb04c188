package sso_test

import (
	"context"
	"crypto"
	"net/http"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/vigilhq/vigil/domain"
)

// forgedLogin posts a valid response of idp for nameID to node w, in a
// login started on w, and returns the answer.
func (w *world) forgedLogin(t *testing.T, idp *forgedIdP, nameID string) answer {
	t.Helper()
	id := w.startLogin(t)
	c := w.claims(idp, nameID, id)
	return w.postACS(t, encode(t, c.response(nil, sign(t, c.assertion(), idp.key, idp.cert, crypto.SHA256))), id)
}

// TestSSODisableHoldsOnEveryNodeAtOnce: an SSO id disabled through node A
// is refused by node B on its very next login, though B has just logged
// the technician in (and cached him); the token B issued ends with it; an
// assertion consumed on one node is a replay on the other.
func TestSSODisableHoldsOnEveryNodeAtOnce(t *testing.T) {
	t.Parallel()
	nodes := newCluster(t, 2)
	a, b := nodes[0], nodes[1]
	idp := newForgedIdP(t, "https://idp.forged.test/metadata")
	if r := a.do("POST", "/v1/sso/saml", a.admin, map[string]any{"metadata_xml": idp.metadata()}); r.status != http.StatusOK {
		t.Fatalf("configure: %d %s", r.status, r.raw)
	}
	first := b.forgedLogin(t, idp, "alice@example.test")
	if first.status != http.StatusOK {
		t.Fatalf("login on B: %d %s", first.status, first.raw)
	}
	if _, err := b.svc.Authenticate(context.Background(), first.str("token")); err != nil {
		t.Fatalf("B's token on B: %v", err)
	}

	// Replay across nodes: consumed on A, refused on B.
	id := a.startLogin(t)
	c := a.claims(idp, "alice@example.test", id)
	resp := encode(t, c.response(nil, sign(t, c.assertion(), idp.key, idp.cert, crypto.SHA256)))
	if r := a.postACS(t, resp, id); r.status != http.StatusOK {
		t.Fatalf("alice on A: %d %s", r.status, r.raw)
	}
	if r := b.postACS(t, resp, id); r.status != http.StatusUnauthorized {
		t.Fatalf("the same response on B: %d %s", r.status, r.raw)
	}
	if f := a.events("technician-"+a.alice, "technician.sso_login_failed"); len(f) != 1 || field(t, f[0], "reason") != string(domain.SSOReplayed) {
		t.Fatalf("cross-node replay not audited: %+v", f)
	}

	if r := a.do("POST", "/v1/technicians/"+a.alice+"/sso/disable", a.admin, nil); r.status != http.StatusOK {
		t.Fatalf("disable on A: %d %s", r.status, r.raw)
	}
	if _, err := b.svc.Authenticate(context.Background(), first.str("token")); domain.ErrorCode(err) != domain.CodeUnauthenticated {
		t.Fatalf("B's token after the disable: %v", err)
	}
	r := b.forgedLogin(t, idp, "alice@example.test")
	if r.status != http.StatusForbidden || r.code() != "disabled" {
		t.Fatalf("login on B after the disable on A: %d %s", r.status, r.raw)
	}
	f := a.events("technician-"+a.alice, "technician.sso_login_failed")
	if len(f) != 2 || field(t, f[1], "reason") != string(domain.SSOIDDisabled) {
		t.Fatalf("refusal not audited: %+v", f)
	}
	if r := a.do("POST", "/v1/technicians/"+a.alice+"/sso/enable", a.admin, nil); r.status != http.StatusOK {
		t.Fatalf("enable on A: %d %s", r.status, r.raw)
	}
	if r := b.forgedLogin(t, idp, "alice@example.test"); r.status != http.StatusOK {
		t.Fatalf("login on B after the enable on A: %d %s", r.status, r.raw)
	}
	if n := len(a.events("technician-"+a.alice, "technician.sso_disabled")) + len(a.events("technician-"+a.alice, "technician.sso_enabled")); n != 2 {
		t.Fatalf("%d disable/enable events, want 2", n)
	}

	// SSO turned off for the tenant on A: B's endpoints are gone at once.
	if r := a.do("POST", "/v1/sso/saml", a.admin, map[string]any{"metadata_xml": idp.metadata(), "enabled": false}); r.status != http.StatusOK {
		t.Fatalf("turn SSO off: %d %s", r.status, r.raw)
	}
	resp2, err := http.Get(b.srv.URL + "/v1/sso/saml/" + b.tenant + "/login")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotFound {
		t.Fatalf("login start on B with SSO off: %d", resp2.StatusCode)
	}
}

// TestSSOOnlyPolicy: members of an sso_only group cannot log in with their
// password, right or wrong, but can through the IdP.
func TestSSOOnlyPolicy(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	idp := newForgedIdP(t, "https://idp.forged.test/metadata")
	if r := w.do("POST", "/v1/sso/saml", w.admin, map[string]any{"metadata_xml": idp.metadata()}); r.status != http.StatusOK {
		t.Fatalf("configure: %d %s", r.status, r.raw)
	}
	if r := w.do("PATCH", "/v1/groups/"+w.group, w.admin, map[string]any{"policy": map[string]any{"sso_only": true}}); r.status != http.StatusOK || r.body["policy"].(map[string]any)["sso_only"] != true {
		t.Fatalf("sso_only: %d %s", r.status, r.raw)
	}
	r := w.do("POST", "/v1/auth/login", "", map[string]any{"email": "alice@example.test", "password": testPassword})
	if r.status != http.StatusForbidden || r.code() != "forbidden" {
		t.Fatalf("password login of an sso_only member: %d %s", r.status, r.raw)
	}
	if r := w.do("POST", "/v1/auth/login", "", map[string]any{"email": "alice@example.test", "password": "Wrong-Password-1"}); r.status != http.StatusUnauthorized {
		t.Fatalf("wrong password of an sso_only member: %d %s", r.status, r.raw)
	}
	f := w.events("technician-"+w.alice, "technician.login_failed")
	if len(f) == 0 || field(t, f[0], "reason") != string(domain.LoginSSORequired) {
		t.Fatalf("sso_required not audited: %+v", f)
	}
	if r := w.forgedLogin(t, idp, "alice@example.test"); r.status != http.StatusOK || r.str("token") == "" {
		t.Fatalf("SSO login of an sso_only member: %d %s", r.status, r.raw)
	}
}

// enrolTOTP enrols alice's second factor and returns its secret.
func (w *world) enrolTOTP(t *testing.T, token string) string {
	t.Helper()
	r := w.do("POST", "/v1/auth/totp/enroll", token, nil)
	secret := r.str("secret")
	if r.status != http.StatusOK || secret == "" {
		t.Fatalf("enrol: %d %s", r.status, r.raw)
	}
	if r := w.do("POST", "/v1/auth/totp/enroll", token, map[string]any{"code": w.code(t, secret)}); r.status != http.StatusOK {
		t.Fatalf("confirm: %d %s", r.status, r.raw)
	}
	return secret
}

// code returns the TOTP code of secret at the next time step (each code is
// accepted once).
func (w *world) code(t *testing.T, secret string) string {
	t.Helper()
	w.clock.Advance(30 * time.Second)
	c, err := totp.GenerateCodeCustom(secret, w.clock.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (w *world) login(t *testing.T, email, password, code, newPassword string) answer {
	t.Helper()
	body := map[string]any{"email": email, "password": password}
	if code != "" {
		body["totp"] = code
	}
	if newPassword != "" {
		body["new_password"] = newPassword
	}
	return w.do("POST", "/v1/auth/login", "", body)
}

// TestPasswordChangeNeedsTheSecondFactor: POST /v1/auth/password asks a
// technician with TOTP for a code; a wrong current password or a missing
// or replayed code is refused, and every outcome is audited.
func TestPasswordChangeNeedsTheSecondFactor(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	tok := w.login(t, "alice@example.test", testPassword, "", "").str("token")
	secret := w.enrolTOTP(t, tok)
	const next = "Battery-Staple-77"

	if r := w.do("POST", "/v1/auth/password", tok, map[string]any{"current_password": testPassword, "new_password": next}); r.status != http.StatusUnauthorized {
		t.Fatalf("without a code: %d %s", r.status, r.raw)
	}
	if r := w.do("POST", "/v1/auth/password", tok, map[string]any{"current_password": "Not-The-Password-1", "new_password": next, "totp": w.code(t, secret)}); r.status != http.StatusUnauthorized {
		t.Fatalf("wrong current password: %d %s", r.status, r.raw)
	}
	code := w.code(t, secret)
	if r := w.do("POST", "/v1/auth/password", tok, map[string]any{"current_password": testPassword, "new_password": "short", "totp": code}); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("weak password: %d %s", r.status, r.raw)
	}
	// The code of the weak attempt was used up.
	if r := w.do("POST", "/v1/auth/password", tok, map[string]any{"current_password": testPassword, "new_password": next, "totp": code}); r.status != http.StatusUnauthorized {
		t.Fatalf("replayed code: %d %s", r.status, r.raw)
	}
	if r := w.do("POST", "/v1/auth/password", tok, map[string]any{"current_password": testPassword, "new_password": next, "totp": w.code(t, secret)}); r.status != http.StatusNoContent {
		t.Fatalf("change: %d %s", r.status, r.raw)
	}
	if r := w.login(t, "alice@example.test", next, w.code(t, secret), ""); r.status != http.StatusOK {
		t.Fatalf("login with the new password: %d %s", r.status, r.raw)
	}
	var reasons []string
	for _, e := range w.events("technician-"+w.alice, "technician.password_change_refused") {
		reasons = append(reasons, field(t, e, "reason"))
		if field(t, e, "ip") != "127.0.0.1" || len(e.Sealed) != 1 {
			t.Fatalf("the address is not sealed in %+v", e)
		}
	}
	want := []string{"second_factor_failed", "bad_password", "weak_password", "second_factor_failed"}
	if len(reasons) != len(want) {
		t.Fatalf("refusals %v, want %v", reasons, want)
	}
	for i := range want {
		if reasons[i] != want[i] {
			t.Fatalf("refusals %v, want %v", reasons, want)
		}
	}
	changed := w.events("technician-"+w.alice, "technician.password_changed")
	if len(changed) != 1 || string(changed[0].Data) != `{"second_factor":true}` {
		t.Fatalf("password_changed: %+v", changed)
	}

	// A group that requires a second factor refuses a change until one is
	// enrolled.
	if r := w.do("PATCH", "/v1/groups/"+w.group, w.admin, map[string]any{"policy": map[string]any{"require_second_factor": true}}); r.status != http.StatusOK {
		t.Fatalf("require_second_factor: %d %s", r.status, r.raw)
	}
	w.technician("bob@example.test")
	btok := w.login(t, "bob@example.test", testPassword, "", "").str("token")
	if r := w.do("POST", "/v1/auth/password", btok, map[string]any{"current_password": testPassword, "new_password": next}); r.status != http.StatusForbidden || r.code() != "second_factor_required" {
		t.Fatalf("bob without a second factor: %d %s", r.status, r.raw)
	}
}

// TestForcedPasswordChange: an admin requires a change; the next login
// answers password_change_required until it carries a new password, after
// the password and the TOTP code were checked; both steps are audited.
func TestForcedPasswordChange(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	tok := w.login(t, "alice@example.test", testPassword, "", "").str("token")
	secret := w.enrolTOTP(t, tok)
	r := w.do("POST", "/v1/technicians/"+w.alice+"/require-password-change", w.admin, map[string]any{"reason": "suspected leak"})
	if r.status != http.StatusOK || r.body["must_change_password"] != true {
		t.Fatalf("require: %d %s", r.status, r.raw)
	}
	if r := w.login(t, "alice@example.test", testPassword, w.code(t, secret), ""); r.status != http.StatusForbidden || r.code() != "password_change_required" {
		t.Fatalf("login without new_password: %d %s", r.status, r.raw)
	}
	if r := w.login(t, "alice@example.test", testPassword, "", "Battery-Staple-77"); r.status != http.StatusUnauthorized {
		t.Fatalf("change without the code: %d %s", r.status, r.raw)
	}
	if r := w.login(t, "alice@example.test", testPassword, w.code(t, secret), "Battery-Staple-77"); r.status != http.StatusOK {
		t.Fatalf("login with new_password: %d %s", r.status, r.raw)
	}
	if r := w.login(t, "alice@example.test", "Battery-Staple-77", w.code(t, secret), ""); r.status != http.StatusOK {
		t.Fatalf("login with the new password: %d %s", r.status, r.raw)
	}
	if req := w.events("technician-"+w.alice, "technician.password_change_required"); len(req) != 1 || field(t, req[0], "reason") != "suspected leak" {
		t.Fatalf("password_change_required: %+v", req)
	}
	if ch := w.events("technician-"+w.alice, "technician.password_changed"); len(ch) != 1 {
		t.Fatalf("password_changed: %+v", ch)
	}
}
