package sso_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/sso"
)

// forgedIdP is an identity provider made up by the test: its own key, its
// metadata, and responses built and signed by hand, so that each can be
// altered the way an attacker would.
type forgedIdP struct {
	entityID string
	key      *rsa.PrivateKey
	cert     *x509.Certificate
}

func newForgedIdP(t *testing.T, entityID string) *forgedIdP {
	key, cert := newKeyPair(t, "forged-idp")
	return &forgedIdP{entityID: entityID, key: key, cert: cert}
}

// metadata returns the IdP's metadata, trusting certs (its own by default;
// two while it rotates).
func (f *forgedIdP) metadata(certs ...*x509.Certificate) string {
	if len(certs) == 0 {
		certs = []*x509.Certificate{f.cert}
	}
	var keys strings.Builder
	for _, c := range certs {
		fmt.Fprintf(&keys, `<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>%s</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>`,
			base64.StdEncoding.EncodeToString(c.Raw))
	}
	return `<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="` + f.entityID + `">` +
		`<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">` + keys.String() +
		`<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.forged.test/sso"/>` +
		`</md:IDPSSODescriptor></md:EntityDescriptor>`
}

// claims are what a forged assertion says.
type claims struct {
	issuer       string
	nameID       string
	audience     string
	recipient    string
	destination  string
	inResponseTo string
	issued       time.Time
	notBefore    time.Time
	notOnOrAfter time.Time
}

func (w *world) claims(f *forgedIdP, nameID, requestID string) claims {
	now := w.clock.Now().UTC()
	return claims{issuer: f.entityID, nameID: nameID, audience: w.public + sso.MetadataPath(w.tenant),
		recipient: w.public + sso.ACSPath(w.tenant), destination: w.public + sso.ACSPath(w.tenant), inResponseTo: requestID,
		issued: now, notBefore: now.Add(-time.Minute), notOnOrAfter: now.Add(5 * time.Minute)}
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "_" + hex.EncodeToString(b)
}

func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// assertion builds an unsigned assertion of c.
func (c claims) assertion() *etree.Element {
	irt := ""
	if c.inResponseTo != "" {
		irt = ` InResponseTo="` + c.inResponseTo + `"`
	}
	doc := etree.NewDocument()
	err := doc.ReadFromString(`<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="` + randomID() + `" Version="2.0" IssueInstant="` + ts(c.issued) + `">` +
		`<saml:Issuer>` + c.issuer + `</saml:Issuer>` +
		`<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">` + c.nameID + `</saml:NameID>` +
		`<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="` + ts(c.notOnOrAfter) + `" Recipient="` + c.recipient + `"` + irt + `/></saml:SubjectConfirmation></saml:Subject>` +
		`<saml:Conditions NotBefore="` + ts(c.notBefore) + `" NotOnOrAfter="` + ts(c.notOnOrAfter) + `"><saml:AudienceRestriction><saml:Audience>` + c.audience + `</saml:Audience></saml:AudienceRestriction></saml:Conditions>` +
		`<saml:AuthnStatement AuthnInstant="` + ts(c.issued) + `" SessionIndex="` + randomID() + `"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>` +
		`</saml:Assertion>`)
	if err != nil {
		panic(err)
	}
	return doc.Root()
}

// sign returns el signed (enveloped, exclusive c14n) with key, its
// Signature placed after the Issuer as the schema wants.
func sign(t *testing.T, el *etree.Element, key *rsa.PrivateKey, cert *x509.Certificate, hash crypto.Hash) *etree.Element {
	t.Helper()
	ctx, err := dsig.NewSigningContext(key, [][]byte{cert.Raw})
	if err != nil {
		t.Fatal(err)
	}
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	ctx.Hash = hash
	signed, err := ctx.SignEnveloped(el)
	if err != nil {
		t.Fatal(err)
	}
	sig := signed.Child[len(signed.Child)-1]
	signed.RemoveChildAt(len(signed.Child) - 1)
	signed.InsertChildAt(1, sig)
	return signed
}

