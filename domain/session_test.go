package domain_test

import (
	"encoding/json"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/vigilhq/vigil/domain"
)

// consentOf returns the consent_event_id and technician_id of a privileged
// action event.
func consentOf(t testing.TB, e domain.Event) (uuid.UUID, string) {
	t.Helper()
	var d struct {
		ConsentEventID uuid.UUID `json:"consent_event_id"`
		TechnicianID   string    `json:"technician_id"`
	}
	if err := json.Unmarshal(e.Data, &d); err != nil {
		t.Fatal(err)
	}
	return d.ConsentEventID, d.TechnicianID
}

func denied(t testing.TB, events []domain.Event) domain.ActionDenied {
	t.Helper()
	return payload[domain.ActionDenied](t, events)
}

func TestPerformRefusedWithoutPermission(t *testing.T) {
	for _, p := range actionSamples() {
		rule, _ := p.Action().Rule()
		t.Run(string(p.Action()), func(t *testing.T) {
			// Everything but the permission the action needs, and consent in force.
			w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
			w.consent(t, rule.ConsentAction, at(time.Minute))
			ok(t)(w.group.SetPermissions(byAdmin(at(time.Minute)), domain.GrantAll().With(rule.Permission, false)))
			w.s.ClearChanges()

			evs, err := w.s.Perform(byTech("alice", at(2*time.Minute)), w.tech, w.group, p)
			wantErr(t, err, domain.CodePermissionDenied, domain.ErrPermissionDenied)
			want := domain.ActionDenied{TechnicianID: "alice", Action: p.Action(), Reason: domain.DenyPermission}
			if diff := cmp.Diff(want, denied(t, evs)); diff != "" {
				t.Errorf("action_denied (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(evs, w.s.Changes()); diff != "" {
				t.Errorf("Changes() differ from returned events:\n%s", diff)
			}
		})
	}
}

func TestPerformRefusedWithoutConsent(t *testing.T) {
	for _, p := range actionSamples() {
		t.Run(string(p.Action()), func(t *testing.T) {
			w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
			evs, err := w.s.Perform(byTech("alice", at(time.Minute)), w.tech, w.group, p)
			wantErr(t, err, domain.CodeConsentRequired, domain.ErrConsentRequired)
			want := domain.ActionDenied{TechnicianID: "alice", Action: p.Action(), Reason: domain.DenyConsent}
			if diff := cmp.Diff(want, denied(t, evs)); diff != "" {
				t.Errorf("action_denied (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPerformWithPerActionConsent(t *testing.T) {
	for _, p := range actionSamples() {
		rule, _ := p.Action().Rule()
		t.Run(string(p.Action()), func(t *testing.T) {
			w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
			grant := w.consent(t, rule.ConsentAction, at(time.Minute))
			evs := ok(t)(w.s.Perform(byTech("alice", at(2*time.Minute)), w.tech, w.group, p))
			wantTypes(t, evs, p.EventType())
			id, tech := consentOf(t, evs[0])
			if id != grant.ID {
				t.Errorf("consent_event_id = %s, want the grant %s", id, grant.ID)
			}
			if tech != "alice" {
				t.Errorf("technician_id = %q, want alice", tech)
			}
		})
	}
}

func TestConsentIsPerAction(t *testing.T) {
	w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
	w.consent(t, domain.ActionSystemInfo, at(time.Minute))
	_, err := w.s.Perform(byTech("alice", at(2*time.Minute)), w.tech, w.group, domain.RemoteControlStarted{})
	wantErr(t, err, domain.CodeConsentRequired, domain.ErrConsentRequired)
	ok(t)(w.s.Perform(byTech("alice", at(3*time.Minute)), w.tech, w.group, domain.SystemInfoViewed{}))
}

func TestOneTimePrompt(t *testing.T) {
	allow := domain.DefaultGroupPolicy()
	allow.OneTimePromptAllowed = true
	tests := []struct {
		name   string
		perms  domain.PermissionSet
		policy domain.GroupPolicy
		wantOK bool
	}{
		{"allowed and granted", domain.GrantAll(), allow, true},
		{"policy refuses", domain.GrantAll(), domain.DefaultGroupPolicy(), false},
		{"permission missing", domain.GrantAll().With(domain.PermOneTimePrompt, false), allow, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, tt.perms, tt.policy)
			evs, err := w.s.RequestConsent(byTech("alice", at(time.Minute)), w.tech, w.group, domain.ActionOneTimePrompt)
			if !tt.wantOK {
				wantErr(t, err, domain.CodePermissionDenied, domain.ErrPermissionDenied)
				want := domain.ActionDenied{TechnicianID: "alice", Action: domain.ActionOneTimePrompt, Reason: domain.DenyPermission}
				if diff := cmp.Diff(want, denied(t, evs)); diff != "" {
					t.Errorf("action_denied (-want +got):\n%s", diff)
				}
				return
			}
			wantTypes(t, ok(t)(evs, err), "session.consent_requested")
			grant := ok(t)(w.s.GrantConsent(byCustomer(at(time.Minute)), domain.ActionOneTimePrompt))[0]
			if id, _ := w.s.GlobalConsent(); id != grant.ID {
				t.Fatalf("GlobalConsent = %s, want %s", id, grant.ID)
			}
			for i, p := range actionSamples() {
				evs := ok(t)(w.s.Perform(byTech("alice", at(time.Duration(i+2)*time.Minute)), w.tech, w.group, p))
				if id, _ := consentOf(t, evs[0]); id != grant.ID {
					t.Errorf("%s: consent_event_id = %s, want the one-time prompt's %s", p.EventType(), id, grant.ID)
				}
			}
		})
	}
}

func TestOneTimePromptConsentUnusableOnceGroupDisallows(t *testing.T) {
	allow := domain.DefaultGroupPolicy()
	allow.OneTimePromptAllowed = true
	w := newWorld(t, domain.GrantAll(), allow)
	w.consent(t, domain.ActionOneTimePrompt, at(time.Minute))
	ok(t)(w.group.SetPolicy(byAdmin(at(2*time.Minute)), domain.DefaultGroupPolicy()))
	_, err := w.s.Perform(byTech("alice", at(3*time.Minute)), w.tech, w.group, domain.SystemInfoViewed{})
	wantErr(t, err, domain.CodeConsentRequired, domain.ErrConsentRequired)
}

func TestPerActionConsentPreferredOverGlobal(t *testing.T) {
	allow := domain.DefaultGroupPolicy()
	allow.OneTimePromptAllowed = true
	w := newWorld(t, domain.GrantAll(), allow)
	w.consent(t, domain.ActionOneTimePrompt, at(time.Minute))
	own := w.consent(t, domain.ActionReboot, at(2*time.Minute))
	evs := ok(t)(w.s.Perform(byTech("alice", at(3*time.Minute)), w.tech, w.group, domain.RebootRequested{}))
	if id, _ := consentOf(t, evs[0]); id != own.ID {
		t.Errorf("consent_event_id = %s, want the reboot consent %s", id, own.ID)
	}
	// Reconnect relies on the consent given to reboot.
	evs = ok(t)(w.s.Perform(byTech("alice", at(4*time.Minute)), w.tech, w.group, domain.Reconnected{}))
	if id, _ := consentOf(t, evs[0]); id != own.ID {
		t.Errorf("reconnect consent_event_id = %s, want the reboot consent %s", id, own.ID)
	}
}

func TestConsentDenied(t *testing.T) {
	w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
	req := ok(t)(w.s.RequestConsent(byTech("alice", at(time.Minute)), w.tech, w.group, domain.ActionRemoteControl))[0]
	deny := payload[domain.ConsentDenied](t, ok(t)(w.s.DenyConsent(byCustomer(at(time.Minute)), domain.ActionRemoteControl)))
	if diff := cmp.Diff(domain.ConsentDenied{Action: domain.ActionRemoteControl, RequestEventID: req.ID}, deny); diff != "" {
		t.Errorf("consent_denied (-want +got):\n%s", diff)
	}
	_, err := w.s.Perform(byTech("alice", at(2*time.Minute)), w.tech, w.group, domain.RemoteControlStarted{})
	wantErr(t, err, domain.CodeConsentRequired, domain.ErrConsentRequired)

	// A later refusal ends a consent given earlier.
	w.consent(t, domain.ActionRemoteControl, at(3*time.Minute))
	ok(t)(w.s.RequestConsent(byTech("alice", at(4*time.Minute)), w.tech, w.group, domain.ActionRemoteControl))
	ok(t)(w.s.DenyConsent(byCustomer(at(4*time.Minute)), domain.ActionRemoteControl))
	if _, has := w.s.Consent(domain.ActionRemoteControl); has {
		t.Error("consent still in force after the customer refused")
	}
}

func TestConsentAnswerRules(t *testing.T) {
	tests := []struct {
		name     string
		cmd      domain.Cmd
		action   domain.Action
		request  bool
		code     string
		sentinel error
	}{
		{"technician cannot grant", byTech("alice", at(time.Minute)), domain.ActionRemoteControl, true, domain.CodeForbidden, domain.ErrForbidden},
		{"system cannot grant", bySystem(at(time.Minute)), domain.ActionRemoteControl, true, domain.CodeForbidden, domain.ErrForbidden},
		{"nothing pending", byCustomer(at(time.Minute)), domain.ActionRemoteControl, false, domain.CodeConflict, domain.ErrConflict},
		{"other action pending", byCustomer(at(time.Minute)), domain.ActionReboot, true, domain.CodeConflict, domain.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
			if tt.request {
				ok(t)(w.s.RequestConsent(byTech("alice", at(time.Minute)), w.tech, w.group, domain.ActionRemoteControl))
			}
			evs, err := w.s.GrantConsent(tt.cmd, tt.action)
			wantErr(t, err, tt.code, tt.sentinel)
			wantTypes(t, evs)
		})
	}
}

func TestRequestConsentRules(t *testing.T) {
	tests := []struct {
		name   string
		perms  domain.PermissionSet
		action domain.Action
		code   string
		audit  bool
	}{
		{"no permission", domain.GrantAll().With(domain.PermReboot, false), domain.ActionReboot, domain.CodePermissionDenied, true},
		{"reconnect relies on reboot", domain.GrantAll(), domain.ActionReconnect, domain.CodeInvalid, false},
		{"transfer needs no consent", domain.GrantAll(), domain.ActionTransfer, domain.CodeInvalid, false},
		{"chat needs no consent", domain.GrantAll(), domain.ActionChat, domain.CodeInvalid, false},
		{"unknown action", domain.GrantAll(), "teleport", domain.CodeInvalid, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, tt.perms, domain.DefaultGroupPolicy())
			evs, err := w.s.RequestConsent(byTech("alice", at(time.Minute)), w.tech, w.group, tt.action)
			wantErr(t, err, tt.code, nil)
			if tt.audit {
				wantTypes(t, evs, "session.action_denied")
			} else {
				wantTypes(t, evs)
			}
		})
	}
}

func TestCloseRevokesConsents(t *testing.T) {
	allow := domain.DefaultGroupPolicy()
	allow.OneTimePromptAllowed = true
	w := newWorld(t, domain.GrantAll(), allow)
	w.consent(t, domain.ActionRemoteControl, at(time.Minute))
	w.consent(t, domain.ActionOneTimePrompt, at(time.Minute))
	ok(t)(w.s.Perform(byTech("alice", at(2*time.Minute)), w.tech, w.group, domain.RemoteControlStarted{}))
	ok(t)(w.s.RequestConsent(byTech("alice", at(2*time.Minute)), w.tech, w.group, domain.ActionReboot))

	closed := payload[domain.SessionClosed](t, ok(t)(w.s.Close(byCustomer(at(3*time.Minute)), domain.ClosedByCustomer, "done")))
	if closed.ClosedBy != domain.ClosedByCustomer {
		t.Errorf("closed_by = %q", closed.ClosedBy)
	}
	if _, has := w.s.Consent(domain.ActionRemoteControl); has {
		t.Error("per-action consent survives close")
	}
	if _, has := w.s.GlobalConsent(); has {
		t.Error("one-time-prompt consent survives close")
	}
	if _, has := w.s.PendingConsent(domain.ActionReboot); has {
		t.Error("pending request survives close")
	}
	if w.s.Active(domain.ActionRemoteControl) {
		t.Error("remote control still running after close")
	}
	if got := w.s.State(); got != domain.SessionStateClosed {
		t.Errorf("state = %q", got)
	}
}

func TestCommandsAfterCloseRefused(t *testing.T) {
	tests := []struct {
		name  string
		run   func(w *world) ([]domain.Event, error)
		audit bool // records action_denied with reason session_closed
	}{
		{"perform", func(w *world) ([]domain.Event, error) {
			return w.s.Perform(byTech("alice", at(time.Hour)), w.tech, w.group, domain.SystemInfoViewed{})
		}, true},
		{"request consent", func(w *world) ([]domain.Event, error) {
			return w.s.RequestConsent(byTech("alice", at(time.Hour)), w.tech, w.group, domain.ActionReboot)
		}, true},
		{"technician chat", func(w *world) ([]domain.Event, error) {
			return w.s.Chat(byTech("alice", at(time.Hour)), "hello?", w.group)
		}, true},
		{"note", func(w *world) ([]domain.Event, error) {
			return w.s.AddNote(byTech("alice", at(time.Hour)), w.tech, "late note")
		}, true},
		{"start recording", func(w *world) ([]domain.Event, error) {
			return w.s.StartRecording(byTech("alice", at(time.Hour)), w.tech, w.group, "rec-2")
		}, true},
		{"transfer", func(w *world) ([]domain.Event, error) {
			return w.s.Transfer(byTech("alice", at(time.Hour)), w.tech, w.group, w.other, "")
		}, true},
		{"customer chat", func(w *world) ([]domain.Event, error) {
			return w.s.Chat(byCustomer(at(time.Hour)), "hello?", w.group)
		}, false},
		{"grant consent", func(w *world) ([]domain.Event, error) {
			return w.s.GrantConsent(byCustomer(at(time.Hour)), domain.ActionReboot)
		}, false},
		{"custom fields", func(w *world) ([]domain.Event, error) {
			return w.s.SetCustomFields(bySystem(at(time.Hour)), map[string]string{"a": "b"})
		}, false},
		{"connect customer", func(w *world) ([]domain.Event, error) {
			return w.s.ConnectCustomer(byCustomer(at(time.Hour)), "macos", "", mustAddr("192.0.2.1"), w.group)
		}, false},
		{"relay connect", func(w *world) ([]domain.Event, error) {
			return w.s.ConnectRelay(domain.Cmd{Actor: domain.Actor{Kind: domain.ActorRelay, ID: "r1"}, At: at(time.Hour)}, domain.RelaySideCustomer, "r1", mustAddr("192.0.2.1"), w.group)
		}, false},
		{"end action", func(w *world) ([]domain.Event, error) {
			return w.s.EndAction(byCustomer(at(time.Hour)), domain.ActionRemoteControl, "customer")
		}, false},
		{"close again", func(w *world) ([]domain.Event, error) {
			return w.s.Close(bySystem(at(time.Hour)), domain.ClosedByInactivity, "")
		}, false},
		{"pick up", func(w *world) ([]domain.Event, error) {
			return w.s.PickUp(byTech("bob", at(time.Hour)), w.other)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
			ok(t)(w.s.Close(byTech("alice", at(time.Minute)), domain.ClosedByTechnician, ""))
			w.s.ClearChanges()
			evs, err := tt.run(w)
			wantErr(t, err, domain.CodeSessionClosed, domain.ErrSessionClosed)
			if tt.audit {
				if got := denied(t, evs).Reason; got != domain.DenySessionClosed {
					t.Errorf("reason = %q, want session_closed", got)
				}
			} else {
				wantTypes(t, evs)
			}
		})
	}
}

func TestAcceptedAfterClose(t *testing.T) {
	w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
	ok(t)(w.s.StartRecording(byTech("alice", at(time.Minute)), w.tech, w.group, "rec-1"))
	ok(t)(w.s.Close(byCustomer(at(2*time.Minute)), domain.ClosedByCustomer, ""))
	w.s.ClearChanges()

	api := bySystem(at(3 * time.Minute))
	ok(t)(w.s.StopRecording(api, "rec-1", "closed"))
	ok(t)(w.s.StoreRecording(api, domain.RecordingStored{RecordingID: "rec-1", Object: "rec/" + guid + "/rec-1", Size: 42, MD5: repeatHex("ab", 16), SHA256: repeatHex("cd", 32)}))
	ok(t)(w.s.ViewRecording(byAdmin(at(time.Hour)), "rec-1"))
	ok(t)(w.s.CloseRelay(domain.Cmd{Actor: domain.Actor{Kind: domain.ActorRelay, ID: "r1"}, At: at(3 * time.Minute)}, domain.RelayClosed{RelayID: "r1", BytesFromCustomer: 10, BytesFromTechnician: 20, DurationMS: 1000, Reason: "customer_closed"}))
	ok(t)(w.s.RecordCompliance(byAdmin(at(time.Hour)), domain.SubjectExported{Subject: domain.SessionSubject(guid), EventCount: 9, Format: "json", SHA256: repeatHex("ef", 32)}))
	wantTypes(t, w.s.Changes(),
		"session.recording_stopped", "session.recording_stored", "session.recording_viewed",
		"session.relay_closed", "compliance.subject_exported")

	for _, typ := range types(w.s.Changes()) {
		if !domain.AllowedAfterClose(typ) {
			t.Errorf("AllowedAfterClose(%q) = false", typ)
		}
	}
	if domain.AllowedAfterClose("session.chat_message") {
		t.Error("chat allowed after close")
	}
}

func repeatHex(s string, n int) string {
	out := ""
	for range n {
		out += s
	}
	return out
}

func TestWrongTechnicianRefused(t *testing.T) {
	w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
	w.consent(t, domain.ActionRemoteControl, at(time.Minute))
	tests := []struct {
		name string
		run  func() ([]domain.Event, error)
		act  domain.Action
	}{
		{"perform", func() ([]domain.Event, error) {
			return w.s.Perform(byTech("bob", at(2*time.Minute)), w.other, w.group, domain.RemoteControlStarted{})
		}, domain.ActionRemoteControl},
		{"request consent", func() ([]domain.Event, error) {
			return w.s.RequestConsent(byTech("bob", at(2*time.Minute)), w.other, w.group, domain.ActionReboot)
		}, domain.ActionReboot},
		{"chat", func() ([]domain.Event, error) {
			return w.s.Chat(byTech("bob", at(2*time.Minute)), "hi", w.group)
		}, domain.ActionChat},
		{"note", func() ([]domain.Event, error) {
			return w.s.AddNote(byTech("bob", at(2*time.Minute)), w.other, "hi")
		}, domain.ActionNote},
		{"transfer", func() ([]domain.Event, error) {
			return w.s.Transfer(byTech("bob", at(2*time.Minute)), w.other, w.group, w.tech, "")
		}, domain.ActionTransfer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := tt.run()
			wantErr(t, err, domain.CodeForbidden, domain.ErrForbidden)
			want := domain.ActionDenied{TechnicianID: "bob", Action: tt.act, Reason: domain.DenyNotAssigned}
			if diff := cmp.Diff(want, denied(t, evs)); diff != "" {
				t.Errorf("action_denied (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("close", func(t *testing.T) {
		_, err := w.s.Close(byTech("bob", at(2*time.Minute)), domain.ClosedByTechnician, "")
		wantErr(t, err, domain.CodeForbidden, domain.ErrForbidden)
	})
	t.Run("end action", func(t *testing.T) {
		ok(t)(w.s.Perform(byTech("alice", at(3*time.Minute)), w.tech, w.group, domain.RemoteControlStarted{}))
		_, err := w.s.EndAction(byTech("bob", at(4*time.Minute)), domain.ActionRemoteControl, "")
		wantErr(t, err, domain.CodeForbidden, domain.ErrForbidden)
	})
	t.Run("actor is not the technician", func(t *testing.T) {
		evs, err := w.s.Perform(byTech("bob", at(2*time.Minute)), w.tech, w.group, domain.RemoteControlStarted{})
		wantErr(t, err, domain.CodeInvalid, nil)
		wantTypes(t, evs)
	})
}

func TestDisabledTechnicianRefused(t *testing.T) {
	w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
	w.consent(t, domain.ActionSystemInfo, at(time.Minute))
	ok(t)(w.tech.Disable(byAdmin(at(2*time.Minute)), "left"))
	evs, err := w.s.Perform(byTech("alice", at(3*time.Minute)), w.tech, w.group, domain.SystemInfoViewed{})
	wantErr(t, err, domain.CodeDisabled, domain.ErrDisabled)
	if got := denied(t, evs).Reason; got != domain.DenyPermission {
		t.Errorf("reason = %q, want permission_denied", got)
	}
}

func TestTransfer(t *testing.T) {
	t.Run("needs permission", func(t *testing.T) {
		w := newWorld(t, domain.GrantAll().With(domain.PermTransferSession, false), domain.DefaultGroupPolicy())
		evs, err := w.s.Transfer(byTech("alice", at(time.Minute)), w.tech, w.group, w.other, "")
		wantErr(t, err, domain.CodePermissionDenied, domain.ErrPermissionDenied)
		want := domain.ActionDenied{TechnicianID: "alice", Action: domain.ActionTransfer, Reason: domain.DenyPermission}
		if diff := cmp.Diff(want, denied(t, evs)); diff != "" {
			t.Errorf("action_denied (-want +got):\n%s", diff)
		}
	})
	t.Run("hands over without consent and ends consents", func(t *testing.T) {
		w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
		w.consent(t, domain.ActionRemoteControl, at(time.Minute))
		ok(t)(w.s.Perform(byTech("alice", at(2*time.Minute)), w.tech, w.group, domain.RemoteControlStarted{}))

		tr := payload[domain.SessionTransferred](t, ok(t)(w.s.Transfer(byTech("alice", at(3*time.Minute)), w.tech, w.group, w.other, "escalation")))
		want := domain.SessionTransferred{FromTechnicianID: "alice", ToTechnicianID: "bob", ToGroupID: "support", Reason: "escalation"}
		if diff := cmp.Diff(want, tr); diff != "" {
			t.Errorf("transferred (-want +got):\n%s", diff)
		}
		if got := w.s.TechnicianID(); got != "bob" {
			t.Errorf("holder = %q, want bob", got)
		}
		if w.s.Active(domain.ActionRemoteControl) {
			t.Error("remote control survives the transfer")
		}
		// The previous technician may no longer act.
		_, err := w.s.Perform(byTech("alice", at(4*time.Minute)), w.tech, w.group, domain.RemoteControlStarted{})
		wantErr(t, err, domain.CodeForbidden, domain.ErrForbidden)
		// The new one needs fresh consent.
		_, err = w.s.Perform(byTech("bob", at(4*time.Minute)), w.other, w.group, domain.RemoteControlStarted{})
		wantErr(t, err, domain.CodeConsentRequired, domain.ErrConsentRequired)
		grant := w.consent(t, domain.ActionRemoteControl, at(5*time.Minute))
		evs := ok(t)(w.s.Perform(byTech("bob", at(6*time.Minute)), w.other, w.group, domain.RemoteControlStarted{}))
		if id, tech := consentOf(t, evs[0]); id != grant.ID || tech != "bob" {
			t.Errorf("consent %s by %s, want %s by bob", id, tech, grant.ID)
		}
	})
	t.Run("target rules", func(t *testing.T) {
		w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
		_, err := w.s.Transfer(byTech("alice", at(time.Minute)), w.tech, w.group, w.tech, "")
		wantErr(t, err, domain.CodeInvalid, nil)
		_, err = w.s.Transfer(byTech("alice", at(time.Minute)), w.tech, w.group, domain.NewTechnician(tenant, "ghost"), "")
		wantErr(t, err, domain.CodeNotFound, domain.ErrNotFound)
		ok(t)(w.other.Disable(byAdmin(at(time.Minute)), ""))
		_, err = w.s.Transfer(byTech("alice", at(time.Minute)), w.tech, w.group, w.other, "")
		wantErr(t, err, domain.CodeDisabled, domain.ErrDisabled)
	})
}

func TestForcedRecording(t *testing.T) {
	forced := domain.DefaultGroupPolicy()
	forced.ForcedRecording = true
	for _, p := range []domain.ActionPayload{domain.RemoteControlStarted{}, domain.DesktopViewStarted{}} {
		t.Run(string(p.Action()), func(t *testing.T) {
			w := newWorld(t, domain.GrantAll(), forced)
			w.consent(t, p.Action(), at(time.Minute))
			evs, err := w.s.Perform(byTech("alice", at(2*time.Minute)), w.tech, w.group, p)
			wantErr(t, err, domain.CodeRecordingRequired, domain.ErrRecordingRequired)
			if got := denied(t, evs).Reason; got != domain.DenyRecording {
				t.Errorf("reason = %q, want recording_required", got)
			}
			ok(t)(w.s.StartRecording(byTech("alice", at(3*time.Minute)), w.tech, w.group, "rec-1"))
			ok(t)(w.s.Perform(byTech("alice", at(4*time.Minute)), w.tech, w.group, p))
		})
	}
	t.Run("other actions unaffected", func(t *testing.T) {
		w := newWorld(t, domain.GrantAll(), forced)
		w.consent(t, domain.ActionSystemInfo, at(time.Minute))
		ok(t)(w.s.Perform(byTech("alice", at(2*time.Minute)), w.tech, w.group, domain.SystemInfoViewed{}))
	})
	t.Run("stopped recording no longer counts", func(t *testing.T) {
		w := newWorld(t, domain.GrantAll(), forced)
		w.consent(t, domain.ActionRemoteControl, at(time.Minute))
		ok(t)(w.s.StartRecording(byTech("alice", at(2*time.Minute)), w.tech, w.group, "rec-1"))
		ok(t)(w.s.StopRecording(byTech("alice", at(3*time.Minute)), "rec-1", ""))
		_, err := w.s.Perform(byTech("alice", at(4*time.Minute)), w.tech, w.group, domain.RemoteControlStarted{})
		wantErr(t, err, domain.CodeRecordingRequired, domain.ErrRecordingRequired)
	})
}

func TestRecordingNeedsPermission(t *testing.T) {
	w := newWorld(t, domain.GrantAll().With(domain.PermRecordSessions, false), domain.DefaultGroupPolicy())
	evs, err := w.s.StartRecording(byTech("alice", at(time.Minute)), w.tech, w.group, "rec-1")
	wantErr(t, err, domain.CodePermissionDenied, domain.ErrPermissionDenied)
	want := domain.ActionDenied{TechnicianID: "alice", Action: domain.ActionRecord, Reason: domain.DenyPermission}
	if diff := cmp.Diff(want, denied(t, evs)); diff != "" {
		t.Errorf("action_denied (-want +got):\n%s", diff)
	}
}

func TestRecordingLifecycle(t *testing.T) {
	w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
	cmd := byTech("alice", at(time.Minute))
	ok(t)(w.s.StartRecording(cmd, w.tech, w.group, "rec-1"))
	_, err := w.s.StartRecording(cmd, w.tech, w.group, "rec-1")
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict)
	_, err = w.s.ViewRecording(byAdmin(at(time.Hour)), "rec-1")
	wantErr(t, err, domain.CodeNotFound, domain.ErrNotFound)
	_, err = w.s.StoreRecording(bySystem(at(time.Hour)), domain.RecordingStored{RecordingID: "rec-1", Object: "o", MD5: "nothex", SHA256: repeatHex("cd", 32)})
	wantErr(t, err, domain.CodeInvalid, nil)
	ok(t)(w.s.FailRecording(bySystem(at(time.Hour)), domain.RecordingFailed{RecordingID: "rec-1", Reason: "s3 unavailable", Attempts: 5}))
	_, err = w.s.StoreRecording(bySystem(at(time.Hour)), domain.RecordingStored{RecordingID: "rec-1", Object: "o", MD5: repeatHex("ab", 16), SHA256: repeatHex("cd", 32)})
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict)
	_, err = w.s.StopRecording(bySystem(at(time.Hour)), "rec-9", "")
	wantErr(t, err, domain.CodeNotFound, domain.ErrNotFound)
}

func TestChatStorage(t *testing.T) {
	noChat := domain.DefaultGroupPolicy()
	noChat.StoreChat = false
	tests := []struct {
		name   string
		policy domain.GroupPolicy
		cmd    domain.Cmd
		want   *domain.ChatMessage
	}{
		{"technician, stored", domain.DefaultGroupPolicy(), byTech("alice", at(time.Minute)), &domain.ChatMessage{From: "technician", SenderID: "alice", Text: "hello"}},
		{"customer, stored", domain.DefaultGroupPolicy(), byCustomer(at(time.Minute)), &domain.ChatMessage{From: "customer", Text: "hello"}},
		{"technician, not stored", noChat, byTech("alice", at(time.Minute)), nil},
		{"customer, not stored", noChat, byCustomer(at(time.Minute)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Chat needs no permission and no consent.
			w := newWorld(t, domain.PermissionSet{}, tt.policy)
			evs := ok(t)(w.s.Chat(tt.cmd, "hello", w.group))
			if tt.want == nil {
				wantTypes(t, evs)
				wantTypes(t, w.s.Changes())
				return
			}
			if diff := cmp.Diff(*tt.want, payload[domain.ChatMessage](t, evs)); diff != "" {
				t.Errorf("chat (-want +got):\n%s", diff)
			}
			if len(evs[0].Personal) != 1 || evs[0].Personal[0].Name != "text" || evs[0].Personal[0].Subject != domain.ChatSubject(guid) {
				t.Errorf("chat text not sealed under the session's chat subject: %+v", evs[0].Personal)
			}
		})
	}
}

func TestNotesNeedNeitherPermissionNorConsent(t *testing.T) {
	w := newWorld(t, domain.PermissionSet{}, domain.DefaultGroupPolicy())
	n := payload[domain.NoteAdded](t, ok(t)(w.s.AddNote(byTech("alice", at(time.Minute)), w.tech, "printer fixed")))
	if diff := cmp.Diff(domain.NoteAdded{TechnicianID: "alice", Text: "printer fixed"}, n); diff != "" {
		t.Errorf("note (-want +got):\n%s", diff)
	}
}

func TestCustomerIPStorage(t *testing.T) {
	noIP := domain.DefaultGroupPolicy()
	noIP.StoreCustomerIP = false
	tests := []struct {
		name     string
		policy   domain.GroupPolicy
		customer string
		techSide string
	}{
		{"stored", domain.DefaultGroupPolicy(), "2001:db8::7", "198.51.100.4"},
		{"not stored", noIP, "", "198.51.100.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGroup(t, "support", domain.GrantAll(), tt.policy)
			s := domain.NewSession(tenant, guid)
			ok(t)(s.Create(bySystem(t0), domain.SessionCreated{PIN: "123456", Queue: domain.QueueShared, GroupID: "support"}))
			evs := ok(t)(s.ConnectCustomer(byCustomer(at(time.Second)), "windows", "1.0", mustAddr("2001:db8::7"), g))
			if got := payload[domain.CustomerConnected](t, evs).IP; got != tt.customer {
				t.Errorf("customer_connected ip = %q, want %q", got, tt.customer)
			}
			if tt.customer == "" && len(evs[0].Personal) != 0 {
				t.Errorf("personal fields recorded: %+v", evs[0].Personal)
			}
			relay := domain.Cmd{Actor: domain.Actor{Kind: domain.ActorRelay, ID: "r1"}, At: at(2 * time.Second)}
			evs = ok(t)(s.ConnectRelay(relay, domain.RelaySideCustomer, "r1", mustAddr("2001:db8::7"), g))
			if got := payload[domain.RelayConnected](t, evs).SourceIP; got != tt.customer {
				t.Errorf("customer relay source_ip = %q, want %q", got, tt.customer)
			}
			evs = ok(t)(s.ConnectRelay(relay, domain.RelaySideTechnician, "r1", mustAddr("198.51.100.4"), g))
			if got := payload[domain.RelayConnected](t, evs).SourceIP; got != tt.techSide {
				t.Errorf("technician relay source_ip = %q, want %q", got, tt.techSide)
			}
		})
	}
}

