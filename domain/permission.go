package domain

// Permission is one of the fifteen feature permissions an administrator
// grants or refuses to a technician group (whitepaper, "Authentification et
// autorisation"). Its string form is stable and appears in the log.
type Permission string

// The fifteen permissions of the whitepaper, in its order.
const (
	PermRemoteControl      Permission = "remote_control"      // Lancer le contrôle à distance
	PermReboot             Permission = "reboot"              // Redémarrer
	PermDesktopView        Permission = "desktop_view"        // Lancer l'affichage du bureau
	PermRecordSessions     Permission = "record_sessions"     // Enregistrer les sessions
	PermFileTransfer       Permission = "file_transfer"       // Envoyer et recevoir des fichiers
	PermPrivateSession     Permission = "private_session"     // Démarrer des sessions privées
	PermFileManager        Permission = "file_manager"        // Lancer le gestionnaire de fichiers
	PermRequestCredentials Permission = "request_credentials" // Demander les identifiants Windows
	PermSendURL            Permission = "send_url"            // Envoyer des URL
	PermClipboardSync      Permission = "clipboard_sync"      // Autoriser la synchronisation du presse-papiers
	PermSystemInfo         Permission = "system_info"         // Afficher les informations système
	PermDeployScript       Permission = "deploy_script"       // Déployer des scripts
	PermOneTimePrompt      Permission = "one_time_prompt"     // Utiliser une invite unique pour toutes les autorisations
	PermTransferSession    Permission = "transfer_session"    // Transférer des sessions
	PermScreenShare        Permission = "screen_share"        // Autoriser le partage d'écran avec les clients
	// PermLensCamera is Vigil's sixteenth permission: the whitepaper's
	// fifteen have none for Rescue Lens, whose camera stream shows the
	// customer's surroundings, so a group must be granted it explicitly
	// (groups created before it exist do not have it).
	PermLensCamera Permission = "lens_camera" // Voir la caméra du client (Rescue Lens)
)

// Permissions returns the fifteen permissions in the whitepaper's order,
// then Vigil's lens_camera.
func Permissions() []Permission {
	return []Permission{
		PermRemoteControl, PermReboot, PermDesktopView, PermRecordSessions,
		PermFileTransfer, PermPrivateSession, PermFileManager,
		PermRequestCredentials, PermSendURL, PermClipboardSync, PermSystemInfo,
		PermDeployScript, PermOneTimePrompt, PermTransferSession, PermScreenShare,
		PermLensCamera,
	}
}

// Valid reports whether p is one of the fifteen permissions.
func (p Permission) Valid() bool {
	var s PermissionSet
	_, ok := s.field(p)
	return ok
}

// PermissionSet is the set of permissions granted to a group: one flag per
// permission, all fifteen always present in the log so that a reader never
// has to guess a default.
type PermissionSet struct {
	// RemoteControl: start remote control (Lancer le contrôle à distance).
	RemoteControl bool `json:"remote_control"`
	// Reboot: reboot the device and reconnect (Redémarrer).
	Reboot bool `json:"reboot"`
	// DesktopView: view the desktop without control (Lancer l'affichage du bureau).
	DesktopView bool `json:"desktop_view"`
	// RecordSessions: record sessions (Enregistrer les sessions).
	RecordSessions bool `json:"record_sessions"`
	// FileTransfer: send and receive files (Envoyer et recevoir des fichiers).
	FileTransfer bool `json:"file_transfer"`
	// PrivateSession: start private sessions (Démarrer des sessions privées).
	PrivateSession bool `json:"private_session"`
	// FileManager: open the file manager (Lancer le gestionnaire de fichiers).
	FileManager bool `json:"file_manager"`
	// RequestCredentials: ask for Windows credentials (Demander les identifiants Windows).
	RequestCredentials bool `json:"request_credentials"`
	// SendURL: send URLs (Envoyer des URL).
	SendURL bool `json:"send_url"`
	// ClipboardSync: synchronise the clipboard (Autoriser la synchronisation du presse-papiers).
	ClipboardSync bool `json:"clipboard_sync"`
	// SystemInfo: view system information (Afficher les informations système).
	SystemInfo bool `json:"system_info"`
	// DeployScript: deploy scripts (Déployer des scripts).
	DeployScript bool `json:"deploy_script"`
	// OneTimePrompt: ask one consent for all actions (Utiliser une invite unique pour toutes les autorisations); the group policy must allow it too.
	OneTimePrompt bool `json:"one_time_prompt"`
	// TransferSession: transfer sessions (Transférer des sessions).
	TransferSession bool `json:"transfer_session"`
	// ScreenShare: share the technician's screen with the customer (Autoriser le partage d'écran avec les clients).
	ScreenShare bool `json:"screen_share"`
	// LensCamera: watch the customer's camera through Rescue Lens (Vigil's sixteenth permission; absent from older events, read as refused).
	LensCamera bool `json:"lens_camera"`
}