// response wraps assertions (and, for the wrapping attacks, extensions)
// in a samlp:Response of c.
func (c claims) response(extensions []*etree.Element, assertions ...*etree.Element) *etree.Element {
	irt := ""
	if c.inResponseTo != "" {
		irt = ` InResponseTo="` + c.inResponseTo + `"`
	}
	doc := etree.NewDocument()
	err := doc.ReadFromString(`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="` + randomID() + `" Version="2.0" IssueInstant="` + ts(c.issued) + `" Destination="` + c.destination + `"` + irt + `>` +
		`<saml:Issuer>` + c.issuer + `</saml:Issuer>` +
		`<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status></samlp:Response>`)
	if err != nil {
		panic(err)
	}
	root := doc.Root()
	if len(extensions) > 0 {
		ext := etree.NewElement("samlp:Extensions")
		for _, e := range extensions {
			ext.AddChild(e)
		}
		root.InsertChildAt(1, ext)
	}
	for _, a := range assertions {
		root.AddChild(a)
	}
	return root
}

func encode(t *testing.T, el *etree.Element) string {
	t.Helper()
	doc := etree.NewDocument()
	doc.SetRoot(el.Copy())
	b, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// startLogin starts an SP-initiated login as a browser would and returns
// the request id its cookie holds.
func (w *world) startLogin(t *testing.T) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(w.srv.URL + sso.LoginPath(w.tenant))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "https://idp.forged.test/sso?SAMLRequest=") {
		t.Fatalf("start: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "vigil_saml_request" {
			return ck.Value
		}
	}
	t.Fatal("no request cookie")
	return ""
}

// postACS posts samlResponse to the ACS with the request cookie of
// requestID ("" for none) and returns the JSON answer.
func (w *world) postACS(t *testing.T, samlResponse, requestID string) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", w.srv.URL+sso.ACSPath(w.tenant), strings.NewReader(url.Values{"SAMLResponse": {samlResponse}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if requestID != "" {
		req.AddCookie(&http.Cookie{Name: "vigil_saml_request", Value: requestID})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAnswer(t, resp)
}