func TestContinuousActions(t *testing.T) {
	w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
	w.consent(t, domain.ActionRemoteControl, at(time.Minute))
	ok(t)(w.s.Perform(byTech("alice", at(2*time.Minute)), w.tech, w.group, domain.RemoteControlStarted{}))
	_, err := w.s.Perform(byTech("alice", at(3*time.Minute)), w.tech, w.group, domain.RemoteControlStarted{})
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict)
	// The customer may end it at any time.
	wantTypes(t, ok(t)(w.s.EndAction(byCustomer(at(4*time.Minute)), domain.ActionRemoteControl, "customer")), "session.remote_control_ended")
	_, err = w.s.EndAction(byCustomer(at(5*time.Minute)), domain.ActionRemoteControl, "customer")
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict)
	_, err = w.s.EndAction(byCustomer(at(5*time.Minute)), domain.ActionReboot, "")
	wantErr(t, err, domain.CodeInvalid, nil)
	// Consent is still in force: the technician may start again.
	ok(t)(w.s.Perform(byTech("alice", at(6*time.Minute)), w.tech, w.group, domain.RemoteControlStarted{}))
}

func TestInvalidActionPayloads(t *testing.T) {
	tests := []struct {
		name string
		p    domain.ActionPayload
	}{
		{"file without name", domain.FileSent{Size: 1, MD5: repeatHex("ab", 16), SHA256: repeatHex("cd", 32)}},
		{"upper-case md5", domain.FileReceived{Name: "a", MD5: repeatHex("AB", 16), SHA256: repeatHex("cd", 32)}},
		{"short sha256", domain.FileSent{Name: "a", MD5: repeatHex("ab", 16), SHA256: "cd"}},
		{"negative size", domain.FileSent{Name: "a", Size: -1, MD5: repeatHex("ab", 16), SHA256: repeatHex("cd", 32)}},
		{"script without name", domain.ScriptDeployed{}},
		{"relative url", domain.URLSent{URL: "/help"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
			evs, err := w.s.Perform(byTech("alice", at(time.Minute)), w.tech, w.group, tt.p)
			wantErr(t, err, domain.CodeInvalid, nil)
			wantTypes(t, evs)
		})
	}
}

