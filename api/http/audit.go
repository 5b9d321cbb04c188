package httpapi

import "net/http"

// AuditService is what the auditor endpoints (exports, checkpoints,
// proofs, receipts) need; the compliance package implements it. Filled in
// by the auditor-export work.
type AuditService interface{}

// auditRoutes registers the auditor endpoints when opts.Audit is set.
func (a *api) auditRoutes(mux *http.ServeMux) {}
