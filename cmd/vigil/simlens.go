package main

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// simLensReport is a report of the Rescue Lens media service.
type simLensReport struct {
	Type         string `json:"type"`
	ConferenceID string `json:"conference_id"`
	Participant  string `json:"participant,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

func (ss *simSession) media(ctx context.Context, r simLensReport) error {
	var out simCommandResult
	return ss.s.c.do(ctx, simCall{method: http.MethodPost, path: "/v1/sessions/" + url.PathEscape(ss.id) + "/lens", label: "lens " + r.Type,
		cred: ss.s.cfg.mediaKey, idem: ss.s.idemKey(), want: http.StatusOK, in: r, out: &out})
}

// lens runs a Rescue Lens conference in the session, as the media service
// reports it: the conference, the console and the Lens app joining, a
// camera stream refused for want of the customer's consent (audited),
// the consent asked and given, the stream (a few milliseconds of it), and,
// in half of them, the end of it all; the others are left for the
// session's close to end.
func (ss *simSession) lens(ctx context.Context) error {
	conf := "conf-" + ss.id[:8] + "-" + strconv.Itoa(ss.r.IntN(1000))
	for _, r := range []simLensReport{
		{Type: "conference_created", ConferenceID: conf},
		{Type: "participant_joined", ConferenceID: conf, Participant: "console"},
		{Type: "participant_joined", ConferenceID: conf, Participant: "lens_app"},
	} {
		if err := ss.media(ctx, r); err != nil {
			return err
		}
	}
	err := ss.media(ctx, simLensReport{Type: "stream_started", ConferenceID: conf})
	if err := ss.s.expect(err, http.StatusConflict, "consent_required"); err != nil {
		return err
	}
	if err := ss.tech(ctx, simCommand{Type: "request_consent", Action: "lens_camera"}); err != nil {
		return err
	}
	if err := ss.customer(ctx, simCommand{Type: "grant_consent", Action: "lens_camera"}); err != nil {
		return err
	}
	if err := ss.media(ctx, simLensReport{Type: "stream_started", ConferenceID: conf}); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(5+ss.r.IntN(20)) * time.Millisecond):
	}
	if ss.chance(0.5) {
		return nil // the session's close ends it
	}
	for _, r := range []simLensReport{
		{Type: "stream_stopped", ConferenceID: conf, Reason: "technician"},
		{Type: "participant_left", ConferenceID: conf, Participant: "lens_app"},
		{Type: "participant_left", ConferenceID: conf, Participant: "console"},
		{Type: "conference_destroyed", ConferenceID: conf, Reason: "technician"},
	} {
		if err := ss.media(ctx, r); err != nil {
			return err
		}
	}
	return nil
}
