package httpapi

import (
	"net/http"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// lensBody is a report of the Rescue Lens media service.
type lensBody = service.LensCmd

// lensRoutes registers the media service's endpoint: what happens to the
// Lens conferences of a session (docs/api.md, "Rescue Lens").
func (a *api) lensRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/sessions/{id}/lens", a.authed(a.lensReport))
}

func (a *api) lensReport(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var b lensBody
	if err := decode(r, &b); err != nil {
		return err
	}
	evs, err := a.svc.Lens(r.Context(), principal(r), id, b, eventID(r))
	if err != nil {
		return err
	}
	writeAppended(w, evs)
	return nil
}

// writeAppended answers 200 with the events a command appended.
func writeAppended(w http.ResponseWriter, evs []domain.Event) {
	out := make([]appended, 0, len(evs))
	for _, e := range evs {
		out = append(out, appended{ID: e.ID.String(), Type: e.Type, Version: e.Version, Position: e.Position, Data: e.Data})
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": out})
}
