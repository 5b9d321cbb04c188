package domain

// SSOFailureReason says why a single sign-on login was refused.
type SSOFailureReason string

// The values of SSOLoginFailed.Reason.
const (
	// SSOBadSignature: the response or its assertion is unsigned, signed
	// by a key the IdP's metadata does not hold, or altered after signing.
	SSOBadSignature SSOFailureReason = "bad_signature"
	// SSOWrongAudience: the assertion is for another service provider.
	SSOWrongAudience SSOFailureReason = "wrong_audience"
	// SSOWrongDestination: the response's Destination or the assertion's
	// Recipient is not this tenant's assertion consumer service.
	SSOWrongDestination SSOFailureReason = "wrong_destination"
	// SSOWrongIssuer: the response or assertion names another IdP.
	SSOWrongIssuer SSOFailureReason = "wrong_issuer"
	// SSOUnsolicited: the response answers no request of this browser, or
	// is IdP-initiated while the tenant accepts only SP-initiated logins.
	SSOUnsolicited SSOFailureReason = "unsolicited"
	// SSOExpired: outside NotBefore/NotOnOrAfter, allowing the clock skew.
	SSOExpired SSOFailureReason = "expired"
	// SSOReplayed: the assertion id was accepted before, on any node.
	SSOReplayed SSOFailureReason = "replayed"
	// SSOUnknownUser: no technician has the SSO id, and just-in-time
	// provisioning is off.
	SSOUnknownUser SSOFailureReason = "unknown_user"
	// SSODisabledAccount: the technician's account is disabled.
	SSODisabledAccount SSOFailureReason = "disabled"
	// SSOIDDisabled: the technician's SSO id is disabled.
	SSOIDDisabled SSOFailureReason = "sso_disabled"
	// SSOIPNotAllowed: the address is outside the group's allowlist.
	SSOIPNotAllowed SSOFailureReason = "ip_not_allowed"
	// SSOInvalid: anything else a valid response must have (status,
	// subject, conditions, well-formed XML).
	SSOInvalid SSOFailureReason = "invalid"
)

// Valid reports whether r is a known reason.
func (r SSOFailureReason) Valid() bool {
	switch r {
	case SSOBadSignature, SSOWrongAudience, SSOWrongDestination, SSOWrongIssuer, SSOUnsolicited, SSOExpired,
		SSOReplayed, SSOUnknownUser, SSODisabledAccount, SSOIDDisabled, SSOIPNotAllowed, SSOInvalid:
		return true
	}
	return false
}

// SSOConfigured records a tenant's single sign-on configuration, first set
// or changed, in full. The IdP's metadata is public (entity id, endpoints,
// certificates) and is kept verbatim, so that the log proves which keys
// were trusted when.
type SSOConfigured struct {
	// Protocol is "saml".
	Protocol string `json:"protocol"`
	// Change is "configured" for the first configuration, "changed" after.
	Change string `json:"change"`
	// Enabled reports whether logins through the IdP are accepted.
	Enabled bool `json:"enabled"`
	// IdPEntityID is the identity provider's entity id.
	IdPEntityID string `json:"idp_entity_id"`
	// MetadataURL is where the metadata was fetched from, if it was.
	MetadataURL string `json:"metadata_url,omitempty"`
	// Metadata is the IdP's SAML metadata XML.
	Metadata string `json:"metadata"`
	// MetadataSHA256 is the metadata's SHA-256 digest in lower-case hex.
	MetadataSHA256 string `json:"metadata_sha256"`
	// IDAttribute names the assertion attribute that holds the SSO id; empty
	// means the NameID.
	IDAttribute string `json:"id_attribute,omitempty"`
	// JITGroupID, when set, provisions unknown SSO ids just in time as
	// technicians of this group; empty turns provisioning off.
	JITGroupID string `json:"jit_group_id,omitempty"`
	// AllowIdPInitiated accepts unsolicited (IdP-initiated) responses.
	AllowIdPInitiated bool `json:"allow_idp_initiated"`
}

// EventType implements Payload.
func (SSOConfigured) EventType() string { return "tenant.sso_configured" }

