package sso_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"html"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/sso"
)

// simpleSAMLphpWWW is Debian's SimpleSAMLphp document root.
const simpleSAMLphpWWW = "/usr/share/simplesamlphp/www"

// startIdP runs SimpleSAMLphp under PHP's built-in server on a free port,
// with the configuration of testdata/simplesamlphp and a fresh signing key,
// as the IdP of w's tenant. It returns the IdP's base URL ("http://…/").
func startIdP(t *testing.T, w *world) string {
	t.Helper()
	php, err := exec.LookPath("php")
	if err != nil {
		t.Skip("php is not installed: the login through SimpleSAMLphp is not tested here (CI installs php-cli, php-xml and simplesamlphp)")
	}
	if _, err := os.Stat(simpleSAMLphpWWW); err != nil {
		t.Fatalf("SimpleSAMLphp is missing (%v): install Debian's simplesamlphp", err)
	}
	if out, _ := exec.Command(php, "-m").Output(); !regexp.MustCompile(`(?m)^dom$`).Match(out) {
		t.Fatal("PHP lacks the DOM extension SimpleSAMLphp needs: install php-xml and php-mbstring")
	}
	dir := t.TempDir()
	for _, d := range []string{"cert", "log", "data", "tmp", "sessions"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeKeyPair(t, filepath.Join(dir, "cert"), "idp")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	base := "http://" + addr + "/"
	conf, err := filepath.Abs("testdata/simplesamlphp/config")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(php, "-S", addr, "-t", simpleSAMLphpWWW)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SIMPLESAMLPHP_CONFIG_DIR="+conf, "VIGIL_SSP_DIR="+dir, "VIGIL_SSP_BASEURL="+base,
		"VIGIL_SP_ENTITY="+w.srv.URL+sso.MetadataPath(w.tenant), "VIGIL_SP_ACS="+w.srv.URL+sso.ACSPath(w.tenant))
	logf, err := os.Create(filepath.Join(dir, "php-server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			for _, f := range []string{"php-server.log", "log/simplesamlphp.log"} {
				if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
					t.Logf("%s:\n%s", f, b)
				}
			}
		}
	})
	// Wait until the server answers (it starts in well under a second).
	for i := 0; ; i++ {
		resp, err := http.Get(base + "saml2/idp/metadata.php")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i == 200 {
			t.Fatalf("SimpleSAMLphp did not come up at %s: %v", base, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return base
}

// writeKeyPair writes name.key and name.crt, a fresh RSA key and its
// self-signed certificate, into dir, and returns them.
func writeKeyPair(t *testing.T, dir, name string) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, cert := newKeyPair(t, name)
	kb := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	cb := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(filepath.Join(dir, name+".key"), kb, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".crt"), cb, 0o644); err != nil {
		t.Fatal(err)
	}
	return key, cert
}

func newKeyPair(t *testing.T, name string) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return key, cert
}

// browser is a user agent with its own cookies (a fresh IdP session).
type browser struct {
	t      *testing.T
	client *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, client: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

var (
	reAuthState = regexp.MustCompile(`name="AuthState" value="([^"]*)"`)
	reFormPost  = regexp.MustCompile(`(?s)<form[^>]*method="post"[^>]*action="([^"]*)"`)
	reHidden    = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)"`)
)

// posted is the SAML response the IdP had the browser post to the ACS.
type posted struct {
	acs  string
	form url.Values
}

