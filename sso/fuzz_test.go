package sso

import (
	"encoding/base64"
	"net/url"
	"testing"
	"time"

	"github.com/vigilhq/vigil/domain"
)

const fuzzMetadata = `<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example/md">` +
	`<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing">` +
	`<ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>MIIBszCCAVmgAwIBAgIUHAGbSZ8Gv4c0C0mJ4N7K1TsTQ8YwCgYIKoZIzj0EAwIwEDEOMAwGA1UEAwwFaWRwLXQwHhcNMjYwMTAxMDAwMDAwWhcNMzYwMTAxMDAwMDAwWjAQMQ4wDAYDVQQDDAVpZHAtdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABA==</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>` +
	`<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example/sso"/>` +
	`</md:IDPSSODescriptor></md:EntityDescriptor>`

// FuzzValidate feeds arbitrary posted responses to a tenant's SP: whatever
// the bytes, Validate returns a *Refusal (nothing here is signed by the
// IdP) and never panics.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		"", "<samlp:Response/>",
		`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"/></samlp:Response>`,
		`<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"><ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/></saml:Assertion></samlp:Response>`,
		`<!DOCTYPE x [<!ENTITY a "aaaa">]><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol">&a;</samlp:Response>`,
	} {
		f.Add([]byte(s))
	}
	sp, err := New(Settings{BaseURL: url.URL{Scheme: "https", Host: "vigil.example"}, Tenant: "t1",
		Config: domain.SSOConfigured{Protocol: "saml", Enabled: true, IdPEntityID: "https://idp.example/md", Metadata: fuzzMetadata}, Now: time.Now()})
	if err != nil {
		f.Fatal(err)
	}
	acs, _ := url.Parse(sp.ACSURL())
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, err := sp.Validate(base64.StdEncoding.EncodeToString(raw), "_req", *acs)
		if _, ok := err.(*Refusal); !ok {
			t.Fatalf("Validate(%q) = %v, want a *Refusal", raw, err)
		}
	})
}