// TestForgedResponses posts a corpus of forged and altered responses to
// the ACS: each is refused with 401, no token, and an
// technician.sso_login_failed event that names the reason.
func TestForgedResponses(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	idp := newForgedIdP(t, "https://idp.forged.test/metadata")
	if r := w.do("POST", "/v1/sso/saml", w.admin, map[string]any{"metadata_xml": idp.metadata()}); r.status != http.StatusOK {
		t.Fatalf("configure: %d %s", r.status, r.raw)
	}
	other, otherCert := newKeyPair(t, "attacker")
	const alice = "alice@example.test"

	type forged struct {
		name string
		// make returns the SAMLResponse for the login started with
		// requestID, and the request id to post with.
		make   func(t *testing.T, requestID string) (string, string)
		reason domain.SSOFailureReason
		// stream is where the refusal is recorded: the tenant's, or alice's
		// (when the response was valid and alice's rules refused it).
		onAlice bool
	}
	valid := func(t *testing.T, c claims) string {
		return encode(t, c.response(nil, sign(t, c.assertion(), idp.key, idp.cert, crypto.SHA256)))
	}
	cases := []forged{
		{name: "tampered NameID after signing", reason: domain.SSOBadSignature, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, "bob@example.test", id)
			a := sign(t, c.assertion(), idp.key, idp.cert, crypto.SHA256)
			a.FindElement("./Subject/NameID").SetText(alice)
			return encode(t, c.response(nil, a)), id
		}},
		{name: "unsigned assertion", reason: domain.SSOBadSignature, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, alice, id)
			return encode(t, c.response(nil, c.assertion())), id
		}},
		{name: "unsigned assertion inside a signed response", reason: domain.SSOBadSignature, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, alice, id)
			return encode(t, sign(t, c.response(nil, c.assertion()), idp.key, idp.cert, crypto.SHA256)), id
		}},
		{name: "signed by a key the metadata does not hold", reason: domain.SSOBadSignature, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, alice, id)
			return encode(t, c.response(nil, sign(t, c.assertion(), other, otherCert, crypto.SHA256))), id
		}},
		{name: "SHA-1 signature", reason: domain.SSOBadSignature, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, alice, id)
			return encode(t, c.response(nil, sign(t, c.assertion(), idp.key, idp.cert, crypto.SHA1))), id
		}},
		{name: "signature wrapping: signed assertion hidden in Extensions", reason: domain.SSOBadSignature, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, "carol@example.test", id)
			genuine := sign(t, c.assertion(), idp.key, idp.cert, crypto.SHA256)
			evil := genuine.Copy()
			evil.FindElement("./Subject/NameID").SetText(alice)
			return encode(t, c.response([]*etree.Element{genuine}, evil)), id
		}},
		{name: "two assertions, the second unsigned (CVE-2022-41912)", reason: domain.SSOBadSignature, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, "carol@example.test", id)
			genuine := sign(t, c.assertion(), idp.key, idp.cert, crypto.SHA256)
			evil := w.claims(idp, alice, id).assertion()
			return encode(t, sign(t, c.response(nil, genuine, evil), idp.key, idp.cert, crypto.SHA256)), id
		}},
		{name: "comment in the NameID", reason: domain.SSOUnknownUser, make: func(t *testing.T, id string) (string, string) {
			// The IdP signs alice@example.test.evil.test; the attacker adds a
			// comment so that a reader of the first text node would see
			// alice@example.test. The signed value is read: an unknown user.
			c := w.claims(idp, alice+".evil.test", id)
			a := sign(t, c.assertion(), idp.key, idp.cert, crypto.SHA256)
			n := a.FindElement("./Subject/NameID")
			n.Child = nil
			n.CreateText(alice)
			n.CreateComment("")
			n.CreateText(".evil.test")
			return encode(t, c.response(nil, a)), id
		}},
		{name: "expired", reason: domain.SSOExpired, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, alice, id)
			c.issued, c.notBefore, c.notOnOrAfter = c.issued.Add(-time.Hour), c.issued.Add(-time.Hour), c.issued.Add(-55*time.Minute)
			return valid(t, c), id
		}},
		{name: "not yet valid", reason: domain.SSOExpired, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, alice, id)
			c.notBefore = c.issued.Add(time.Hour)
			c.notOnOrAfter = c.issued.Add(2 * time.Hour)
			return valid(t, c), id
		}},
		{name: "wrong audience", reason: domain.SSOWrongAudience, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, alice, id)
			c.audience = "https://another-sp.example/metadata"
			return valid(t, c), id
		}},
		{name: "wrong recipient", reason: domain.SSOWrongDestination, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, alice, id)
			c.recipient = "https://another-sp.example/acs"
			return valid(t, c), id
		}},
		{name: "wrong destination", reason: domain.SSOWrongDestination, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, alice, id)
			c.destination = "https://another-sp.example/acs"
			return valid(t, c), id
		}},
		{name: "another issuer", reason: domain.SSOWrongIssuer, make: func(t *testing.T, id string) (string, string) {
			c := w.claims(idp, alice, id)
			c.issuer = "https://idp.other.test/metadata"
			return valid(t, c), id
		}},
		{name: "answers another request", reason: domain.SSOUnsolicited, make: func(t *testing.T, id string) (string, string) {
			return valid(t, w.claims(idp, alice, randomID())), id
		}},
		{name: "IdP-initiated while the tenant allows none", reason: domain.SSOUnsolicited, make: func(t *testing.T, id string) (string, string) {
			return valid(t, w.claims(idp, alice, "")), ""
		}},
		{name: "not XML", reason: domain.SSOInvalid, make: func(t *testing.T, id string) (string, string) {
			return base64.StdEncoding.EncodeToString([]byte("<samlp:Response")), id
		}},
		{name: "replayed", reason: domain.SSOReplayed, onAlice: true, make: func(t *testing.T, id string) (string, string) {
			resp := valid(t, w.claims(idp, alice, id))
			if r := w.postACS(t, resp, id); r.status != http.StatusOK || r.str("token") == "" {
				t.Fatalf("the first use: %d %s", r.status, r.raw)
			}
			return resp, id
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, id := tc.make(t, w.startLogin(t))
			r := w.postACS(t, resp, id)
			if r.status != http.StatusUnauthorized || r.str("token") != "" || r.code() != "unauthenticated" {
				t.Fatalf("answer %d %s: want 401 unauthenticated", r.status, r.raw)
			}
			if tc.onAlice {
				f := w.events("technician-"+w.alice, "technician.sso_login_failed")
				if len(f) == 0 || field(t, f[len(f)-1], "reason") != string(tc.reason) {
					t.Fatalf("no %s refusal on alice's stream", tc.reason)
				}
				return
			}
			assertTenantFailure(t, w, tc.reason)
		})
	}
	// Of all that, exactly one login (the first use of the replayed
	// response) went through.
	if s := w.events("technician-"+w.alice, "technician.sso_login_succeeded"); len(s) != 1 {
		t.Fatalf("%d SSO logins of alice, want 1", len(s))
	}
}

