package service

import (
	"context"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
)

// LensCmd is what the Rescue Lens media service reports about a session
// (POST /v1/sessions/{id}/lens, an API key of role media): type is
// conference_created, conference_destroyed, participant_joined,
// participant_left, stream_started or stream_stopped.
type LensCmd struct {
	Type         string `json:"type" text:"line,64"`
	ConferenceID string `json:"conference_id" text:"id"`
	Participant  string `json:"participant,omitempty" text:"line,64"`
	Reason       string `json:"reason,omitempty" text:"text,1000"`
}

// Lens records what the media service reports about session guid. The
// camera stream is the technician's privileged action lens_camera: the
// session's holder must be granted the lens_camera permission by his group
// and hold the customer's consent; a refusal is appended as
// session.action_denied and returned (permission_denied,
// consent_required). The camera's events are recorded with the holding
// technician as actor (the console asked the media service for the
// stream); the conference's with the media key. Errors: forbidden for
// another role, not_found, session_closed (a conference ends with its
// session), conflict for a stream already running or not running, invalid.
func (s *Service) Lens(ctx context.Context, p Principal, guid string, c LensCmd, eventID [16]byte) ([]domain.Event, error) {
	if p.Role != RoleMedia {
		return nil, errForbidden("Lens reports come from the media service (an API key of role media)")
	}
	if _, err := uuid.Parse(guid); err != nil || len(guid) != 32 {
		return nil, errNotFound("session %s does not exist", guid)
	}
	if err := CheckText(&c); err != nil {
		return nil, err
	}
	return retry(ctx, func() ([]domain.Event, error) {
		sess := domain.NewSession(p.Tenant, guid)
		if err := s.load(ctx, sess); err != nil {
			return nil, err
		}
		if !sess.Exists() {
			return nil, errNotFound("session %s does not exist", guid)
		}
		media := domain.Cmd{Actor: p.Actor(), At: s.Now(), EventID: eventID}
		var (
			events []domain.Event
			err    error
		)
		switch c.Type {
		case "conference_created":
			events, err = sess.ReportLens(media, domain.LensConferenceCreated{ConferenceID: c.ConferenceID, TechnicianID: sess.TechnicianID()})
		case "conference_destroyed":
			events, err = sess.ReportLens(media, domain.LensConferenceDestroyed{ConferenceID: c.ConferenceID, Reason: c.Reason})
		case "participant_joined":
			events, err = sess.ReportLens(media, domain.LensParticipantJoined{ConferenceID: c.ConferenceID, Participant: c.Participant})
		case "participant_left":
			events, err = sess.ReportLens(media, domain.LensParticipantLeft{ConferenceID: c.ConferenceID, Participant: c.Participant})
		case "stream_started", "stream_stopped":
			if sess.Closed() {
				return nil, &domain.Error{Code: domain.CodeSessionClosed, Message: "the session is closed: its conferences ended with it", Err: domain.ErrSessionClosed}
			}
			holder := sess.TechnicianID()
			if holder == "" {
				return nil, &domain.Error{Code: domain.CodeConflict, Message: "nobody holds the session", Err: domain.ErrConflict}
			}
			tech, terr := s.loadTechnician(ctx, p.Tenant, holder)
			if terr != nil {
				return nil, terr
			}
			as := domain.Cmd{Actor: domain.Actor{Kind: domain.ActorTechnician, ID: holder}, At: media.At, EventID: eventID}
			if c.Type == "stream_stopped" {
				events, err = sess.EndAction(as, domain.ActionLensCamera, c.Reason)
				break
			}
			g, gerr := s.loadGroup(ctx, p.Tenant, tech.GroupID())
			if gerr != nil {
				return nil, gerr
			}
			events, err = sess.Perform(as, tech, g, domain.LensStreamStarted{ConferenceID: c.ConferenceID})
		default:
			return nil, domain.Errorf(domain.CodeInvalid, "Lens report %q: want conference_created, conference_destroyed, participant_joined, participant_left, stream_started or stream_stopped", c.Type)
		}
		if err != nil && len(events) == 0 {
			return nil, err
		}
		return s.commit(ctx, sess, events, err)
	})
}