func TestSessionLifecycle(t *testing.T) {
	g := newGroup(t, "support", domain.GrantAll(), domain.DefaultGroupPolicy())
	alice := newTech(t, "alice", "support")
	bob := newTech(t, "bob", "support")
	eve := newTech(t, "eve", "other")

	t.Run("create validation", func(t *testing.T) {
		tests := []struct {
			name string
			guid string
			p    domain.SessionCreated
		}{
			{"guid not a uuid", "not-a-uuid", domain.SessionCreated{Queue: domain.QueueShared, GroupID: "support"}},
			{"no group", guid, domain.SessionCreated{Queue: domain.QueueShared}},
			{"private without technician", guid, domain.SessionCreated{Queue: domain.QueuePrivate, PIN: "1", GroupID: "support"}},
			{"bad queue", guid, domain.SessionCreated{Queue: "vip", GroupID: "support"}},
			{"pin not digits", guid, domain.SessionCreated{Queue: domain.QueueShared, PIN: "12a", GroupID: "support"}},
			{"guid mismatch", guid, domain.SessionCreated{GUID: "0190a3c4-0000-7e8f-9a0b-1c2d3e4f5a6b", Queue: domain.QueueShared, GroupID: "support"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := domain.NewSession(tenant, tt.guid).Create(bySystem(t0), tt.p)
				wantErr(t, err, domain.CodeInvalid, nil)
			})
		}
	})

	s := domain.NewSession(tenant, guid)
	if s.State() != domain.SessionStateNone {
		t.Fatalf("state of a new session = %q", s.State())
	}
	_, err := s.Chat(byCustomer(t0), "hi", g)
	wantErr(t, err, domain.CodeNotFound, domain.ErrNotFound)

	created := payload[domain.SessionCreated](t, ok(t)(s.Create(bySystem(t0), domain.SessionCreated{PIN: "123456", Queue: domain.QueuePrivate, TechnicianID: "alice", GroupID: "support", CustomerName: "Jean Dupont"})))
	if created.GUID != guid {
		t.Errorf("guid = %q, want %q", created.GUID, guid)
	}
	_, err = s.Create(bySystem(t0), domain.SessionCreated{Queue: domain.QueueShared, GroupID: "support"})
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict)
	if s.State() != domain.SessionStateWaiting {
		t.Errorf("state = %q, want waiting", s.State())
	}

	_, err = s.PickUp(byTech("alice", at(time.Second)), alice)
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict) // no customer yet

	ok(t)(s.ConnectCustomer(byCustomer(at(time.Second)), "windows", "7.1", mustAddr("192.0.2.1"), g))
	if s.State() != domain.SessionStateQueued {
		t.Errorf("state = %q, want queued", s.State())
	}
	_, err = s.PickUp(byTech("bob", at(2*time.Second)), bob)
	wantErr(t, err, domain.CodeForbidden, domain.ErrForbidden) // alice's private queue
	_, err = s.ConnectCustomer(byCustomer(at(time.Second)), "windows", "", mustAddr("192.0.2.1"), newGroup(t, "other", domain.GrantAll(), domain.DefaultGroupPolicy()))
	wantErr(t, err, domain.CodeInvalid, nil) // not the governing group

	picked := payload[domain.SessionPickedUp](t, ok(t)(s.PickUp(byTech("alice", at(2*time.Second)), alice)))
	if diff := cmp.Diff(domain.SessionPickedUp{TechnicianID: "alice", GroupID: "support"}, picked); diff != "" {
		t.Errorf("picked_up (-want +got):\n%s", diff)
	}
	if s.State() != domain.SessionStateActive {
		t.Errorf("state = %q, want active", s.State())
	}
	_, err = s.PickUp(byTech("alice", at(3*time.Second)), alice)
	wantErr(t, err, domain.CodeConflict, domain.ErrConflict)

	// A technician of another group is checked against their own group.
	_, err = s.Authorize(domain.ActionChat, eve, g)
	wantErr(t, err, domain.CodeInvalid, nil)

	// Replaying the recorded events rebuilds the same state.
	replay := domain.NewSession(tenant, guid)
	if err := replay.Load(s.Changes()); err != nil {
		t.Fatal(err)
	}
	if replay.State() != s.State() || replay.TechnicianID() != "alice" || replay.Version() != s.Version() || replay.StoredVersion() != s.Version() {
		t.Errorf("replayed session differs: state %q holder %q version %d", replay.State(), replay.TechnicianID(), replay.Version())
	}
	if err := domain.NewSession(tenant, "0190a3c4-0000-7e8f-9a0b-1c2d3e4f5a6b").Load(s.Changes()); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Errorf("loading another stream's events: %v, want invalid", err)
	}
	if err := domain.NewSession(tenant, guid).Load(s.Changes()[1:]); domain.ErrorCode(err) != domain.CodeInvalid {
		t.Errorf("loading events out of order: %v, want invalid", err)
	}
}

