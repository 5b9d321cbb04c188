package domain_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/vigilhq/vigil/domain"
)

var typeName = regexp.MustCompile(`^(session|technician|group|tenant|compliance)\.[a-z_]+$`)

func TestCatalogueTypeNames(t *testing.T) {
	types := domain.Catalogue.Types()
	if len(types) < 60 {
		t.Fatalf("catalogue has %d types, want the full catalogue", len(types))
	}
	for _, name := range types {
		t.Run(name, func(t *testing.T) {
			if !typeName.MatchString(name) {
				t.Errorf("type name %q does not match %s", name, typeName)
			}
			spec, _ := domain.Catalogue.Spec(name)
			if spec.Schema != 1 {
				t.Errorf("schema = %d, want 1", spec.Schema)
			}
			p, ok := domain.Catalogue.New(name)
			if !ok {
				t.Fatal("New failed")
			}
			if got := p.EventType(); got != name {
				t.Errorf("EventType() = %q, want %q", got, name)
			}
		})
	}
}

// TestCatalogueRequiredTypes pins the names other packages and the log
// depend on: a rename would break the tamper-evident history.
func TestCatalogueRequiredTypes(t *testing.T) {
	want := []string{
		"session.created", "session.customer_connected", "session.picked_up", "session.transferred",
		"session.consent_requested", "session.consent_granted", "session.consent_denied", "session.action_denied",
		"session.remote_control_started", "session.remote_control_ended", "session.desktop_view_started",
		"session.desktop_view_ended", "session.file_sent", "session.file_received", "session.file_manager_opened",
		"session.reboot_requested", "session.reconnected", "session.system_info_viewed", "session.script_deployed",
		"session.url_sent", "session.clipboard_sync_started", "session.clipboard_sync_ended",
		"session.credentials_requested", "session.private_session_started", "session.private_session_ended",
		"session.screen_shared_with_customer", "session.screen_share_ended", "session.chat_message",
		"session.note_added", "session.custom_fields_set", "session.recording_started", "session.recording_stopped",
		"session.recording_stored", "session.recording_failed", "session.recording_viewed",
		"session.relay_connected", "session.relay_paired", "session.relay_closed", "session.closed",
		"session.peer_tcp_listening", "session.peer_tcp_timeout", "session.peer_udp_rendezvous", "session.peer_channel_established", "session.peer_channel_failed",
		"session.lens_conference_created", "session.lens_conference_destroyed", "session.lens_participant_joined",
		"session.lens_participant_left", "session.lens_stream_started", "session.lens_stream_stopped",
		"technician.created", "technician.login_succeeded", "technician.login_failed", "technician.locked_out",
		"technician.unlocked", "technician.password_changed", "technician.password_change_required",
		"technician.two_factor_enrolled", "technician.logged_out", "technician.disabled", "technician.group_changed",
		"group.created", "group.permissions_changed", "group.policy_changed", "group.ip_allowlist_changed",
		"tenant.created", "tenant.retention_changed",
		"tenant.signing_key_added",
		"tenant.gateway_registered", "tenant.gateway_down", "tenant.gateway_up",
		"tenant.sso_configured", "technician.sso_login_succeeded", "technician.sso_login_failed",
		"technician.sso_disabled", "technician.sso_enabled", "technician.sso_id_set", "technician.password_change_refused",
		"compliance.subject_exported", "compliance.erasure_requested", "compliance.erasure_revoked",
		"compliance.subject_erased", "compliance.retention_archived", "compliance.retention_purged",
		"compliance.audit_export_created",
	}
	sort.Strings(want)
	if diff := cmp.Diff(want, domain.Catalogue.Types()); diff != "" {
		t.Errorf("catalogue types (-want +got):\n%s", diff)
	}
}

// TestSealedFields pins exactly which fields are personal.
func TestSealedFields(t *testing.T) {
	want := map[string][]string{
		"session.created":            {"custom_fields", "customer_email", "customer_name"},
		"session.customer_connected": {"ip"},
		"session.file_sent":          {"name"},
		"session.file_received":      {"name"},
		"session.script_deployed":    {"script_name"},
		"session.url_sent":           {"url"},
		"session.chat_message":       {"text"},
		"session.note_added":         {"text"},
		"session.custom_fields_set":  {"fields"},
		"session.relay_connected":    {"source_ip"},
		"technician.created":         {"email", "name"},
		"technician.login_succeeded": {"ip"},
		"technician.login_failed":    {"ip"},
		// SSO logins seal the SSO id (an e-mail address or an IdP's id of a
		// person) and the address, as password logins seal the address.
		"technician.sso_login_succeeded":     {"ip", "sso_id"},
		"technician.sso_login_failed":        {"ip", "sso_id"},
		"technician.sso_id_set":              {"sso_id"},
		"technician.password_change_refused": {"ip"},
	}
	for _, name := range domain.Catalogue.Types() {
		t.Run(name, func(t *testing.T) {
			spec, _ := domain.Catalogue.Spec(name)
			if diff := cmp.Diff(want[name], spec.Sealed); diff != "" {
				t.Errorf("sealed fields (-want +got):\n%s", diff)
			}
			if len(spec.Sealed) > 0 && !strings.HasPrefix(name, "session.") && !strings.HasPrefix(name, "technician.") {
				t.Errorf("%s has sealed fields but its stream has no data subject", name)
			}
		})
	}
}

