package service_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// TestCommandsOfNonHolders sends every command type to a session, as three
// technicians who do not hold it: one of another group (who cannot read
// the session: not_found, as reading answers), one of the session's group
// who never held it (the same, except that he may try to pick it up from
// his group's shared queue), and the technician who held it before a
// transfer (he reads it: forbidden, audited as action_denied where the
// domain audits refusals). Nothing else is appended; the holder's own
// commands still run.
func TestCommandsOfNonHolders(t *testing.T) {
	w := newWorld(t)
	gA, gB := w.group(nil), w.group(nil)
	w.technician(gA, "former@example.com")
	w.technician(gA, "holder@example.com")
	mateID := w.technician(gA, "mate@example.com")
	w.technician(gB, "outsider@example.com")
	former, holder := w.logIn("former@example.com"), w.logIn("holder@example.com")
	mate, outsider := w.logIn("mate@example.com"), w.logIn("outsider@example.com")

	created, err := w.svc.CreateSession(w.ctx, w.ingest, service.NewSession{Queue: domain.QueueShared, GroupID: gA}, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	guid := created.ID
	recording := domain.NewEventID().String()
	w.must(w.ingest, guid, `{"type":"connect_customer","platform":"windows"}`)
	w.must(former, guid, `{"type":"pick_up"}`)
	w.must(former, guid, `{"type":"transfer","to_technician":"`+holder.TechnicianID+`"}`)
	w.must(holder, guid, `{"type":"start_recording","recording_id":"`+recording+`"}`)
	w.must(holder, guid, `{"type":"request_consent","action":"remote_control"}`)
	w.must(w.ingest, guid, `{"type":"grant_consent","action":"remote_control"}`)
	w.must(holder, guid, `{"type":"start","action":"remote_control"}`)

	md5, sha := strings.Repeat("a", 32), strings.Repeat("b", 64)
	bodies := map[string]string{
		"connect_customer":    `{"type":"connect_customer","platform":"linux"}`,
		"pick_up":             `{"type":"pick_up"}`,
		"request_consent":     `{"type":"request_consent","action":"desktop_view"}`,
		"grant_consent":       `{"type":"grant_consent","action":"remote_control"}`,
		"deny_consent":        `{"type":"deny_consent","action":"remote_control"}`,
		"start":               `{"type":"start","action":"desktop_view"}`,
		"end":                 `{"type":"end","action":"remote_control"}`,
		"send_file":           `{"type":"send_file","name":"a.txt","size":1,"md5":"` + md5 + `","sha256":"` + sha + `"}`,
		"receive_file":        `{"type":"receive_file","name":"a.txt","size":1,"md5":"` + md5 + `","sha256":"` + sha + `"}`,
		"reboot":              `{"type":"reboot"}`,
		"reconnected":         `{"type":"reconnected"}`,
		"view_system_info":    `{"type":"view_system_info"}`,
		"request_credentials": `{"type":"request_credentials"}`,
		"deploy_script":       `{"type":"deploy_script","name":"fix.ps1","sha256":"` + sha + `"}`,
		"send_url":            `{"type":"send_url","url":"https://example.com/help"}`,
		"chat":                `{"type":"chat","from":"technician","text":"hello"}`,
		"note":                `{"type":"note","text":"a note"}`,
		"set_custom_fields":   `{"type":"set_custom_fields","custom_fields":{"cfield0":"changed"}}`,
		"transfer":            `{"type":"transfer","to_technician":"` + mateID + `"}`,
		"start_recording":     `{"type":"start_recording"}`,
		"stop_recording":      `{"type":"stop_recording","recording_id":"` + recording + `"}`,
		"close":               `{"type":"close"}`,
		"p2p":                 `{"type":"p2p","step":"established","transport":"tcp","elapsed_ms":120}`,
	}
	// Sent by the customer's applet only: every technician is refused for
	// his role, before the session is even read.
	ingestOnly := []string{"connect_customer", "grant_consent", "deny_consent"}
	// Refused by the domain with session.action_denied (not_assigned).
	audited := []string{"request_consent", "start", "send_file", "receive_file", "reboot", "reconnected",
		"view_system_info", "request_credentials", "deploy_script", "send_url", "chat", "note", "transfer", "start_recording"}

	types := service.CommandTypes()
	slices.Sort(types)
	for _, typ := range types {
		body, ok := bodies[typ]
		if !ok {
			t.Errorf("command type %s has no case in this test", typ)
			continue
		}
		for _, c := range []struct {
			who      string
			p        service.Principal
			code     string
			appended []string
		}{
			{"OtherGroup", outsider, domain.CodeNotFound, nil},
			{"SameGroup", mate, domain.CodeNotFound, nil},
			{"FormerHolder", former, domain.CodeForbidden, nil},
		} {
			t.Run(typ+"/"+c.who, func(t *testing.T) {
				switch {
				case slices.Contains(ingestOnly, typ):
					c.code = domain.CodeForbidden
				case typ == "pick_up" && c.who != "OtherGroup":
					c.code = domain.CodeConflict // he may pick up from the queue, but the session is held
				case c.who == "FormerHolder" && slices.Contains(audited, typ):
					c.appended = []string{"session.action_denied"}
				}
				before := len(w.stream(domain.SessionStream(guid)))
				_, err := w.command(c.p, guid, body)
				if got := domain.ErrorCode(err); got != c.code {
					t.Fatalf("code %q (%v), want %s", got, err, c.code)
				}
				var got []string
				for _, e := range w.stream(domain.SessionStream(guid))[before:] {
					got = append(got, e.Type)
					if e.Actor.ID != c.p.TechnicianID || !strings.Contains(string(e.Data), `"not_assigned"`) {
						t.Errorf("appended %s by %s: %s", e.Type, e.Actor.ID, e.Data)
					}
				}
				if !slices.Equal(got, c.appended) {
					t.Errorf("appended %v, want %v", got, c.appended)
				}
			})
		}
	}
	// The holder's own commands of the issue still run.
	w.must(holder, guid, bodies["set_custom_fields"])
	w.must(holder, guid, bodies["stop_recording"])
	// A session that does not exist answers like one that cannot be read.
	_, err = w.command(outsider, strings.Repeat("0", 32), bodies["note"])
	if domain.ErrorCode(err) != domain.CodeNotFound || domain.ErrorMessage(err) != "session "+strings.Repeat("0", 32)+" does not exist" {
		t.Errorf("missing session: %v", err)
	}
}
