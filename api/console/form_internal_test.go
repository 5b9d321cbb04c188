package console

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vigilhq/vigil/domain"
)

// The group form shows every policy setting and reads every one back: a
// policy survives the round trip through the form unchanged.
func TestGroupFormRoundTrip(t *testing.T) {
	p := domain.DefaultGroupPolicy()
	p.ForcedRecording = !p.ForcedRecording
	p.LockoutThreshold = 7
	p.Password.MinLength = 16
	perms := domain.PermissionSet{RemoteControl: true, Reboot: true, ScreenShare: true}
	form := url.Values{}
	for _, f := range policyFields(p) {
		switch {
		case f.Bool && f.Checked:
			form.Set("policy."+f.Name, "on")
		case !f.Bool:
			form.Set("policy."+f.Name, f.Value)
		}
	}
	for _, f := range permFields(perms) {
		if f.Checked {
			form.Set("perm."+f.Name, "on")
		}
	}
	r := httptest.NewRequest("POST", "/console/admin/groups", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	got, err := policyFromForm(r)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, got); diff != "" {
		t.Errorf("policy after the form (-want +got):\n%s", diff)
	}
	gotPerms, err := permsFromForm(r)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(perms, gotPerms); diff != "" {
		t.Errorf("permissions after the form (-want +got):\n%s", diff)
	}
	if n := len(permFields(perms)); n != len(domain.Permissions()) {
		t.Errorf("%d permission boxes for %d permissions", n, len(domain.Permissions()))
	}
	// A number that is not one is refused, not read as zero.
	form.Set("policy.lockout_threshold", "seven")
	r = httptest.NewRequest("POST", "/console/admin/groups", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if _, err := policyFromForm(r); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Errorf("lockout threshold \"seven\": %v, want invalid", err)
	}
}

// After sign-in the console goes back only to its own pages.
func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/sessions?x=1":      "/console/sessions?x=1",
		"":                           Prefix,
		"https://evil.example/":      Prefix,
		"//evil.example/console/":    Prefix,
		"/console/\\evil":            Prefix,
		"/v1/groups":                 Prefix,
		"/console/x\r\nSet-Cookie:a": Prefix,
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// The cookie's first half names the session row; the key that opens the
// row's credential and the CSRF token come from the whole cookie, so that
// knowing a row (or its id) without the cookie's secret half opens nothing.
func TestCookieSecrets(t *testing.T) {
	a, b, c := make([]byte, 32), make([]byte, 32), make([]byte, 32)
	b[31] = 1 // same identifying half, another secret half
	c[0] = 1  // another identifying half
	ha, ka, ca := secrets(a)
	hb, kb, cb := secrets(b)
	hc, _, _ := secrets(c)
	if string(ha) != string(hb) || string(ha) == string(hc) {
		t.Fatal("the id hash does not follow the cookie's first half")
	}
	if string(ka) == string(kb) || ca == cb {
		t.Fatal("the key or the CSRF token does not depend on the secret half")
	}
	sealed, err := seal(ka, []byte("vk_id.secret"), ha)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := unseal(ka, sealed, ha); err != nil || string(got) != "vk_id.secret" {
		t.Fatalf("unseal with the right cookie: %q %v", got, err)
	}
	if _, err := unseal(kb, sealed, hb); err == nil {
		t.Fatal("a cookie with the same id but another secret opened the credential")
	}
	if _, err := unseal(ka, sealed, hc); err == nil {
		t.Fatal("the credential opened for another session row")
	}
}
