package domain

import (
	"time"

	"github.com/google/uuid"
)

// LoginFailureReason says why a login failed.
type LoginFailureReason string

// The values of LoginFailed.Reason.
const (
	LoginBadPassword        LoginFailureReason = "bad_password"
	LoginUnknownUser        LoginFailureReason = "unknown_user"
	LoginIPNotAllowed       LoginFailureReason = "ip_not_allowed"
	LoginSecondFactorFailed LoginFailureReason = "second_factor_failed"
	LoginLocked             LoginFailureReason = "locked"
	LoginDisabled           LoginFailureReason = "disabled"
	// LoginSSORequired: the group's policy is sso_only, so its members log
	// in through the tenant's identity provider, never with a password.
	LoginSSORequired LoginFailureReason = "sso_required"
)

// Valid reports whether r is a known reason.
func (r LoginFailureReason) Valid() bool {
	switch r {
	case LoginBadPassword, LoginUnknownUser, LoginIPNotAllowed, LoginSecondFactorFailed, LoginLocked, LoginDisabled, LoginSSORequired:
		return true
	}
	return false
}

// countsTowardsLockout reports whether a failure of reason r is a wrong
// guess that counts towards the lockout threshold. Attempts refused before
// any secret was checked (locked, disabled, IP) do not count, so a locked
// account does not stay locked for ever under attack.
func (r LoginFailureReason) countsTowardsLockout() bool {
	return r == LoginBadPassword || r == LoginSecondFactorFailed
}

// LogoutReason says why a technician's console session ended.
type LogoutReason string

// The values of LoggedOut.Reason.
const (
	LogoutUser       LogoutReason = "user"
	LogoutInactivity LogoutReason = "inactivity"
	LogoutAdmin      LogoutReason = "admin"
	LogoutDisabled   LogoutReason = "disabled"
)

// Valid reports whether r is a known reason.
func (r LogoutReason) Valid() bool {
	switch r {
	case LogoutUser, LogoutInactivity, LogoutAdmin, LogoutDisabled:
		return true
	}
	return false
}

// TechnicianCreated records a new technician account. It is the first event
// of every technician stream.
type TechnicianCreated struct {
	// GroupID is the technician's group.
	GroupID string `json:"group_id"`
	// Name is the technician's display name.
	Name string `json:"name" vigil:"sealed"`
	// Email is the technician's e-mail address, their login.
	Email string `json:"email" vigil:"sealed"`
}

// EventType implements Payload.
func (TechnicianCreated) EventType() string { return "technician.created" }

// LoginSucceeded records a successful login to the console.
type LoginSucceeded struct {
	// IP is the address the technician logged in from.
	IP string `json:"ip,omitempty" vigil:"sealed"`
	// SecondFactor reports whether a second factor was verified.
	SecondFactor bool `json:"second_factor"`
}

// EventType implements Payload.
func (LoginSucceeded) EventType() string { return "technician.login_succeeded" }

// LoginFailed records a failed login. A failure for an unknown user has no
// technician stream: it is appended to the tenant stream without an IP.
type LoginFailed struct {
	// Reason is bad_password, unknown_user, ip_not_allowed, second_factor_failed, locked, disabled or sso_required.
	Reason LoginFailureReason `json:"reason"`
	// IP is the address the attempt came from.
	IP string `json:"ip,omitempty" vigil:"sealed"`
}

// EventType implements Payload.
func (LoginFailed) EventType() string { return "technician.login_failed" }

// LockedOut records that consecutive failures reached the group's threshold.
type LockedOut struct {
	// Until is when the lockout ends unless an admin unlocks earlier.
	Until time.Time `json:"until"`
	// Failures is the number of consecutive failures counted.
	Failures int `json:"failures"`
}

// EventType implements Payload.
func (LockedOut) EventType() string { return "technician.locked_out" }