// TestIdPCertificateRotation rotates the IdP's signing certificate without
// a refused login: the metadata lists the old and the new certificate
// while the IdP switches, then only the new one.
func TestIdPCertificateRotation(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	idp := newForgedIdP(t, "https://idp.forged.test/metadata")
	oldKey, oldCert := idp.key, idp.cert
	newKey, newCert := newKeyPair(t, "forged-idp-2")
	configure := func(certs ...*x509.Certificate) {
		t.Helper()
		if r := w.do("POST", "/v1/sso/saml", w.admin, map[string]any{"metadata_xml": idp.metadata(certs...)}); r.status != http.StatusOK {
			t.Fatalf("configure: %d %s", r.status, r.raw)
		}
	}
	login := func(key *rsa.PrivateKey, cert *x509.Certificate) answer {
		t.Helper()
		id := w.startLogin(t)
		c := w.claims(idp, "alice@example.test", id)
		return w.postACS(t, encode(t, c.response(nil, sign(t, c.assertion(), key, cert, crypto.SHA256))), id)
	}
	configure(oldCert)
	if r := login(oldKey, oldCert); r.status != http.StatusOK {
		t.Fatalf("old key before rotation: %d %s", r.status, r.raw)
	}
	configure(oldCert, newCert) // step 1: trust both
	for _, k := range []struct {
		key  *rsa.PrivateKey
		cert *x509.Certificate
	}{{oldKey, oldCert}, {newKey, newCert}} {
		if r := login(k.key, k.cert); r.status != http.StatusOK {
			t.Fatalf("during rotation: %d %s", r.status, r.raw)
		}
	}
	configure(newCert) // step 2: the IdP signs with the new key only
	if r := login(newKey, newCert); r.status != http.StatusOK {
		t.Fatalf("new key after rotation: %d %s", r.status, r.raw)
	}
	if r := login(oldKey, oldCert); r.status != http.StatusUnauthorized {
		t.Fatalf("old key after rotation: %d %s", r.status, r.raw)
	}
	assertTenantFailure(t, w, domain.SSOBadSignature)
	if n := len(w.events(domain.TenantStream(w.tenant), "tenant.sso_configured")); n != 3 {
		t.Fatalf("%d configuration events, want 3", n)
	}
}

// TestIdPInitiated: an unsolicited response (no InResponseTo, no request
// cookie) passes only when the tenant allows IdP-initiated logins.
func TestIdPInitiated(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	idp := newForgedIdP(t, "https://idp.forged.test/metadata")
	unsolicited := func() answer {
		c := w.claims(idp, "alice@example.test", "")
		return w.postACS(t, encode(t, c.response(nil, sign(t, c.assertion(), idp.key, idp.cert, crypto.SHA256))), "")
	}
	if r := w.do("POST", "/v1/sso/saml", w.admin, map[string]any{"metadata_xml": idp.metadata()}); r.status != http.StatusOK {
		t.Fatalf("configure: %d %s", r.status, r.raw)
	}
	if r := unsolicited(); r.status != http.StatusUnauthorized {
		t.Fatalf("IdP-initiated while not allowed: %d %s", r.status, r.raw)
	}
	if r := w.do("POST", "/v1/sso/saml", w.admin, map[string]any{"metadata_xml": idp.metadata(), "allow_idp_initiated": true}); r.status != http.StatusOK {
		t.Fatalf("allow IdP-initiated: %d %s", r.status, r.raw)
	}
	r := unsolicited()
	if r.status != http.StatusOK || r.str("technician_id") != w.alice {
		t.Fatalf("IdP-initiated when allowed: %d %s", r.status, r.raw)
	}
	if s := w.events("technician-"+w.alice, "technician.sso_login_succeeded"); len(s) != 1 || !strings.Contains(string(s[0].Data), `"idp_initiated":true`) {
		t.Fatalf("sso_login_succeeded: %+v", s)
	}
}