// GrantAll returns a set with all fifteen permissions granted.
func GrantAll() PermissionSet { return Grant(Permissions()...) }

// Grant returns a set with exactly the permissions ps granted. It panics on
// an unknown permission, which is a programming error.
func Grant(ps ...Permission) PermissionSet {
	var s PermissionSet
	for _, p := range ps {
		s = s.With(p, true)
	}
	return s
}

// Has reports whether p is granted; unknown permissions are never granted.
func (s PermissionSet) Has(p Permission) bool {
	f, ok := s.field(p)
	return ok && *f
}

// With returns a copy of s with p granted or refused. It panics on an
// unknown permission, which is a programming error.
func (s PermissionSet) With(p Permission, granted bool) PermissionSet {
	f, ok := s.field(p)
	if !ok {
		panic("domain: unknown permission " + string(p))
	}
	*f = granted
	return s
}

// Granted returns the granted permissions in the whitepaper's order.
func (s PermissionSet) Granted() []Permission {
	var out []Permission
	for _, p := range Permissions() {
		if s.Has(p) {
			out = append(out, p)
		}
	}
	return out
}

// field returns a pointer to p's flag in s (a copy when s is a value
// receiver's copy, which is what With relies on).
func (s *PermissionSet) field(p Permission) (*bool, bool) {
	switch p {
	case PermRemoteControl:
		return &s.RemoteControl, true
	case PermReboot:
		return &s.Reboot, true
	case PermDesktopView:
		return &s.DesktopView, true
	case PermRecordSessions:
		return &s.RecordSessions, true
	case PermFileTransfer:
		return &s.FileTransfer, true
	case PermPrivateSession:
		return &s.PrivateSession, true
	case PermFileManager:
		return &s.FileManager, true
	case PermRequestCredentials:
		return &s.RequestCredentials, true
	case PermSendURL:
		return &s.SendURL, true
	case PermClipboardSync:
		return &s.ClipboardSync, true
	case PermSystemInfo:
		return &s.SystemInfo, true
	case PermDeployScript:
		return &s.DeployScript, true
	case PermOneTimePrompt:
		return &s.OneTimePrompt, true
	case PermTransferSession:
		return &s.TransferSession, true
	case PermScreenShare:
		return &s.ScreenShare, true
	case PermLensCamera:
		return &s.LensCamera, true
	}
	return nil, false
}

// Action is something a technician does in a session. Each action names the
// permission it needs and whether it needs the customer's consent; see
// ActionRule. Its string form is stable and appears in the log.
type Action string

// The session actions.
const (
	ActionRemoteControl      Action = "remote_control"
	ActionDesktopView        Action = "desktop_view"
	ActionSendFile           Action = "send_file"
	ActionReceiveFile        Action = "receive_file"
	ActionFileManager        Action = "file_manager"
	ActionReboot             Action = "reboot"
	ActionReconnect          Action = "reconnect"
	ActionSystemInfo         Action = "system_info"
	ActionDeployScript       Action = "deploy_script"
	ActionSendURL            Action = "send_url"
	ActionClipboardSync      Action = "clipboard_sync"
	ActionRequestCredentials Action = "request_credentials"
	ActionPrivateSession     Action = "private_session"
	ActionScreenShare        Action = "screen_share"
	// ActionLensCamera streams the customer's camera to the console
	// through Rescue Lens.
	ActionLensCamera Action = "lens_camera"
	// ActionOneTimePrompt asks the customer for consent to all actions at
	// once. As the action of a consent event it means "every action".
	ActionOneTimePrompt Action = "one_time_prompt"
	ActionTransfer      Action = "transfer"
	ActionRecord        Action = "record"
	ActionChat          Action = "chat"
	ActionNote          Action = "note"
)