// streamFor returns a stream an event of type name belongs on.
func streamFor(name string) string {
	switch strings.SplitN(name, ".", 2)[0] {
	case "session":
		return domain.SessionStream("0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b")
	case "technician":
		return domain.TechnicianStream("tech-1")
	case "group":
		return domain.GroupStream("group-1")
	}
	return domain.TenantStream("acme")
}

// sample fills every field of a new payload of type name with a non-zero
// value, so that a round trip exercises every field.
func sample(t testing.TB, name string) domain.Payload {
	t.Helper()
	p, ok := domain.Catalogue.New(name)
	if !ok {
		t.Fatalf("unknown type %s", name)
	}
	v := reflect.ValueOf(p).Elem()
	fill(v, 1)
	return v.Interface().(domain.Payload)
}

var (
	timeType = reflect.TypeOf(time.Time{})
	uuidType = reflect.TypeOf(uuid.UUID{})
)

func fill(v reflect.Value, n int) {
	switch {
	case v.Type() == timeType:
		v.Set(reflect.ValueOf(time.Date(2025, 3, 4, 5, 6, 7, 8000*n, time.UTC)))
		return
	case v.Type() == uuidType:
		v.Set(reflect.ValueOf(uuid.MustParse("0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b")))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			fill(v.Field(i), n+i)
		}
	case reflect.String:
		v.SetString("v" + strings.Repeat("x", n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(1000 + n))
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		m.SetMapIndex(reflect.ValueOf("k"), reflect.ValueOf("é <v> & w"))
		v.Set(m)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		fill(s.Index(0), n)
		fill(s.Index(1), n+1)
		v.Set(s)
	default:
		panic("fill: unhandled kind " + v.Kind().String())
	}
}

func TestRegistryRoundTrip(t *testing.T) {
	for _, name := range domain.Catalogue.Types() {
		t.Run(name, func(t *testing.T) {
			want := sample(t, name)
			e, err := domain.NewEvent(domain.Meta{
				Tenant:     "acme",
				Stream:     streamFor(name),
				Actor:      domain.Actor{Kind: domain.ActorSystem},
				OccurredAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			}, want)
			if err != nil {
				t.Fatalf("NewEvent: %v", err)
			}
			got, err := domain.Decode(e)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(want, reflect.ValueOf(got).Elem().Interface()); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}

			spec, _ := domain.Catalogue.Spec(name)
			var data map[string]json.RawMessage
			if err := json.Unmarshal(e.Data, &data); err != nil {
				t.Fatalf("Data is not a JSON object: %v", err)
			}
			var personal []string
			for _, pf := range e.Personal {
				personal = append(personal, pf.Name)
				if _, ok := data[pf.Name]; ok {
					t.Errorf("sealed field %s present in Data", pf.Name)
				}
				if len(pf.Value) == 0 || pf.Erased {
					t.Errorf("sealed field %s has no value", pf.Name)
				}
			}
			if diff := cmp.Diff(spec.Sealed, personal); diff != "" {
				t.Errorf("personal fields (-want +got):\n%s", diff)
			}
			for _, s := range spec.Sealed {
				if _, ok := data[s]; ok {
					t.Errorf("sealed field %s present in Data", s)
				}
			}
		})
	}
}

func TestNewEventRefusesSealedFieldsWithoutSubject(t *testing.T) {
	for _, name := range domain.Catalogue.Types() {
		spec, _ := domain.Catalogue.Spec(name)
		if len(spec.Sealed) == 0 {
			continue
		}
		for _, stream := range []string{domain.GroupStream("g"), domain.TenantStream("acme")} {
			t.Run(name+"/"+stream, func(t *testing.T) {
				_, err := domain.NewEvent(domain.Meta{Tenant: "acme", Stream: stream, Actor: domain.Actor{Kind: domain.ActorSystem}}, sample(t, name))
				if got := domain.ErrorCode(err); got != domain.CodeInvalid {
					t.Errorf("NewEvent on %s: code %q (%v), want invalid", stream, got, err)
				}
			})
		}
	}
}

func TestDecodeErasedFieldsStayZero(t *testing.T) {
	want := domain.FileSent{TechnicianID: "t", Name: "secret.pdf", Size: 3, MD5: strings.Repeat("a", 32), SHA256: strings.Repeat("b", 64)}
	e, err := domain.NewEvent(domain.Meta{Tenant: "acme", Stream: streamFor("session.x"), Actor: domain.Actor{Kind: domain.ActorSystem}}, want)
	if err != nil {
		t.Fatal(err)
	}
	for i := range e.Personal {
		e.Personal[i] = domain.PersonalField{Name: e.Personal[i].Name, Subject: e.Personal[i].Subject, Erased: true}
	}
	got, err := domain.Decode(e)
	if err != nil {
		t.Fatal(err)
	}
	want.Name = ""
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("erased decode (-want +got):\n%s", diff)
	}
}