func TestCloseRules(t *testing.T) {
	tests := []struct {
		name string
		cmd  domain.Cmd
		by   domain.ClosedBy
		code string
	}{
		{"holder", byTech("alice", at(time.Minute)), domain.ClosedByTechnician, ""},
		{"customer", byCustomer(at(time.Minute)), domain.ClosedByCustomer, ""},
		{"inactivity", bySystem(at(time.Minute)), domain.ClosedByInactivity, ""},
		{"relay", domain.Cmd{Actor: domain.Actor{Kind: domain.ActorRelay, ID: "r1"}, At: at(time.Minute)}, domain.ClosedByRelay, ""},
		{"admin", byAdmin(at(time.Minute)), domain.ClosedByAdmin, ""},
		{"customer claiming technician", byCustomer(at(time.Minute)), domain.ClosedByTechnician, domain.CodeForbidden},
		{"technician claiming customer", byTech("alice", at(time.Minute)), domain.ClosedByCustomer, domain.CodeForbidden},
		{"unknown closer", bySystem(at(time.Minute)), "gremlins", domain.CodeInvalid},
		{"no time", domain.Cmd{Actor: domain.Actor{Kind: domain.ActorSystem}}, domain.ClosedByAdmin, domain.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
			evs, err := w.s.Close(tt.cmd, tt.by, "")
			if tt.code != "" {
				wantErr(t, err, tt.code, nil)
				wantTypes(t, evs)
				return
			}
			if got := payload[domain.SessionClosed](t, ok(t)(evs, err)).ClosedBy; got != tt.by {
				t.Errorf("closed_by = %q, want %q", got, tt.by)
			}
		})
	}
}

