package domain

import "github.com/google/uuid"

// Rescue Lens events (whitepaper, "Architecture multimédia"): the media
// service's session manager creates and destroys conferences, the console
// and the Lens app join and leave them, and the Lens app streams the
// customer's camera one way, to the console, through the streaming server.
// The media service reports each of these with an API key of role media;
// they are appended to the session's stream. Streaming the camera is a
// privileged action (lens_camera): it needs the group permission and the
// customer's consent, and a refused attempt is an action_denied. A
// conference ends when its session closes: nothing of Lens is accepted
// after the close.

// Lens participants, the values of LensParticipantJoined.Participant.
const (
	LensParticipantConsole = "console"
	LensParticipantApp     = "lens_app"
)

// LensDirectionAppToConsole is the one direction a Lens stream flows.
const LensDirectionAppToConsole = "lens_app_to_console"

// LensConferenceCreated records that the media service created a conference for the session.
type LensConferenceCreated struct {
	// ConferenceID is the media service's id of the conference.
	ConferenceID string `json:"conference_id"`
	// TechnicianID is the technician holding the session when it was created.
	TechnicianID string `json:"technician_id"`
}

// EventType implements Payload.
func (LensConferenceCreated) EventType() string { return "session.lens_conference_created" }

// LensConferenceDestroyed records that the media service destroyed a conference.
type LensConferenceDestroyed struct {
	// ConferenceID is the media service's id of the conference.
	ConferenceID string `json:"conference_id"`
	// Reason is a short code such as "technician" or "lens_app".
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (LensConferenceDestroyed) EventType() string { return "session.lens_conference_destroyed" }

// LensParticipantJoined records that a peer joined a conference.
type LensParticipantJoined struct {
	// ConferenceID is the media service's id of the conference.
	ConferenceID string `json:"conference_id"`
	// Participant is "console" or "lens_app".
	Participant string `json:"participant"`
}

// EventType implements Payload.
func (LensParticipantJoined) EventType() string { return "session.lens_participant_joined" }

// LensParticipantLeft records that a peer left a conference.
type LensParticipantLeft struct {
	// ConferenceID is the media service's id of the conference.
	ConferenceID string `json:"conference_id"`
	// Participant is "console" or "lens_app".
	Participant string `json:"participant"`
}

// EventType implements Payload.
func (LensParticipantLeft) EventType() string { return "session.lens_participant_left" }

// LensStreamStarted records that the Lens app began streaming the customer's camera to the console.
type LensStreamStarted struct {
	// ConferenceID is the media service's id of the conference.
	ConferenceID string `json:"conference_id"`
	// Direction is always "lens_app_to_console": Lens video flows one way.
	Direction string `json:"direction"`
	// TechnicianID is the technician watching.
	TechnicianID string `json:"technician_id"`
	// ConsentEventID is the id of the consent_granted event relied on.
	ConsentEventID uuid.UUID `json:"consent_event_id"`
}

// EventType implements Payload.
func (LensStreamStarted) EventType() string { return "session.lens_stream_started" }

// Action implements ActionPayload.
func (LensStreamStarted) Action() Action { return ActionLensCamera }

func (p LensStreamStarted) authorized(t string, c uuid.UUID) ActionPayload {
	p.TechnicianID, p.ConsentEventID, p.Direction = t, c, LensDirectionAppToConsole
	return p
}

func (p LensStreamStarted) validate() error {
	if p.ConferenceID == "" {
		return Errorf(CodeInvalid, "a Lens stream needs its conference")
	}
	return nil
}

// LensStreamStopped records the end of the camera stream.
type LensStreamStopped struct {
	// Reason is a short code such as "technician", "customer" or "conference_destroyed".
	Reason string `json:"reason,omitempty"`
}

// EventType implements Payload.
func (LensStreamStopped) EventType() string { return "session.lens_stream_stopped" }

// ReportLens records a conference event the media service reports (not
// the stream's start, which is Perform's, nor its end, EndAction's). It
// returns an error of code invalid for another payload or a missing
// conference or participant, and session_closed after closing.
func (s *Session) ReportLens(cmd Cmd, p Payload) ([]Event, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	var conf string
	switch p := p.(type) {
	case LensConferenceCreated:
		conf = p.ConferenceID
		if p.TechnicianID == "" {
			p.TechnicianID = s.technicianID
		}
		if conf != "" {
			return s.one(cmd, p)
		}
	case LensConferenceDestroyed:
		conf = p.ConferenceID
	case LensParticipantJoined:
		conf = p.ConferenceID
		if p.Participant != LensParticipantConsole && p.Participant != LensParticipantApp {
			return nil, Errorf(CodeInvalid, "participant %q: want console or lens_app", p.Participant)
		}
	case LensParticipantLeft:
		conf = p.ConferenceID
		if p.Participant != LensParticipantConsole && p.Participant != LensParticipantApp {
			return nil, Errorf(CodeInvalid, "participant %q: want console or lens_app", p.Participant)
		}
	default:
		return nil, Errorf(CodeInvalid, "not a Lens conference report")
	}
	if conf == "" {
		return nil, Errorf(CodeInvalid, "a Lens report needs its conference")
	}
	return s.one(cmd, p)
}