func TestPermissions(t *testing.T) {
	perms := domain.Permissions()
	if len(perms) != 16 {
		t.Fatalf("%d permissions, want the whitepaper's fifteen and lens_camera", len(perms))
	}
	var names []string
	for _, p := range perms {
		if !p.Valid() {
			t.Errorf("%s not valid", p)
		}
		names = append(names, string(p))
		one := domain.Grant(p)
		if diff := cmp.Diff([]domain.Permission{p}, one.Granted()); diff != "" {
			t.Errorf("Grant(%s).Granted() (-want +got):\n%s", p, diff)
		}
	}
	// The JSON names of PermissionSet are the permission names.
	b, err := json.Marshal(domain.GrantAll())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]bool
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k, v := range m {
		if !v {
			t.Errorf("GrantAll: %s not granted", k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	slices.Sort(names)
	if diff := cmp.Diff(names, keys); diff != "" {
		t.Errorf("PermissionSet JSON keys (-want +got):\n%s", diff)
	}
	if domain.Permission("teleport").Valid() {
		t.Error("unknown permission reported valid")
	}
}

func TestActionRules(t *testing.T) {
	tests := []struct {
		action     domain.Action
		permission domain.Permission
		consent    bool
	}{
		{domain.ActionRemoteControl, domain.PermRemoteControl, true},
		{domain.ActionDesktopView, domain.PermDesktopView, true},
		{domain.ActionSendFile, domain.PermFileTransfer, true},
		{domain.ActionReceiveFile, domain.PermFileTransfer, true},
		{domain.ActionFileManager, domain.PermFileManager, true},
		{domain.ActionReboot, domain.PermReboot, true},
		{domain.ActionReconnect, domain.PermReboot, true},
		{domain.ActionSystemInfo, domain.PermSystemInfo, true},
		{domain.ActionDeployScript, domain.PermDeployScript, true},
		{domain.ActionSendURL, domain.PermSendURL, true},
		{domain.ActionClipboardSync, domain.PermClipboardSync, true},
		{domain.ActionRequestCredentials, domain.PermRequestCredentials, true},
		{domain.ActionPrivateSession, domain.PermPrivateSession, true},
		{domain.ActionScreenShare, domain.PermScreenShare, true},
		{domain.ActionOneTimePrompt, domain.PermOneTimePrompt, false},
		{domain.ActionTransfer, domain.PermTransferSession, false},
		{domain.ActionRecord, domain.PermRecordSessions, false},
		{domain.ActionChat, "", false},
		{domain.ActionNote, "", false},
		{domain.ActionLensCamera, domain.PermLensCamera, true},
	}
	if len(tests) != len(domain.Actions()) {
		t.Fatalf("table covers %d actions, domain has %d", len(tests), len(domain.Actions()))
	}
	covered := map[domain.Permission]bool{}
	for _, tt := range tests {
		t.Run(string(tt.action), func(t *testing.T) {
			r, ok := tt.action.Rule()
			if !ok {
				t.Fatal("no rule")
			}
			if r.Permission != tt.permission || r.Consent != tt.consent {
				t.Errorf("rule = %+v, want permission %q consent %v", r, tt.permission, tt.consent)
			}
		})
		covered[tt.permission] = true
	}
	for _, p := range domain.Permissions() {
		if !covered[p] {
			t.Errorf("no action needs permission %s", p)
		}
	}
}

func TestErrorsMatchSentinels(t *testing.T) {
	tests := []struct {
		name     string
		sentinel error
		code     string
	}{
		{"consent", domain.ErrConsentRequired, domain.CodeConsentRequired},
		{"permission", domain.ErrPermissionDenied, domain.CodePermissionDenied},
		{"closed", domain.ErrSessionClosed, domain.CodeSessionClosed},
		{"recording", domain.ErrRecordingRequired, domain.CodeRecordingRequired},
		{"forbidden", domain.ErrForbidden, domain.CodeForbidden},
		{"locked", domain.ErrLockedOut, domain.CodeLockedOut},
		{"ip", domain.ErrIPNotAllowed, domain.CodeIPNotAllowed},
		{"disabled", domain.ErrDisabled, domain.CodeDisabled},
		{"weak", domain.ErrWeakPassword, domain.CodeWeakPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := domain.ErrorCode(tt.sentinel); got != tt.code {
				t.Errorf("ErrorCode(%v) = %q, want %q", tt.sentinel, got, tt.code)
			}
			wrapped := errors.Join(errors.New("context"), tt.sentinel)
			if !errors.Is(wrapped, tt.sentinel) {
				t.Error("errors.Is failed")
			}
		})
	}
}
