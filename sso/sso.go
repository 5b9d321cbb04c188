// Package sso is Vigil's SAML 2.0 service provider: one per tenant, built
// from the tenant's configuration (the IdP's metadata) for each request, so
// that every node acts on the configuration in the log and nothing is
// cached between requests. It wraps github.com/crewjam/saml, which checks
// the XML signature, issuer, audience, destination, recipient, request id
// and validity period, and adds stricter checks of its own before handing
// it a response: exactly one assertion in the whole document, no encrypted
// assertion, and a signature on the assertion itself (a signed response
// around an unsigned assertion is refused), which shuts out the signature
// wrapping and multiple-assertion attacks (CVE-2022-41912) by construction.
//
// The package knows SAML, not HTTP handlers nor technicians: api/http
// serves its endpoints and domain/service decides the login. Its refusals
// carry a domain.SSOFailureReason, so that each is audited with its reason.
// Values of the package are safe for concurrent use.
package sso

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/vigilhq/vigil/domain"
)

// MaxMetadata bounds an IdP's metadata document.
const MaxMetadata = 512 << 10

// MaxResponse bounds a posted SAMLResponse, base64 included.
const MaxResponse = 256 << 10

// ClockSkew is the clock difference between the IdP and Vigil that
// NotBefore, NotOnOrAfter and IssueInstant allow (crewjam's MaxClockSkew).
var ClockSkew = saml.MaxClockSkew

// The XML namespaces of SAML assertions and protocol messages, and of XML
// signatures.
const (
	nsAssertion = "urn:oasis:names:tc:SAML:2.0:assertion"
	nsProtocol  = "urn:oasis:names:tc:SAML:2.0:protocol"
	nsDSig      = "http://www.w3.org/2000/09/xmldsig#"
)

// IdP is what Vigil keeps of an identity provider's metadata.
type IdP struct {
	// EntityID is the IdP's entity id.
	EntityID string
	// SHA256 is the metadata's digest in lower-case hex.
	SHA256 string
	// SSOURL is the IdP's single sign-on endpoint of the HTTP-Redirect
	// binding, where the SP sends its AuthnRequests.
	SSOURL string
	// Certificates counts the IdP's signing certificates (two while it
	// rotates its key).
	Certificates int
}

// ParseMetadata checks an IdP's metadata document: a single
// EntityDescriptor (or an EntitiesDescriptor holding one IdP) with an
// IDPSSODescriptor, at least one signing certificate and an HTTP-Redirect
// SingleSignOnService. It returns an error of code invalid otherwise.
func ParseMetadata(raw []byte) (IdP, error) {
	if len(raw) == 0 || len(raw) > MaxMetadata {
		return IdP{}, domain.Errorf(domain.CodeInvalid, "IdP metadata: want 1 byte to %d KiB of XML", MaxMetadata>>10)
	}
	ed, err := parseMetadata(raw)
	if err != nil {
		return IdP{}, domain.Errorf(domain.CodeInvalid, "IdP metadata does not parse: %v", err)
	}
	return idpOf(ed, raw)
}

// parseMetadata reads an EntityDescriptor, or the one IdP of an
// EntitiesDescriptor (federation metadata such as Entra ID's may wrap it).
func parseMetadata(raw []byte) (*saml.EntityDescriptor, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		return nil, err
	}
	if doc.Root() == nil {
		return nil, errors.New("no root element")
	}
	if doc.Root().Tag == "EntitiesDescriptor" {
		var eds saml.EntitiesDescriptor
		if err := xml.Unmarshal(raw, &eds); err != nil {
			return nil, err
		}
		var found *saml.EntityDescriptor
		for i := range eds.EntityDescriptors {
			if len(eds.EntityDescriptors[i].IDPSSODescriptors) == 0 {
				continue
			}
			if found != nil {
				return nil, errors.New("several identity providers in one EntitiesDescriptor: configure one")
			}
			found = &eds.EntityDescriptors[i]
		}
		if found == nil {
			return nil, errors.New("no identity provider in the EntitiesDescriptor")
		}
		return found, nil
	}
	var ed saml.EntityDescriptor
	if err := xml.Unmarshal(raw, &ed); err != nil {
		return nil, err
	}
	return &ed, nil
}