// TestConfigurationIsChecked: only an admin configures SSO, with metadata
// of an IdP that has a signing certificate and a redirect endpoint; a
// tenant without SSO has no SP endpoints.
func TestConfigurationIsChecked(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	idp := newForgedIdP(t, "https://idp.forged.test/metadata")
	resp, err := http.Get(w.srv.URL + sso.MetadataPath(w.tenant))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("SP metadata without SSO: %d", resp.StatusCode)
	}
	tok := w.do("POST", "/v1/auth/login", "", map[string]any{"email": "alice@example.test", "password": testPassword}).str("token")
	for _, tc := range []struct {
		name   string
		bearer string
		body   map[string]any
		status int
	}{
		{"a technician", tok, map[string]any{"metadata_xml": idp.metadata()}, http.StatusForbidden},
		{"no metadata", w.admin, map[string]any{}, http.StatusBadRequest},
		{"both forms", w.admin, map[string]any{"metadata_xml": idp.metadata(), "metadata_url": "https://idp.forged.test/md"}, http.StatusBadRequest},
		{"not metadata", w.admin, map[string]any{"metadata_xml": "<html/>"}, http.StatusBadRequest},
		{"no certificate", w.admin, map[string]any{"metadata_xml": strings.Replace(idp.metadata(), `use="signing"`, `use="encryption"`, 1)}, http.StatusBadRequest},
		{"unknown JIT group", w.admin, map[string]any{"metadata_xml": idp.metadata(), "jit_group_id": "g-none"}, http.StatusNotFound},
		{"a control character", w.admin, map[string]any{"metadata_xml": idp.metadata() + "\r"}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := w.do("POST", "/v1/sso/saml", tc.bearer, tc.body); r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.raw, tc.status)
			}
		})
	}
	if n := len(w.events(domain.TenantStream(w.tenant), "tenant.sso_configured")); n != 0 {
		t.Fatalf("%d configurations recorded from refused requests", n)
	}
}

// TestACSRateLimited: refusals count against the client address like failed
// password logins, so that garbage posted to the ACS cannot grow the log
// without bound: past the budget, 429 before the response is read.
func TestACSRateLimited(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	idp := newForgedIdP(t, "https://idp.forged.test/metadata")
	if r := w.do("POST", "/v1/sso/saml", w.admin, map[string]any{"metadata_xml": idp.metadata()}); r.status != http.StatusOK {
		t.Fatalf("configure: %d %s", r.status, r.raw)
	}
	// Start just after a window of the per-address count begins: a run
	// crossing a boundary would count its refusals in two windows.
	now, win := w.clock.Now(), service.DefaultLoginFailureWindow
	w.clock.Advance(now.Truncate(win).Add(win).Sub(now) + time.Second)
	garbage := base64.StdEncoding.EncodeToString([]byte("<not-saml/>"))
	for i := 0; i < service.DefaultLoginFailuresPerAddress; i++ {
		if r := w.postACS(t, garbage, ""); r.status != http.StatusUnauthorized {
			t.Fatalf("refusal %d: %d %s", i, r.status, r.raw)
		}
	}
	r := w.postACS(t, garbage, "")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("past the budget: %d %s", r.status, r.raw)
	}
	if n := len(w.events(domain.TenantStream(w.tenant), "technician.sso_login_failed")); n != service.DefaultLoginFailuresPerAddress {
		t.Fatalf("%d refusals recorded, want %d", n, service.DefaultLoginFailuresPerAddress)
	}
}