// loginAtIdP follows an SP-initiated login from Vigil's start URL through
// the IdP's login form, and returns the form the IdP hands the browser to
// post to the ACS (not posted yet).
func (b *browser) loginAtIdP(start, user, password string) posted {
	b.t.Helper()
	resp, err := b.client.Get(start)
	if err != nil {
		b.t.Fatal(err)
	}
	page := readAll(b.t, resp)
	m := reAuthState.FindStringSubmatch(page)
	if resp.StatusCode != http.StatusOK || m == nil {
		b.t.Fatalf("no login form at %s (%d): %.600s", resp.Request.URL, resp.StatusCode, page)
	}
	formURL := *resp.Request.URL
	formURL.RawQuery = ""
	resp, err = b.client.PostForm(formURL.String(), url.Values{"username": {user}, "password": {password}, "AuthState": {html.UnescapeString(m[1])}})
	if err != nil {
		b.t.Fatal(err)
	}
	page = readAll(b.t, resp)
	fm := reFormPost.FindStringSubmatch(page)
	if fm == nil {
		b.t.Fatalf("the IdP did not answer with the POST binding's form (%d): %.600s", resp.StatusCode, page)
	}
	p := posted{acs: html.UnescapeString(fm[1]), form: url.Values{}}
	for _, h := range reHidden.FindAllStringSubmatch(page, -1) {
		p.form.Set(html.UnescapeString(h[1]), html.UnescapeString(h[2]))
	}
	if p.form.Get("SAMLResponse") == "" {
		b.t.Fatalf("no SAMLResponse in the IdP's form: %.600s", page)
	}
	return p
}

// handOff is what the ACS gave the browser back: the fragment of the
// return_to redirect.
type handOff struct {
	status   int
	location string
	values   url.Values
}

// post posts p to the ACS, as the IdP's page makes the browser do, and
// reads the redirect to return_to without following it.
func (b *browser) post(p posted) handOff {
	b.t.Helper()
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.PostForm(p.acs, p.form)
	if err != nil {
		b.t.Fatal(err)
	}
	body := readAll(b.t, resp)
	h := handOff{status: resp.StatusCode, location: resp.Header.Get("Location")}
	if resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("ACS answered %d, want 303 to return_to: %s", resp.StatusCode, body)
	}
	_, frag, _ := strings.Cut(h.location, "#")
	h.values, err = url.ParseQuery(frag)
	if err != nil {
		b.t.Fatal(err)
	}
	return h
}

