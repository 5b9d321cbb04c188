package domain

import "strings"

// Catalogue is the registry of every event type Vigil writes. It is built at
// package initialisation and only read afterwards, so it is safe for
// concurrent use.
//
// A type's name and its schema version are part of the tamper-evident log:
// never rename a type or change the meaning of a field; add a new schema
// version (and keep decoding the old one) instead.
var Catalogue = buildCatalogue()

func buildCatalogue() *Registry {
	r := NewRegistry()
	for _, p := range []Payload{
		// session-<guid>
		SessionCreated{},
		CustomerConnected{},
		SessionPickedUp{},
		SessionTransferred{},
		ConsentRequested{},
		ConsentGranted{},
		ConsentDenied{},
		ActionDenied{},
		RemoteControlStarted{},
		RemoteControlEnded{},
		DesktopViewStarted{},
		DesktopViewEnded{},
		FileSent{},
		FileReceived{},
		FileManagerOpened{},
		RebootRequested{},
		Reconnected{},
		SystemInfoViewed{},
		ScriptDeployed{},
		URLSent{},
		ClipboardSyncStarted{},
		ClipboardSyncEnded{},
		CredentialsRequested{},
		PrivateSessionStarted{},
		PrivateSessionEnded{},
		ScreenSharedWithCustomer{},
		ScreenShareEnded{},
		ChatMessage{},
		NoteAdded{},
		CustomFieldsSet{},
		RecordingStarted{},
		RecordingStopped{},
		RecordingStored{},
		RecordingFailed{},
		RecordingViewed{},
		RelayConnected{},
		RelayPaired{},
		RelayClosed{},
		P2PTCPListening{},
		P2PTCPTimeout{},
		P2PUDPRendezvous{},
		P2PEstablished{},
		P2PFailed{},
		LensConferenceCreated{},
		LensConferenceDestroyed{},
		LensParticipantJoined{},
		LensParticipantLeft{},
		LensStreamStarted{},
		LensStreamStopped{},
		SessionClosed{},
		// technician-<id>
		TechnicianCreated{},
		LoginSucceeded{},
		LoginFailed{},
		LockedOut{},
		Unlocked{},
		PasswordChanged{},
		PasswordChangeRequired{},
		TwoFactorEnrolled{},
		LoggedOut{},
		TechnicianDisabled{},
		TechnicianGroupChanged{},
		SSOLoginSucceeded{},
		SSOLoginFailed{},
		SSODisabled{},
		SSOEnabled{},
		SSOIDSet{},
		PasswordChangeRefused{},
		// group-<id>
		GroupCreated{},
		PermissionsChanged{},
		PolicyChanged{},
		IPAllowlistChanged{},
		// tenant-<id>
		TenantCreated{},
		TenantRetentionChanged{},
		SigningKeyAdded{},
		GatewayRegistered{},
		GatewayDown{},
		GatewayUp{},
		SSOConfigured{},
		// tenant-<id> or the subject's stream
		SubjectExported{},
		ErasureRequested{},
		ErasureRevoked{},
		SubjectErased{},
		RetentionArchived{},
		RetentionPurged{},
		AuditExportCreated{},
	} {
		r.Register(1, p)
	}
	return r
}

// IsComplianceEvent reports whether typ is a compliance.* event, which may
// be appended to the tenant stream or to a data subject's stream, and which
// may follow a session's closed event.
func IsComplianceEvent(typ string) bool { return strings.HasPrefix(typ, "compliance.") }