func idpOf(ed *saml.EntityDescriptor, raw []byte) (IdP, error) {
	if ed.EntityID == "" || len(ed.IDPSSODescriptors) == 0 {
		return IdP{}, domain.Errorf(domain.CodeInvalid, "IdP metadata: no entity id or no IDPSSODescriptor")
	}
	sum := sha256.Sum256(raw)
	idp := IdP{EntityID: ed.EntityID, SHA256: hex.EncodeToString(sum[:])}
	for _, d := range ed.IDPSSODescriptors {
		for _, s := range d.SingleSignOnServices {
			if s.Binding == saml.HTTPRedirectBinding && idp.SSOURL == "" {
				idp.SSOURL = s.Location
			}
		}
		for _, k := range d.KeyDescriptors {
			if k.Use == "" || k.Use == "signing" {
				idp.Certificates += len(k.KeyInfo.X509Data.X509Certificates)
			}
		}
	}
	switch {
	case idp.SSOURL == "":
		return IdP{}, domain.Errorf(domain.CodeInvalid, "IdP metadata: no SingleSignOnService of the HTTP-Redirect binding")
	case idp.Certificates == 0:
		return IdP{}, domain.Errorf(domain.CodeInvalid, "IdP metadata: no signing certificate")
	}
	u, err := url.Parse(idp.SSOURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return IdP{}, domain.Errorf(domain.CodeInvalid, "IdP metadata: the SingleSignOnService location is not an http(s) URL")
	}
	return idp, nil
}

// Settings are one tenant's service provider.
type Settings struct {
	// BaseURL is Vigil's public URL (scheme, host, optional path prefix),
	// such as https://vigil.example.com.
	BaseURL url.URL
	// Tenant is the tenant id.
	Tenant string
	// Config is the tenant's configuration from the log.
	Config domain.SSOConfigured
	// Now is the time to validate at.
	Now time.Time
}

// SP is one tenant's SAML service provider.
type SP struct {
	sp  saml.ServiceProvider
	cfg domain.SSOConfigured
}

// Paths of the per-tenant endpoints, under BaseURL.
func path(tenant, end string) string { return "/v1/sso/saml/" + tenant + "/" + end }

// MetadataPath is the path of tenant's SP metadata, which is also the SP's
// entity id (under BaseURL).
func MetadataPath(tenant string) string { return path(tenant, "metadata") }

// ACSPath is the path of tenant's assertion consumer service (HTTP-POST).
func ACSPath(tenant string) string { return path(tenant, "acs") }

// LoginPath is the path that starts an SP-initiated login.
func LoginPath(tenant string) string { return path(tenant, "login") }

func join(base url.URL, p string) url.URL {
	u := base
	u.Path = strings.TrimSuffix(base.Path, "/") + p
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u
}

// New returns the service provider of s. It returns an error of code
// invalid when the stored metadata no longer parses.
func New(s Settings) (*SP, error) {
	ed, err := parseMetadata([]byte(s.Config.Metadata))
	if err != nil {
		return nil, domain.Errorf(domain.CodeInvalid, "the tenant's IdP metadata does not parse: %v", err)
	}
	md, acs := join(s.BaseURL, MetadataPath(s.Tenant)), join(s.BaseURL, ACSPath(s.Tenant))
	now := s.Now
	return &SP{cfg: s.Config, sp: saml.ServiceProvider{
		EntityID:                         md.String(),
		MetadataURL:                      md,
		AcsURL:                           acs,
		IDPMetadata:                      ed,
		AllowIDPInitiated:                s.Config.AllowIdPInitiated,
		AuthnNameIDFormat:                saml.EmailAddressNameIDFormat,
		AssertionConsumerServiceBindings: []string{saml.HTTPPostBinding},
		MetadataValidDuration:            7 * 24 * time.Hour,
		RejectSHA1Signatures:             true,
		RejectUnknownConditions:          true,
		Clock:                            dsig.NewFakeClockAt(now),
	}}, nil
}

// EntityID returns the SP's entity id (the URL of its metadata).
func (p *SP) EntityID() string { return p.sp.EntityID }