// requestCookie returns the ACS-path cookie of the SP-initiated login.
func (b *browser) requestCookie(acs string) *http.Cookie {
	u, _ := url.Parse(acs)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == "vigil_saml_request" {
			return c
		}
	}
	return nil
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSimpleSAMLphpLogin logs technicians in through a real identity
// provider this project did not write: Vigil's start URL redirects to
// SimpleSAMLphp (HTTP-Redirect binding), the browser fills in the IdP's
// login form, and the IdP's page posts the signed response back to the ACS
// (HTTP-POST binding). The token handed back is a technician token like
// POST /v1/auth/login's, under the group's rules; the same response posted
// again is refused as replayed; an unknown user, a disabled SSO id and an
// address outside the allowlist are refused; just-in-time provisioning
// creates a technician only when turned on. Every outcome is in the log.
func TestSimpleSAMLphpLogin(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.bob = w.technician("bob@example.test")
	idp := startIdP(t, w)
	start := w.srv.URL + sso.LoginPath(w.tenant) + "?return_to=" + url.QueryEscape("/console/")

	cfg := w.do("POST", "/v1/sso/saml", w.admin, map[string]any{"metadata_url": idp + "saml2/idp/metadata.php"})
	if cfg.status != http.StatusOK {
		t.Fatalf("configure SSO: %d %s", cfg.status, cfg.raw)
	}
	if evs := w.events(domain.TenantStream(w.tenant), "tenant.sso_configured"); len(evs) != 1 || field(t, evs[0], "change") != "configured" {
		t.Fatalf("tenant.sso_configured events: %v", evs)
	}

	// The SP's metadata is served at its entity id.
	resp, err := http.Get(w.srv.URL + sso.MetadataPath(w.tenant))
	if err != nil {
		t.Fatal(err)
	}
	md := readAll(t, resp)
	if resp.StatusCode != http.StatusOK || !strings.Contains(md, `entityID="`+w.srv.URL+sso.MetadataPath(w.tenant)+`"`) ||
		!strings.Contains(md, w.srv.URL+sso.ACSPath(w.tenant)) {
		t.Fatalf("SP metadata (%d): %s", resp.StatusCode, md)
	}

	t.Run("login", func(t *testing.T) {
		b := newBrowser(t)
		p := b.loginAtIdP(start, "alice", "alice-pass")
		cookie := b.requestCookie(p.acs)
		if cookie == nil {
			t.Fatal("the start URL set no request cookie for the ACS")
		}
		h := b.post(p)
		if !strings.HasPrefix(h.location, "/console/#") || h.values.Get("token") == "" {
			t.Fatalf("hand-off %q: want /console/#token=…", h.location)
		}
		if h.values.Get("technician_id") != w.alice || h.values.Get("tenant") != w.tenant || h.values.Get("scope") != "full" {
			t.Fatalf("hand-off values %v", h.values)
		}
		// The token is a technician token, as a password login's.
		pr, err := w.svc.Authenticate(context.Background(), h.values.Get("token"))
		if err != nil || pr.TechnicianID != w.alice || pr.Tenant != w.tenant {
			t.Fatalf("the SSO token authenticates as %+v, %v", pr, err)
		}
		pw := w.do("POST", "/v1/auth/login", "", map[string]any{"email": "alice@example.test", "password": testPassword})
		if pw.status != http.StatusOK || strings.SplitN(pw.str("token"), "_", 2)[0] != strings.SplitN(h.values.Get("token"), "_", 2)[0] {
			t.Fatalf("password token %q and SSO token %q differ in form", pw.str("token"), h.values.Get("token"))
		}
		// Both live for the group's console inactivity timeout.
		ssoExp, err1 := time.Parse(time.RFC3339, h.values.Get("expires_at"))
		pwExp, err2 := time.Parse(time.RFC3339, pw.str("expires_at"))
		if err1 != nil || err2 != nil || pwExp.Sub(ssoExp).Abs() > time.Minute || ssoExp.Sub(w.clock.Now()) < 50*time.Minute {
			t.Fatalf("expiries: SSO %s, password %s", h.values.Get("expires_at"), pw.str("expires_at"))
		}
		if out := w.do("POST", "/v1/auth/logout", h.values.Get("token"), nil); out.status != http.StatusNoContent {
			t.Fatalf("logout with the SSO token: %d %s", out.status, out.raw)
		}
		evs := w.events("technician-"+w.alice, "technician.sso_login_succeeded")
		if len(evs) != 1 || field(t, evs[0], "sso_id") != "alice@example.test" || field(t, evs[0], "ip") != "127.0.0.1" ||
			field(t, evs[0], "idp_entity_id") != idp+"saml2/idp/metadata.php" {
			t.Fatalf("sso_login_succeeded: %+v", evs)
		}
		if len(evs[0].Sealed) != 2 {
			t.Fatalf("sso_id and ip must be sealed: %+v", evs[0].Sealed)
		}

		// The same response again, even with the request's cookie: replayed.
		b.client.Jar.SetCookies(mustURL(p.acs), []*http.Cookie{{Name: cookie.Name, Value: cookie.Value, Path: sso.ACSPath(w.tenant)}})
		again := b.post(p)
		if again.values.Get("error") != "unauthenticated" || again.values.Get("token") != "" {
			t.Fatalf("replayed response: %v", again.values)
		}
		if f := w.events("technician-"+w.alice, "technician.sso_login_failed"); len(f) != 1 || field(t, f[0], "reason") != string(domain.SSOReplayed) {
			t.Fatalf("replay not audited: %+v", f)
		}
	})

	t.Run("response for another browser", func(t *testing.T) {
		// A response the IdP issued for one browser's request, posted from
		// a browser that did not start it (login CSRF): unsolicited.
		b := newBrowser(t)
		p := b.loginAtIdP(start, "bob", "bob-pass")
		h := newBrowser(t).post(p)
		if h.values.Get("error") != "unauthenticated" {
			t.Fatalf("a response posted from another browser: %v", h.values)
		}
		assertTenantFailure(t, w, domain.SSOUnsolicited)
	})

	t.Run("unknown user", func(t *testing.T) {
		b := newBrowser(t)
		h := b.post(b.loginAtIdP(start, "carol", "carol-pass"))
		if h.values.Get("error") != "unauthenticated" {
			t.Fatalf("unknown user: %v", h.values)
		}
		assertTenantFailure(t, w, domain.SSOUnknownUser)
	})

	t.Run("disabled SSO id", func(t *testing.T) {
		if r := w.do("POST", "/v1/technicians/"+w.bob+"/sso/disable", w.admin, map[string]any{"reason": "left the team"}); r.status != http.StatusOK || r.body["sso_disabled"] != true {
			t.Fatalf("disable: %d %s", r.status, r.raw)
		}
		b := newBrowser(t)
		h := b.post(b.loginAtIdP(start, "bob", "bob-pass"))
		if h.values.Get("error") != "disabled" {
			t.Fatalf("disabled SSO id: %v", h.values)
		}
		f := w.events("technician-"+w.bob, "technician.sso_login_failed")
		if len(f) == 0 || field(t, f[len(f)-1], "reason") != string(domain.SSOIDDisabled) {
			t.Fatalf("sso_disabled refusal not audited: %+v", f)
		}
		if r := w.do("POST", "/v1/technicians/"+w.bob+"/sso/enable", w.admin, nil); r.status != http.StatusOK || r.body["sso_disabled"] != false {
			t.Fatalf("enable: %d %s", r.status, r.raw)
		}
		b = newBrowser(t)
		if h := b.post(b.loginAtIdP(start, "bob", "bob-pass")); h.values.Get("token") == "" {
			t.Fatalf("login after enable: %v", h.values)
		}
	})

	t.Run("IP not allowed", func(t *testing.T) {
		if r := w.do("PATCH", "/v1/groups/"+w.group, w.admin, map[string]any{"ip_allowlist": []string{"192.0.2.0/24"}}); r.status != http.StatusOK {
			t.Fatalf("allowlist: %d %s", r.status, r.raw)
		}
		defer w.do("PATCH", "/v1/groups/"+w.group, w.admin, map[string]any{"ip_allowlist": []string{}})
		b := newBrowser(t)
		h := b.post(b.loginAtIdP(start, "alice", "alice-pass"))
		if h.values.Get("error") != "ip_not_allowed" {
			t.Fatalf("outside the allowlist: %v", h.values)
		}
		f := w.events("technician-"+w.alice, "technician.sso_login_failed")
		if field(t, f[len(f)-1], "reason") != string(domain.SSOIPNotAllowed) {
			t.Fatalf("ip_not_allowed refusal not audited: %+v", f)
		}
	})

	t.Run("just-in-time provisioning", func(t *testing.T) {
		r := w.do("POST", "/v1/sso/saml", w.admin, map[string]any{"metadata_url": idp + "saml2/idp/metadata.php", "jit_group_id": w.group})
		if r.status != http.StatusOK {
			t.Fatalf("turn JIT on: %d %s", r.status, r.raw)
		}
		if evs := w.events(domain.TenantStream(w.tenant), "tenant.sso_configured"); len(evs) != 2 || field(t, evs[1], "change") != "changed" {
			t.Fatalf("the change is not recorded: %d events", len(evs))
		}
		b := newBrowser(t)
		h := b.post(b.loginAtIdP(start, "carol", "carol-pass"))
		id := h.values.Get("technician_id")
		if h.values.Get("token") == "" || id == "" || id == w.alice || id == w.bob {
			t.Fatalf("JIT login: %v", h.values)
		}
		evs := w.events("technician-"+id, "technician.sso_login_succeeded")
		if len(evs) != 1 || !strings.Contains(string(evs[0].Data), `"provisioned":true`) {
			t.Fatalf("provisioned login: %+v", evs)
		}
		if c := w.events("technician-"+id, "technician.created"); len(c) != 1 || field(t, c[0], "email") != "carol@example.test" || c[0].Actor.ID != "sso" {
			t.Fatalf("provisioned technician: %+v", c)
		}
	})

	t.Run("IdP-initiated, SSO id from an attribute", func(t *testing.T) {
		// The IdP's own link to the application: no AuthnRequest, no
		// request cookie; accepted once the tenant allows it. The SSO id is
		// read from the "email" attribute instead of the NameID.
		launch := idp + "saml2/idp/SSOService.php?spentityid=" + url.QueryEscape(w.public+sso.MetadataPath(w.tenant)) +
			"&RelayState=" + url.QueryEscape("/console/")
		b := newBrowser(t)
		if h := b.post(b.loginAtIdP(launch, "bob", "bob-pass")); h.values.Get("error") != "unauthenticated" {
			t.Fatalf("IdP-initiated while not allowed: %v", h.values)
		}
		configure := func(attr string) {
			t.Helper()
			r := w.do("POST", "/v1/sso/saml", w.admin, map[string]any{"metadata_url": idp + "saml2/idp/metadata.php",
				"allow_idp_initiated": true, "id_attribute": attr})
			if r.status != http.StatusOK {
				t.Fatalf("allow IdP-initiated: %d %s", r.status, r.raw)
			}
		}
		// "uid" holds "bob", nobody's e-mail address: the attribute, not
		// the NameID, is what is looked up.
		configure("uid")
		b = newBrowser(t)
		if h := b.post(b.loginAtIdP(launch, "bob", "bob-pass")); h.values.Get("error") != "unauthenticated" {
			t.Fatalf("SSO id from uid: %v", h.values)
		}
		assertTenantFailure(t, w, domain.SSOUnknownUser)
		// Once an admin sets "bob" as bob's SSO id (distinct from his
		// e-mail address), the same attribute of the real IdP maps him.
		if r := w.do("PUT", "/v1/technicians/"+w.bob+"/sso", w.admin, map[string]any{"sso_id": "bob"}); r.status != http.StatusOK {
			t.Fatalf("set bob's SSO id: %d %s", r.status, r.raw)
		}
		b = newBrowser(t)
		if h := b.post(b.loginAtIdP(launch, "bob", "bob-pass")); h.values.Get("technician_id") != w.bob || h.values.Get("token") == "" {
			t.Fatalf("SSO id from uid, set as bob's: %v", h.values)
		}
		if s := w.events("technician-"+w.bob, "technician.sso_login_succeeded"); field(t, s[len(s)-1], "sso_id") != "bob" {
			t.Fatalf("bob's login by his SSO id: %+v", s[len(s)-1])
		}
		configure("email")
		b = newBrowser(t)
		h := b.post(b.loginAtIdP(launch, "bob", "bob-pass"))
		if h.values.Get("technician_id") != w.bob || h.values.Get("token") == "" {
			t.Fatalf("IdP-initiated login: %v", h.values)
		}
		s := w.events("technician-"+w.bob, "technician.sso_login_succeeded")
		if !strings.Contains(string(s[len(s)-1].Data), `"idp_initiated":true`) {
			t.Fatalf("not recorded as IdP-initiated: %s", s[len(s)-1].Data)
		}
	})
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// assertTenantFailure checks that the last SSO refusal on the tenant's
// stream has reason and no personal field.
func assertTenantFailure(t *testing.T, w *world, reason domain.SSOFailureReason) {
	t.Helper()
	f := w.events(domain.TenantStream(w.tenant), "technician.sso_login_failed")
	if len(f) == 0 || field(t, f[len(f)-1], "reason") != string(reason) {
		var got []string
		for _, e := range f {
			got = append(got, field(t, e, "reason"))
		}
		t.Fatalf("want a tenant-stream refusal %s, have %v", reason, got)
	}
	if len(f[len(f)-1].Sealed) != 0 {
		t.Fatalf("a tenant-stream refusal holds personal fields: %+v", f[len(f)-1].Sealed)
	}
}