func TestIdleSince(t *testing.T) {
	w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
	last := at(2 * time.Second) // the pick-up
	if got := w.s.LastActivity(); !got.Equal(last) {
		t.Fatalf("LastActivity = %v, want %v", got, last)
	}
	timeout := domain.DefaultGroupPolicy().SessionInactivityTimeout.Duration()
	tests := []struct {
		name    string
		now     time.Time
		timeout time.Duration
		want    bool
	}{
		{"just active", last.Add(time.Minute), timeout, false},
		{"one second short", last.Add(timeout - time.Second), timeout, false},
		{"at the timeout", last.Add(timeout), timeout, true},
		{"long idle", last.Add(10 * timeout), timeout, true},
		{"disabled timeout", last.Add(10 * timeout), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := w.s.IdleSince(tt.now, tt.timeout); got != tt.want {
				t.Errorf("IdleSince = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("activity resets", func(t *testing.T) {
		ok(t)(w.s.Chat(byCustomer(last.Add(timeout-time.Second)), "still there", w.group))
		if w.s.IdleSince(last.Add(timeout), timeout) {
			t.Error("idle right after a chat message")
		}
	})
	t.Run("system events are not activity", func(t *testing.T) {
		before := w.s.LastActivity()
		ok(t)(w.s.PairRelay(domain.Cmd{Actor: domain.Actor{Kind: domain.ActorRelay, ID: "r1"}, At: before.Add(time.Hour)}, domain.RelayPaired{RelayID: "r1"}))
		if !w.s.LastActivity().Equal(before) {
			t.Error("relay event counted as activity")
		}
	})
	t.Run("closed sessions are not idle", func(t *testing.T) {
		ok(t)(w.s.Close(bySystem(last.Add(2*timeout)), domain.ClosedByInactivity, "idle"))
		if w.s.IdleSince(last.Add(10*timeout), timeout) {
			t.Error("closed session reported idle")
		}
	})
}

func TestCustomFieldsAreSealed(t *testing.T) {
	w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
	evs := ok(t)(w.s.SetCustomFields(bySystem(at(time.Minute)), map[string]string{"ticket": "42", "name": "Jean"}))
	if string(evs[0].Data) != "{}" {
		t.Errorf("public data = %s, want {}", evs[0].Data)
	}
	if diff := cmp.Diff(map[string]string{"ticket": "42", "name": "Jean"}, payload[domain.CustomFieldsSet](t, evs).Fields); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	_, err := w.s.SetCustomFields(bySystem(at(time.Minute)), nil)
	wantErr(t, err, domain.CodeInvalid, nil)
}

func TestProducerEventID(t *testing.T) {
	w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
	id := uuid.MustParse("0190a3c4-aaaa-7e8f-9a0b-1c2d3e4f5a6b")
	cmd := byCustomer(at(time.Minute))
	cmd.EventID = id
	evs := ok(t)(w.s.Chat(cmd, "hi", w.group))
	if evs[0].ID != id {
		t.Errorf("event id = %s, want the producer's %s", evs[0].ID, id)
	}
	if evs[0].Version != w.s.StoredVersion()+1 {
		t.Errorf("version = %d, want %d", evs[0].Version, w.s.StoredVersion()+1)
	}
}

// TestLateRelayReports: relay reports travel through the bus and may
// arrive after the session closed; what happened before the close is still
// recorded, what claims to happen after it is refused.
func TestLateRelayReports(t *testing.T) {
	w := newWorld(t, domain.GrantAll(), domain.DefaultGroupPolicy())
	closeAt := at(time.Hour)
	ok(t)(w.s.Close(bySystem(closeAt), domain.ClosedByInactivity, "idle"))
	relay := func(when time.Time) domain.Cmd {
		return domain.Cmd{Actor: domain.Actor{Kind: domain.ActorRelay, ID: "r1"}, At: when}
	}
	ip := netip.MustParseAddr("192.0.2.1")
	ok(t)(w.s.ConnectRelay(relay(closeAt.Add(-time.Minute)), domain.RelaySideCustomer, "r1", ip, w.group))
	ok(t)(w.s.PairRelay(relay(closeAt), domain.RelayPaired{RelayID: "r1", PairingMS: 5}))
	if _, err := w.s.ConnectRelay(relay(closeAt.Add(time.Second)), domain.RelaySideTechnician, "r1", ip, w.group); !errors.Is(err, domain.ErrSessionClosed) {
		t.Errorf("relay connection after the close: %v, want session_closed", err)
	}
	if _, err := w.s.PairRelay(relay(closeAt.Add(time.Second)), domain.RelayPaired{RelayID: "r1"}); !errors.Is(err, domain.ErrSessionClosed) {
		t.Errorf("relay pairing after the close: %v, want session_closed", err)
	}
}

// TestSessionClone: a clone of a session loaded to any point, with the rest
// loaded onto it, equals the session loaded from the start; and what is
// done to a clone leaves the original as it was.
func TestSessionClone(t *testing.T) {
	g := newGroup(t, "support", domain.GrantAll(), domain.DefaultGroupPolicy())
	alice := newTech(t, "alice", "support")
	s := domain.NewSession(tenant, guid)
	var all []domain.Event
	add := func(evs []domain.Event, _ error) { all = append(all, evs...) }
	add(s.Create(bySystem(t0), domain.SessionCreated{PIN: "123456", Queue: domain.QueueShared, GroupID: "support"}))
	add(s.ConnectCustomer(byCustomer(at(time.Second)), "windows", "1.0", mustAddr("192.0.2.7"), g))
	add(s.PickUp(byTech("alice", at(2*time.Second)), alice))
	add(s.Perform(byTech("alice", at(3*time.Second)), alice, g, domain.RemoteControlStarted{})) // refused: no consent
	add(s.RequestConsent(byTech("alice", at(4*time.Second)), alice, g, domain.ActionRemoteControl))
	add(s.GrantConsent(byCustomer(at(5*time.Second)), domain.ActionRemoteControl))
	add(s.Perform(byTech("alice", at(6*time.Second)), alice, g, domain.RemoteControlStarted{}))
	add(s.RequestConsent(byTech("alice", at(7*time.Second)), alice, g, domain.ActionSystemInfo))
	if len(all) < 7 {
		t.Fatalf("only %d events recorded", len(all))
	}
	full := domain.NewSession(tenant, guid)
	if err := full.Load(all); err != nil {
		t.Fatal(err)
	}
	for k := range len(all) + 1 {
		snap := domain.NewSession(tenant, guid)
		if err := snap.Load(all[:k]); err != nil {
			t.Fatal(err)
		}
		c := snap.Clone()
		if err := c.Load(all[k:]); err != nil {
			t.Fatalf("load %d events onto a clone at %d: %v", len(all)-k, k, err)
		}
		if !reflect.DeepEqual(c, full) {
			t.Errorf("a clone at %d with the rest loaded differs from the session loaded whole", k)
		}
		// Change the clone: the snapshot must not move.
		_, _ = c.GrantConsent(byCustomer(at(time.Hour)), domain.ActionSystemInfo)
		_, _ = c.Perform(byTech("alice", at(time.Hour)), alice, g, domain.SystemInfoViewed{})
		again := domain.NewSession(tenant, guid)
		if err := again.Load(all[:k]); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(snap, again) {
			t.Errorf("changing a clone changed the snapshot at %d", k)
		}
	}
}