// ActionRule says what an action needs.
type ActionRule struct {
	// Permission is the group permission the action needs; "" for none.
	Permission Permission
	// Consent reports whether the action needs the customer's consent.
	Consent bool
	// ConsentAction is the action whose consent covers this one; it equals
	// the action itself except for reconnect, which relies on the consent
	// given to reboot (the whitepaper pairs "le redémarrage et la
	// reconnexion").
	ConsentAction Action
	// ForcedRecording reports whether the group's forced-recording policy
	// refuses the action until a recording runs.
	ForcedRecording bool
	// Continuous reports whether the action stays in force until ended
	// (remote control, desktop view, clipboard sync, private session,
	// screen share) rather than happening once.
	Continuous bool
}

var actionRules = map[Action]ActionRule{
	ActionRemoteControl:      {Permission: PermRemoteControl, Consent: true, ConsentAction: ActionRemoteControl, ForcedRecording: true, Continuous: true},
	ActionDesktopView:        {Permission: PermDesktopView, Consent: true, ConsentAction: ActionDesktopView, ForcedRecording: true, Continuous: true},
	ActionSendFile:           {Permission: PermFileTransfer, Consent: true, ConsentAction: ActionSendFile},
	ActionReceiveFile:        {Permission: PermFileTransfer, Consent: true, ConsentAction: ActionReceiveFile},
	ActionFileManager:        {Permission: PermFileManager, Consent: true, ConsentAction: ActionFileManager},
	ActionReboot:             {Permission: PermReboot, Consent: true, ConsentAction: ActionReboot},
	ActionReconnect:          {Permission: PermReboot, Consent: true, ConsentAction: ActionReboot},
	ActionSystemInfo:         {Permission: PermSystemInfo, Consent: true, ConsentAction: ActionSystemInfo},
	ActionDeployScript:       {Permission: PermDeployScript, Consent: true, ConsentAction: ActionDeployScript},
	ActionSendURL:            {Permission: PermSendURL, Consent: true, ConsentAction: ActionSendURL},
	ActionClipboardSync:      {Permission: PermClipboardSync, Consent: true, ConsentAction: ActionClipboardSync, Continuous: true},
	ActionRequestCredentials: {Permission: PermRequestCredentials, Consent: true, ConsentAction: ActionRequestCredentials},
	ActionPrivateSession:     {Permission: PermPrivateSession, Consent: true, ConsentAction: ActionPrivateSession, Continuous: true},
	ActionScreenShare:        {Permission: PermScreenShare, Consent: true, ConsentAction: ActionScreenShare, Continuous: true},
	ActionLensCamera:         {Permission: PermLensCamera, Consent: true, ConsentAction: ActionLensCamera, Continuous: true},
	ActionOneTimePrompt:      {Permission: PermOneTimePrompt},
	ActionTransfer:           {Permission: PermTransferSession},
	ActionRecord:             {Permission: PermRecordSessions},
	ActionChat:               {},
	ActionNote:               {},
}

// Rule returns what action a needs, and false for an unknown action.
func (a Action) Rule() (ActionRule, bool) {
	r, ok := actionRules[a]
	return r, ok
}

// Valid reports whether a is a known session action.
func (a Action) Valid() bool {
	_, ok := actionRules[a]
	return ok
}

// Actions returns every session action, in a stable order.
func Actions() []Action {
	return []Action{
		ActionRemoteControl, ActionDesktopView, ActionSendFile, ActionReceiveFile,
		ActionFileManager, ActionReboot, ActionReconnect, ActionSystemInfo,
		ActionDeployScript, ActionSendURL, ActionClipboardSync,
		ActionRequestCredentials, ActionPrivateSession, ActionScreenShare,
		ActionOneTimePrompt, ActionTransfer, ActionRecord, ActionChat, ActionNote,
		ActionLensCamera,
	}
}

// consentable reports whether a customer can be asked to consent to a: the
// actions that need consent and are their own consent action, plus the
// one-time prompt.
func (a Action) consentable() bool {
	if a == ActionOneTimePrompt {
		return true
	}
	r, ok := actionRules[a]
	return ok && r.Consent && r.ConsentAction == a
}