// ACSURL returns the SP's assertion consumer service URL.
func (p *SP) ACSURL() string { return p.sp.AcsURL.String() }

// Metadata returns the SP's metadata document.
func (p *SP) Metadata() ([]byte, error) {
	b, err := xml.MarshalIndent(p.sp.Metadata(), "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), b...), nil
}

// Start returns the IdP URL that starts an SP-initiated login (the
// HTTP-Redirect binding, the AuthnRequest deflated in the query) and the
// request's id, which the response must answer. relayState comes back with
// the response.
func (p *SP) Start(relayState string) (*url.URL, string, error) {
	req, err := p.sp.MakeAuthenticationRequest(p.sp.GetSSOBindingLocation(saml.HTTPRedirectBinding), saml.HTTPRedirectBinding, saml.HTTPPostBinding)
	if err != nil {
		return nil, "", fmt.Errorf("make AuthnRequest: %w", err)
	}
	u, err := req.Redirect(relayState, &p.sp)
	if err != nil {
		return nil, "", fmt.Errorf("redirect AuthnRequest: %w", err)
	}
	return u, req.ID, nil
}

// Login is what a valid response says.
type Login struct {
	// SSOID is the NameID, or the configured attribute's first value.
	SSOID string
	// AssertionID is the assertion's id, for the replay cache.
	AssertionID string
	// ExpiresAt is when the assertion could no longer be accepted anyway.
	ExpiresAt time.Time
	// IdPInitiated reports an unsolicited response.
	IdPInitiated bool
}

// Refusal is a response refused, with the reason it is audited with.
type Refusal struct {
	Reason domain.SSOFailureReason
	// Err is the detail, for the logs only: never show it to the caller.
	Err error
}

// Error implements error.
func (r *Refusal) Error() string {
	return fmt.Sprintf("SAML response refused (%s): %v", r.Reason, r.Err)
}

func refuse(reason domain.SSOFailureReason, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Validate checks a posted SAMLResponse (base64, HTTP-POST binding)
// received at the ACS URL current, for the request requestID ("" when the
// browser started none: only an IdP-initiated response may then pass, and
// only when the tenant allows them). It returns a *Refusal for anything but
// a valid, signed assertion of the tenant's IdP for this SP, now.
func (p *SP) Validate(samlResponse string, requestID string, current url.URL) (Login, error) {
	if len(samlResponse) > MaxResponse {
		return Login{}, refuse(domain.SSOInvalid, "SAMLResponse of %d bytes", len(samlResponse))
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(samlResponse))
	if err != nil {
		return Login{}, refuse(domain.SSOInvalid, "SAMLResponse is not base64: %v", err)
	}
	if err := checkShape(raw); err != nil {
		return Login{}, err
	}
	var ids []string
	if requestID != "" {
		ids = []string{requestID}
	}
	a, err := p.sp.ParseXMLResponse(raw, ids, current)
	if err != nil {
		return Login{}, classify(err)
	}
	l := Login{AssertionID: a.ID, ExpiresAt: a.IssueInstant.Add(saml.MaxIssueDelay + ClockSkew), IdPInitiated: true}
	if a.Subject != nil {
		for _, c := range a.Subject.SubjectConfirmations {
			if c.SubjectConfirmationData != nil && c.SubjectConfirmationData.InResponseTo != "" {
				l.IdPInitiated = false
			}
		}
	}
	if p.cfg.IDAttribute == "" {
		if a.Subject != nil && a.Subject.NameID != nil {
			l.SSOID = strings.TrimSpace(a.Subject.NameID.Value)
		}
	} else {
		for _, st := range a.AttributeStatements {
			for _, at := range st.Attributes {
				if (at.Name == p.cfg.IDAttribute || at.FriendlyName == p.cfg.IDAttribute) && len(at.Values) > 0 && l.SSOID == "" {
					l.SSOID = strings.TrimSpace(at.Values[0].Value)
				}
			}
		}
	}
	if l.SSOID == "" {
		return Login{}, refuse(domain.SSOInvalid, "the assertion carries no SSO id (%s)", orNameID(p.cfg.IDAttribute))
	}
	return l, nil
}

func orNameID(attr string) string {
	if attr == "" {
		return "NameID"
	}
	return "attribute " + attr
}

// checkShape refuses, before any signature is looked at, a response that
// is not a samlp:Response holding exactly one saml:Assertion, signed
// itself, as its direct child, and no EncryptedAssertion anywhere: the
// assertion crewjam returns is then the one whose signature it checked,
// wherever else an attacker hides copies.
func checkShape(raw []byte) error {
	doc := etree.NewDocument()
	doc.ReadSettings.Permissive = false
	if err := doc.ReadFromBytes(raw); err != nil {
		return refuse(domain.SSOInvalid, "SAMLResponse is not XML: %v", err)
	}
	root := doc.Root()
	if root == nil || root.Tag != "Response" || root.NamespaceURI() != nsProtocol {
		return refuse(domain.SSOInvalid, "not a samlp:Response")
	}
	var assertions, encrypted int
	var walk func(*etree.Element)
	walk = func(e *etree.Element) {
		switch {
		case e.Tag == "Assertion" && e.NamespaceURI() == nsAssertion:
			assertions++
		case e.Tag == "EncryptedAssertion":
			encrypted++
		}
		for _, c := range e.ChildElements() {
			walk(c)
		}
	}
	walk(root)
	if encrypted > 0 {
		return refuse(domain.SSOInvalid, "encrypted assertions are not accepted (the SP publishes no encryption key)")
	}
	if assertions != 1 {
		return refuse(domain.SSOBadSignature, "%d assertions in the response: want exactly one", assertions)
	}
	var assertion *etree.Element
	for _, c := range root.ChildElements() {
		if c.Tag == "Assertion" && c.NamespaceURI() == nsAssertion {
			assertion = c
		}
	}
	if assertion == nil {
		return refuse(domain.SSOBadSignature, "the assertion is not a child of the response")
	}
	for _, c := range assertion.ChildElements() {
		if c.Tag == "Signature" && c.NamespaceURI() == nsDSig {
			return nil
		}
	}
	return refuse(domain.SSOBadSignature, "the assertion is not signed (signed assertions are required)")
}

// classify turns crewjam's error into a refusal with its reason.
func classify(err error) *Refusal {
	reason := domain.SSOInvalid
	var status saml.ErrBadStatus
	switch {
	case errors.Is(err, saml.ErrInvalidSignature), errors.Is(err, saml.ErrUntrustedCertificate),
		errors.Is(err, saml.ErrCertificateNotValidNow), errors.Is(err, saml.ErrInvalidCertificate):
		reason = domain.SSOBadSignature
	case errors.Is(err, saml.ErrAudienceMismatch):
		reason = domain.SSOWrongAudience
	case errors.Is(err, saml.ErrDestinationMismatch):
		reason = domain.SSOWrongDestination
	case errors.Is(err, saml.ErrIssuerMismatch):
		reason = domain.SSOWrongIssuer
	case errors.Is(err, saml.ErrRequestIDMismatch):
		reason = domain.SSOUnsolicited
	case errors.Is(err, saml.ErrExpired), errors.Is(err, saml.ErrNotYetValid):
		reason = domain.SSOExpired
	case errors.As(err, &status):
		reason = domain.SSOInvalid
	}
	var ire *saml.InvalidResponseError
	if errors.As(err, &ire) && ire.PrivateErr != nil {
		err = ire.PrivateErr
	}
	return &Refusal{Reason: reason, Err: err}
}

// SafeReturn reports whether returnTo is a path of this site to send the
// browser back to after login: it starts with one "/", holds no scheme,
// host, backslash or control character, and is at most 512 bytes.
func SafeReturn(returnTo string) bool {
	if returnTo == "" || len(returnTo) > 512 || returnTo[0] != '/' {
		return false
	}
	if strings.HasPrefix(returnTo, "//") || strings.ContainsAny(returnTo, "\\") {
		return false
	}
	for i := 0; i < len(returnTo); i++ {
		if returnTo[i] < 0x21 || returnTo[i] == 0x7f {
			return false
		}
	}
	u, err := url.Parse(returnTo)
	return err == nil && u.Scheme == "" && u.Host == "" && bytes.HasPrefix([]byte(u.Path), []byte("/"))
}
