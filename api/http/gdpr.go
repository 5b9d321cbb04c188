package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// GDPRService is what the GDPR endpoints (subject export, erasure) need;
// *compliance.GDPR implements it. Every method checks that p is an admin
// and scopes to p's tenant.
type GDPRService interface {
	ExportSubject(ctx context.Context, p service.Principal, subject string) (compliance.SubjectExport, error)
	RequestErasure(ctx context.Context, p service.Principal, req compliance.ErasureRequest) (compliance.Erasure, error)
	Erasure(ctx context.Context, p service.Principal, id string) (compliance.Erasure, error)
	RevokeErasure(ctx context.Context, p service.Principal, id, reason string) (compliance.Erasure, error)
}

var _ GDPRService = (*compliance.GDPR)(nil)

// gdprRoutes registers the GDPR endpoints when opts.GDPR is set.
func (a *api) gdprRoutes(mux *http.ServeMux) {
	if a.gdpr == nil {
		return
	}
	// An export's answer is everything about a person: it must never be
	// kept as a stored idempotent answer, so the export ignores
	// Idempotency-Key.
	mux.HandleFunc("POST /v1/gdpr/exports", withoutIdempotency(a.authed(a.gdprExport)))
	mux.HandleFunc("POST /v1/gdpr/erasures", a.authed(a.gdprErase))
	mux.HandleFunc("GET /v1/gdpr/erasures/{id}", a.authed(a.gdprErasure))
	mux.HandleFunc("DELETE /v1/gdpr/erasures/{id}", a.authed(a.gdprRevoke))
}

func withoutIdempotency(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Idempotency-Key")
		h(w, r)
	}
}

func (a *api) gdprExport(w http.ResponseWriter, r *http.Request) error {
	var b gdprExportBody
	if err := decode(r, &b); err != nil {
		return err
	}
	x, err := a.gdpr.ExportSubject(r.Context(), principal(r), b.Subject)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, x)
	return nil
}

func (a *api) gdprErase(w http.ResponseWriter, r *http.Request) error {
	var b gdprEraseBody
	if err := decode(r, &b); err != nil {
		return err
	}
	req := compliance.ErasureRequest{Subject: b.Subject, Scope: b.Scope, Reason: b.Reason, EventID: eventID(r)}
	if b.Delay != nil {
		d, err := time.ParseDuration(*b.Delay)
		if err != nil {
			return domain.Errorf(domain.CodeInvalid, "delay %q: want a duration such as 24h or 0s", *b.Delay)
		}
		req.Delay = &d
	}
	e, err := a.gdpr.RequestErasure(r.Context(), principal(r), req)
	if err != nil {
		return err
	}
	status := http.StatusAccepted
	if e.State == compliance.ErasureDone {
		status = http.StatusOK
	}
	writeJSON(w, status, e)
	return nil
}

func (a *api) gdprErasure(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	e, err := a.gdpr.Erasure(r.Context(), principal(r), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}

func (a *api) gdprRevoke(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	reason := r.URL.Query().Get("reason")
	if err := (service.TextRule{Kind: service.TextFree, Max: 200}).Check("reason", reason); err != nil {
		return err
	}
	e, err := a.gdpr.RevokeErasure(r.Context(), principal(r), id, reason)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}
