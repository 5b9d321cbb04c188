package service_test

import (
	"errors"
	"testing"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// TestLensCamera: the media service's reports land on the session stream;
// the camera needs the lens_camera permission and the customer's consent,
// refusals are audited as action_denied, and nothing follows the close.
func TestLensCamera(t *testing.T) {
	w := newWorld(t)
	ctx := w.ctx
	_, mediaKey, err := w.svc.CreateAPIKey(ctx, w.tenant, service.RoleMedia, "lens")
	if err != nil {
		t.Fatal(err)
	}
	media, err := w.svc.Authenticate(ctx, mediaKey)
	if err != nil {
		t.Fatal(err)
	}
	// A group with everything but the camera.
	perms := domain.GrantAll().With(domain.PermLensCamera, false)
	name := "No camera"
	policy := domain.DefaultGroupPolicy()
	g, err := w.svc.CreateGroup(ctx, w.admin, service.GroupChange{Name: &name, Permissions: &perms, Policy: &policy}, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	w.technician(g.ID, "nocam@example.com")
	camGroup := w.group(nil)
	w.technician(camGroup, "cam@example.com")
	open := func(email, group string) string {
		tech := w.logIn(email)
		s, err := w.svc.CreateSession(ctx, w.ingest, service.NewSession{Queue: domain.QueueShared, GroupID: group}, [16]byte{})
		if err != nil {
			t.Fatal(err)
		}
		w.must(w.ingest, s.ID, `{"type":"connect_customer","platform":"ios"}`)
		w.must(tech, s.ID, `{"type":"pick_up"}`)
		return s.ID
	}
	lens := func(guid, typ string) error {
		_, err := w.svc.Lens(ctx, media, guid, service.LensCmd{Type: typ, ConferenceID: "conf-1", Participant: "lens_app"}, [16]byte{})
		return err
	}
	last := func(guid string) domain.Event {
		evs := w.stream(domain.SessionStream(guid))
		return evs[len(evs)-1]
	}

	denied := open("nocam@example.com", g.ID)
	if err := lens(denied, "conference_created"); err != nil {
		t.Fatal(err)
	}
	if err := lens(denied, "stream_started"); !errors.Is(err, domain.ErrPermissionDenied) {
		t.Errorf("camera without the permission: %v", err)
	}
	if e := last(denied); e.Type != "session.action_denied" || e.Actor.Kind != domain.ActorTechnician {
		t.Errorf("last event %s by %s, want action_denied by the technician", e.Type, e.Actor.Kind)
	}

	guid := open("cam@example.com", camGroup)
	for _, typ := range []string{"conference_created", "participant_joined"} {
		if err := lens(guid, typ); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}
	if e := last(guid); e.Actor.Kind != domain.ActorAPIKey {
		t.Errorf("a conference report by %s, want the media key", e.Actor.Kind)
	}
	if err := lens(guid, "stream_started"); !errors.Is(err, domain.ErrConsentRequired) {
		t.Errorf("camera without consent: %v", err)
	}
	tech := w.logIn("cam@example.com")
	w.must(tech, guid, `{"type":"request_consent","action":"lens_camera"}`)
	w.must(w.ingest, guid, `{"type":"grant_consent","action":"lens_camera"}`)
	if err := lens(guid, "stream_started"); err != nil {
		t.Fatal(err)
	}
	e := last(guid)
	p, err := domain.Catalogue.Decode(e)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := p.(*domain.LensStreamStarted); !ok || st.ConsentEventID == [16]byte{} || st.Direction != domain.LensDirectionAppToConsole {
		t.Errorf("stream started: %s %+v", e.Type, p)
	}
	if err := lens(guid, "stream_started"); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("a second stream: %v, want conflict", err)
	}
	if _, err := w.svc.Lens(ctx, w.admin, guid, service.LensCmd{Type: "stream_stopped", ConferenceID: "conf-1"}, [16]byte{}); !errors.Is(err, domain.ErrForbidden) {
		t.Errorf("an admin key reports Lens: %v, want forbidden", err)
	}
	w.must(w.ingest, guid, `{"type":"close"}`)
	if err := lens(guid, "stream_stopped"); !errors.Is(err, domain.ErrSessionClosed) {
		t.Errorf("Lens after the close: %v, want session_closed", err)
	}
	if err := lens(guid, "participant_left"); !errors.Is(err, domain.ErrSessionClosed) {
		t.Errorf("Lens after the close: %v, want session_closed", err)
	}
}
