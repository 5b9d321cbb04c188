package httpapi

import "net/http"

// GDPRService is what the GDPR endpoints (subject export, erasure) need;
// the compliance package implements it. Filled in by the GDPR work.
type GDPRService interface{}

// gdprRoutes registers the GDPR endpoints when opts.GDPR is set.
func (a *api) gdprRoutes(mux *http.ServeMux) {}
