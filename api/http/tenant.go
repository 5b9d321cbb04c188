package httpapi

import (
	"net/http"

	"github.com/vigilhq/vigil/domain"
)

func (a *api) tenantRoutes(mux *http.ServeMux) {
	mux.HandleFunc("PUT /v1/tenant/retention", a.authed(a.changeRetention))
}

// retentionBody is the body of PUT /v1/tenant/retention.
type retentionBody struct {
	OnlineDays  *int `json:"online_days"`
	ArchiveDays *int `json:"archive_days"`
}

// changeRetention sets the caller's tenant's retention periods (admin):
// 200 with the periods in force.
func (a *api) changeRetention(w http.ResponseWriter, r *http.Request) error {
	var b retentionBody
	if err := decode(r, &b); err != nil {
		return err
	}
	if b.OnlineDays == nil || b.ArchiveDays == nil {
		return domain.Errorf(domain.CodeInvalid, "online_days and archive_days are required")
	}
	got, err := a.svc.ChangeRetention(r.Context(), principal(r), domain.Retention{OnlineDays: *b.OnlineDays, ArchiveDays: *b.ArchiveDays}, eventID(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"retention": got})
	return nil
}