// SSOLoginSucceeded records a login to the console through the tenant's
// identity provider.
type SSOLoginSucceeded struct {
	// IdPEntityID is the identity provider that vouched for the login.
	IdPEntityID string `json:"idp_entity_id"`
	// AssertionID is the id of the assertion consumed (used once).
	AssertionID string `json:"assertion_id"`
	// IdPInitiated reports an unsolicited response.
	IdPInitiated bool `json:"idp_initiated"`
	// Provisioned reports that the technician was created just in time by
	// this login.
	Provisioned bool `json:"provisioned"`
	// SSOID is the SSO id the assertion carried.
	SSOID string `json:"sso_id" vigil:"sealed"`
	// IP is the address the technician logged in from.
	IP string `json:"ip,omitempty" vigil:"sealed"`
}

// EventType implements Payload.
func (SSOLoginSucceeded) EventType() string { return "technician.sso_login_succeeded" }

// SSOLoginFailed records a refused single sign-on login. A refusal before
// the technician is known (a bad signature, an unknown user) is appended to
// the tenant's stream without personal fields, as a password login of an
// unknown user is.
type SSOLoginFailed struct {
	// Reason is bad_signature, wrong_audience, wrong_destination,
	// wrong_issuer, unsolicited, expired, replayed, unknown_user, disabled,
	// sso_disabled, ip_not_allowed or invalid.
	Reason SSOFailureReason `json:"reason"`
	// IdPEntityID is the identity provider configured for the tenant.
	IdPEntityID string `json:"idp_entity_id,omitempty"`
	// AssertionID is the id of the assertion refused, when it was read
	// from a signed assertion.
	AssertionID string `json:"assertion_id,omitempty"`
	// SSOID is the SSO id the assertion carried (technician stream only).
	SSOID string `json:"sso_id,omitempty" vigil:"sealed"`
	// IP is the address the attempt came from (technician stream only).
	IP string `json:"ip,omitempty" vigil:"sealed"`
}

// EventType implements Payload.
func (SSOLoginFailed) EventType() string { return "technician.sso_login_failed" }

// SSODisabled records that an admin disabled the technician's SSO id: SSO
// logins are refused until it is enabled again.
type SSODisabled struct {
	// Reason is a short, non-personal comment.
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (SSODisabled) EventType() string { return "technician.sso_disabled" }

// SSOEnabled records that an admin enabled the technician's SSO id again.
type SSOEnabled struct {
	// Reason is a short, non-personal comment.
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (SSOEnabled) EventType() string { return "technician.sso_enabled" }

// SSOIDSet records the technician's single sign-on id, set or cleared by
// an admin, or stored by just-in-time provisioning: the value a SAML
// login's NameID (or configured attribute) is matched against before the
// e-mail address, for identity providers whose NameID is an opaque id.
type SSOIDSet struct {
	// SSOID is the SSO id, lower-cased; empty clears it (the e-mail address
	// alone maps the technician again).
	SSOID string `json:"sso_id,omitempty" vigil:"sealed"`
}

// EventType implements Payload.
func (SSOIDSet) EventType() string { return "technician.sso_id_set" }

// PasswordChangeRefusal says why a password change was refused.
type PasswordChangeRefusal string

// The values of PasswordChangeRefused.Reason.
const (
	PasswordChangeBadPassword          PasswordChangeRefusal = "bad_password"
	PasswordChangeSecondFactorFailed   PasswordChangeRefusal = "second_factor_failed"
	PasswordChangeSecondFactorRequired PasswordChangeRefusal = "second_factor_required"
	PasswordChangeWeakPassword         PasswordChangeRefusal = "weak_password"
)

// PasswordChangeRefused records a refused change of the technician's own
// password: a wrong current password, a missing or wrong second-factor
// code, or a new password the policy refuses.
type PasswordChangeRefused struct {
	// Reason is bad_password, second_factor_failed, second_factor_required
	// or weak_password.
	Reason PasswordChangeRefusal `json:"reason"`
	// IP is the address the attempt came from.
	IP string `json:"ip,omitempty" vigil:"sealed"`
}

// EventType implements Payload.
func (PasswordChangeRefused) EventType() string { return "technician.password_change_refused" }