// Unlocked records that an admin lifted a lockout and reset the failure count.
type Unlocked struct {
	// Reason is a short, non-personal comment.
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (Unlocked) EventType() string { return "technician.unlocked" }

// PasswordChanged records a password change. The hash lives in the
// credentials table, never in the log.
type PasswordChanged struct {
	// SecondFactor reports whether a second-factor code was verified for
	// the change (POST /v1/auth/password of a technician who has one).
	SecondFactor bool `json:"second_factor,omitempty"`
}

// EventType implements Payload.
func (PasswordChanged) EventType() string { return "technician.password_changed" }

// PasswordChangeRequired records that the technician must change their
// password at the next login.
type PasswordChangeRequired struct {
	// Reason is a short, non-personal comment, such as "admin" or "expired".
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (PasswordChangeRequired) EventType() string { return "technician.password_change_required" }

// TwoFactorEnrolled records that the technician enrolled a second factor.
type TwoFactorEnrolled struct {
	// Method is the second factor, "totp".
	Method string `json:"method"`
}

// EventType implements Payload.
func (TwoFactorEnrolled) EventType() string { return "technician.two_factor_enrolled" }

// LoggedOut records the end of a console session.
type LoggedOut struct {
	// Reason is user, inactivity, admin or disabled.
	Reason LogoutReason `json:"reason"`
}

// EventType implements Payload.
func (LoggedOut) EventType() string { return "technician.logged_out" }

// TechnicianDisabled records that the account was disabled; a disabled
// technician can neither log in nor act in a session.
type TechnicianDisabled struct {
	// Reason is a short, non-personal comment.
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (TechnicianDisabled) EventType() string { return "technician.disabled" }

// TechnicianGroupChanged records a move to another group.
type TechnicianGroupChanged struct {
	// FromGroupID is the previous group.
	FromGroupID string `json:"from_group_id"`
	// ToGroupID is the new group.
	ToGroupID string `json:"to_group_id"`
}

// EventType implements Payload.
func (TechnicianGroupChanged) EventType() string { return "technician.group_changed" }

// GroupCreated records a new technician group with its initial permissions
// and policy, stated in full so that replay never depends on code defaults.
type GroupCreated struct {
	// Name is the group's name.
	Name string `json:"name"`
	// Permissions are the fifteen permissions, each granted or not.
	Permissions PermissionSet `json:"permissions"`
	// Policy is the group's policy.
	Policy GroupPolicy `json:"policy"`
}

// EventType implements Payload.
func (GroupCreated) EventType() string { return "group.created" }

// PermissionsChanged records the group's new permissions, all fifteen.
type PermissionsChanged struct {
	// Permissions are the fifteen permissions, each granted or not.
	Permissions PermissionSet `json:"permissions"`
}

// EventType implements Payload.
func (PermissionsChanged) EventType() string { return "group.permissions_changed" }

// PolicyChanged records the group's new policy, in full.
type PolicyChanged struct {
	// Policy is the group's policy.
	Policy GroupPolicy `json:"policy"`
}

// EventType implements Payload.
func (PolicyChanged) EventType() string { return "group.policy_changed" }

// IPAllowlistChanged records the group's new IP allowlist. An empty list
// allows every address.
type IPAllowlistChanged struct {
	// CIDRs are the allowed prefixes in canonical form, IPv4 or IPv6.
	CIDRs []string `json:"cidrs"`
}

// EventType implements Payload.
func (IPAllowlistChanged) EventType() string { return "group.ip_allowlist_changed" }

// Retention is a tenant's retention periods for closed sessions.
type Retention struct {
	// OnlineDays is how long a closed session stays in the online log.
	OnlineDays int `json:"online_days"`
	// ArchiveDays is how long it then stays in the archive before it is shredded.
	ArchiveDays int `json:"archive_days"`
}

// DefaultRetention is two years online and two years archived.
var DefaultRetention = Retention{OnlineDays: 730, ArchiveDays: 730}

// TenantCreated records a new tenant. It is the first event of every tenant stream.
type TenantCreated struct {
	// Name is the tenant's organisation name.
	Name string `json:"name"`
	// Region is the data-residency region the tenant lives in, such as "eu".
	Region string `json:"region"`
	// Retention are the retention periods.
	Retention Retention `json:"retention"`
}

// EventType implements Payload.
func (TenantCreated) EventType() string { return "tenant.created" }

// TenantRetentionChanged records new retention periods for the tenant's
// closed sessions, set by an admin; the retention worker applies them from
// its next round to every closed session not archived yet.
type TenantRetentionChanged struct {
	// Retention are the new retention periods.
	Retention Retention `json:"retention"`
	// Previous are the periods they replace.
	Previous Retention `json:"previous"`
}

// EventType implements Payload.
func (TenantRetentionChanged) EventType() string { return "tenant.retention_changed" }

// SigningKeyAdded records that the log accepts a new checkpoint signing key,
// from `vigil keys rotate-signing`. It is written to every tenant's stream
// and covered by a checkpoint signed by the key accepted until then, so that
// the old key vouches for the new one.
type SigningKeyAdded struct {
	// VerifierKey is the new key's note verifier key, such as
	// "vigil.local+2e40fa5d+AYNl…".
	VerifierKey string `json:"verifier_key"`
	// SignedBy is the verifier key of the key that signs the checkpoint
	// covering this event.
	SignedBy string `json:"signed_by"`
}

// EventType implements Payload.
func (SigningKeyAdded) EventType() string { return "tenant.signing_key_added" }

// SubjectExported records a GDPR export of everything about one data subject.
type SubjectExported struct {
	// Subject is the data subject, "technician:<id>" or "session:<guid>".
	Subject Subject `json:"subject"`
	// EventCount is the number of events exported.
	EventCount int64 `json:"event_count"`
	// Format is the export format, such as "json".
	Format string `json:"format"`
	// SHA256 is the export file's SHA-256 digest in lower-case hex.
	SHA256 string `json:"sha256"`
}

// EventType implements Payload.
func (SubjectExported) EventType() string { return "compliance.subject_exported" }

// ErasureRequested records a request to erase one data subject.
type ErasureRequested struct {
	// Subject is the data subject.
	Subject Subject `json:"subject"`
	// Reason is a short, non-personal comment.
	Reason string `json:"reason,omitempty"`
	// NotBefore is when the erasure may run, after any grace period.
	NotBefore time.Time `json:"not_before"`
}

// EventType implements Payload.
func (ErasureRequested) EventType() string { return "compliance.erasure_requested" }

// ErasureRevoked records the withdrawal of a pending erasure request.
type ErasureRevoked struct {
	// Subject is the data subject.
	Subject Subject `json:"subject"`
	// RequestEventID is the id of the erasure_requested event withdrawn.
	RequestEventID uuid.UUID `json:"request_event_id"`
	// Reason is a short, non-personal comment.
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (ErasureRevoked) EventType() string { return "compliance.erasure_revoked" }

// SubjectErased records a crypto-shredding: the subject's data key is
// destroyed. It holds no personal data.
type SubjectErased struct {
	// Subject is the data subject.
	Subject Subject `json:"subject"`
	// KeyID is the id of the destroyed data key.
	KeyID string `json:"key_id"`
	// EventsAffected counts the events whose sealed fields can no longer be opened.
	EventsAffected int64 `json:"events_affected"`
	// ProjectionRows counts the projection rows purged.
	ProjectionRows int64 `json:"projection_rows"`
	// Recordings counts the recordings deleted.
	Recordings int64 `json:"recordings"`
	// WebhookPayloads counts the stored webhook payloads purged.
	WebhookPayloads int64 `json:"webhook_payloads"`
}

// EventType implements Payload.
func (SubjectErased) EventType() string { return "compliance.subject_erased" }

// RetentionArchived records that a closed session past its online period was
// moved to the archive, encrypted and with proofs.
type RetentionArchived struct {
	// Subject is the data subject archived.
	Subject Subject `json:"subject"`
	// Object is the archive's storage key.
	Object string `json:"object"`
	// EventCount is the number of events archived.
	EventCount int64 `json:"event_count"`
	// SHA256 is the archive's SHA-256 digest in lower-case hex.
	SHA256 string `json:"sha256"`
}

// EventType implements Payload.
func (RetentionArchived) EventType() string { return "compliance.retention_archived" }

// RetentionPurged records that an archived subject past its archive period
// was shredded.
type RetentionPurged struct {
	// Subject is the data subject purged.
	Subject Subject `json:"subject"`
	// KeyID is the id of the destroyed data key.
	KeyID string `json:"key_id"`
	// EventCount is the number of events whose sealed fields were shredded.
	EventCount int64 `json:"event_count"`
	// Object is the storage key of the deleted archive, if any.
	Object string `json:"object,omitempty"`
}

// EventType implements Payload.
func (RetentionPurged) EventType() string { return "compliance.retention_purged" }

// AuditExportCreated records an auditor export of the tenant's log.
type AuditExportCreated struct {
	// FromSeq is the first Merkle sequence number exported.
	FromSeq int64 `json:"from_seq"`
	// ToSeq is the last Merkle sequence number exported.
	ToSeq int64 `json:"to_seq"`
	// TreeSize is the size of the signed checkpoint included.
	TreeSize int64 `json:"tree_size"`
	// RootHash is that checkpoint's root hash in lower-case hex.
	RootHash string `json:"root_hash"`
	// SHA256 is the export bundle's SHA-256 digest in lower-case hex.
	SHA256 string `json:"sha256"`
}

// EventType implements Payload.
func (AuditExportCreated) EventType() string { return "compliance.audit_export_created" }
