package compliance_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
)

// TestLensCameraConsentRule: in a verified bundle, a Lens camera stream
// (session.lens_stream_started, the privileged action lens_camera) must
// cite a consent to lens_camera in force, like every privileged action:
// one citing the remote-control consent, and one citing none, are
// flagged; one citing a consent to the camera passes.
func TestLensCameraConsentRule(t *testing.T) {
	f := newFixture(t)
	s, remoteGrant := f.session()
	req := f.appendEvent(s, domain.ActorTechnician, domain.ConsentRequested{TechnicianID: "t1", Action: domain.ActionLensCamera})
	camera := f.appendEvent(s, domain.ActorCustomer, domain.ConsentGranted{Action: domain.ActionLensCamera, RequestEventID: req.ID})
	f.appendEvent(s, domain.ActorTechnician, domain.LensStreamStarted{ConferenceID: "c1", Direction: domain.LensDirectionAppToConsole, TechnicianID: "t1", ConsentEventID: camera.ID})
	f.appendEvent(s, domain.ActorTechnician, domain.LensStreamStopped{Reason: "technician"})
	wrong := f.appendEvent(s, domain.ActorTechnician, domain.LensStreamStarted{ConferenceID: "c2", Direction: domain.LensDirectionAppToConsole, TechnicianID: "t1", ConsentEventID: remoteGrant})
	none := f.appendEvent(s, domain.ActorTechnician, domain.LensStreamStarted{ConferenceID: "c3", Direction: domain.LensDirectionAppToConsole, TechnicianID: "t1", ConsentEventID: uuid.Nil})

	b, _ := f.export(compliance.ExportRequest{To: -1})
	_, err := f.verify(b, nil)
	var ce *compliance.ConsentError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *ConsentError", err)
	}
	if len(ce.Findings) != 2 {
		t.Fatalf("findings: %v", err)
	}
	if ce.Findings[0].Seq != wrong.Seq || !strings.Contains(ce.Findings[0].Reason, "needs consent to lens_camera") {
		t.Errorf("first finding %v, want seq %d citing the remote-control consent", ce.Findings[0], wrong.Seq)
	}
	if ce.Findings[1].Seq != none.Seq || !strings.Contains(ce.Findings[1].Reason, "consent to lens_camera and cites none") {
		t.Errorf("second finding %v, want seq %d citing none", ce.Findings[1], none.Seq)
	}

	// The same session without the two forged streams verifies, the
	// camera's counted among the privileged actions.
	g := newFixture(t)
	s2, _ := g.session()
	req2 := g.appendEvent(s2, domain.ActorTechnician, domain.ConsentRequested{TechnicianID: "t1", Action: domain.ActionLensCamera})
	cam2 := g.appendEvent(s2, domain.ActorCustomer, domain.ConsentGranted{Action: domain.ActionLensCamera, RequestEventID: req2.ID})
	g.appendEvent(s2, domain.ActorTechnician, domain.LensStreamStarted{ConferenceID: "c1", Direction: domain.LensDirectionAppToConsole, TechnicianID: "t1", ConsentEventID: cam2.ID})
	b2, _ := g.export(compliance.ExportRequest{To: -1})
	rep, err := g.verify(b2, nil)
	if err != nil {
		t.Fatalf("a consented camera stream: %v", err)
	}
	if rep.PrivilegedActions != 2 {
		t.Errorf("%d privileged actions checked, want 2 (the remote control and the camera)", rep.PrivilegedActions)
	}
}
