package httpapi

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
)

// AuditService is what the auditor endpoints (exports, checkpoints,
// proofs, receipts) need; *compliance.Auditor implements it. Every method
// is scoped to one tenant and returns domain errors (invalid, not_found)
// for bad input.
type AuditService interface {
	// Export writes the bundle to w, writing nothing when the request is
	// refused.
	Export(ctx context.Context, req compliance.ExportRequest, w io.Writer) (compliance.ExportResult, error)
	LatestCheckpoint(ctx context.Context, tenant string) (ledger.Checkpoint, error)
	InclusionProof(ctx context.Context, tenant string, seq, size int64) (compliance.InclusionProof, error)
	ConsistencyProof(ctx context.Context, tenant string, from, to int64) (compliance.ConsistencyProof, error)
	Receipt(ctx context.Context, tenant string, id uuid.UUID) (compliance.EventReceipt, error)
	Tile(ctx context.Context, tenant, path string) ([]byte, error)
}

var _ AuditService = (*compliance.Auditor)(nil)

// maxSinceNote bounds the checkpoint note of an export request.
const maxSinceNote = 16 << 10

// auditRoutes registers the auditor endpoints when opts.Audit is set.
func (a *api) auditRoutes(mux *http.ServeMux) {
	if a.audit == nil {
		return
	}
	// Exports stream: they are authenticated without the Idempotency-Key
	// machinery, which would hold the whole bundle in memory and in the
	// database. Each export is its own audited event.
	mux.HandleFunc("POST /v1/exports", a.streamed(a.createExport))
	mux.HandleFunc("GET /v1/checkpoints/latest", a.authed(a.latestCheckpoint))
	mux.HandleFunc("GET /v1/proofs/inclusion", a.authed(a.inclusionProof))
	mux.HandleFunc("GET /v1/proofs/consistency", a.authed(a.consistencyProof))
	mux.HandleFunc("GET /v1/events/{id}/receipt", a.authed(a.receipt))
	// The tenant's log in the C2SP tlog-tiles layout, for standard tlog
	// clients: the checkpoint and the hash tiles under it.
	mux.HandleFunc("GET /v1/tlog/checkpoint", a.authed(a.latestCheckpoint))
	mux.HandleFunc("GET /v1/tlog/tile/{path...}", a.authed(a.tile))
}

// streamed wraps h with bearer authentication only.
func (a *api) streamed(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || bearer == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
			a.writeError(w, r, &domain.Error{Code: domain.CodeUnauthenticated, Message: "missing bearer credential"})
			return
		}
		p, err := a.svc.Authenticate(r.Context(), strings.TrimSpace(bearer))
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), principalKey, p))
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	}
}

func requireRole(r *http.Request, roles ...service.Role) (service.Principal, error) {
	p := principal(r)
	if !p.Is(roles...) {
		names := make([]string, len(roles))
		for i, role := range roles {
			names[i] = string(role)
		}
		return p, domain.Errorf(domain.CodeForbidden, "this endpoint needs the role %s", strings.Join(names, " or "))
	}
	return p, nil
}

type exportBody struct {
	From  *int64 `json:"from"`
	To    *int64 `json:"to"`
	Since string `json:"since"`
	Open  bool   `json:"open"`
}

// bundleWriter sends the response headers on the first write, so that a
// refused export still gets a JSON error.
type bundleWriter struct {
	w       http.ResponseWriter
	name    string
	started bool
}

func (b *bundleWriter) Write(p []byte) (int, error) {
	if !b.started {
		b.started = true
		h := b.w.Header()
		h.Set("Content-Type", compliance.BundleContentType)
		h.Set("Content-Disposition", `attachment; filename="`+b.name+`"`)
		h.Set("Cache-Control", "no-store")
		h.Set("Trailer", "Vigil-Bundle-Sha256, Vigil-Export-Event")
		b.w.WriteHeader(http.StatusOK)
	}
	return b.w.Write(p)
}

func (a *api) createExport(w http.ResponseWriter, r *http.Request) error {
	p, err := requireRole(r, service.RoleAuditor)
	if err != nil {
		return err
	}
	var body exportBody
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil && err != io.EOF {
		return domain.Errorf(domain.CodeInvalid, "export request: %v", err)
	}
	if len(body.Since) > maxSinceNote {
		return domain.Errorf(domain.CodeInvalid, "export request: since is longer than a checkpoint note")
	}
	req := compliance.ExportRequest{Tenant: p.Tenant, Actor: p.Actor(), To: -1, Open: body.Open}
	if body.From != nil {
		req.From = *body.From
	}
	if body.To != nil {
		if *body.To < 0 {
			return domain.Errorf(domain.CodeInvalid, "export request: to %d is negative", *body.To)
		}
		req.To = *body.To
	}
	if body.Since != "" {
		req.Since = []byte(body.Since)
	}
	bw := &bundleWriter{w: w, name: fmt.Sprintf("vigil-%s-export.jsonl", p.Tenant)}
	res, err := a.audit.Export(r.Context(), req, bw)
	if err != nil {
		if !bw.started {
			return err
		}
		// The status is sent; cut the connection so that the client sees
		// a truncated transfer, which the verifier refuses anyway.
		a.log.Error("export failed while streaming", "tenant", p.Tenant, "err", err)
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Vigil-Bundle-Sha256", hex.EncodeToString(res.SHA256[:]))
	w.Header().Set("Vigil-Export-Event", res.EventID.String())
	return nil
}

func (a *api) latestCheckpoint(w http.ResponseWriter, r *http.Request) error {
	p, err := requireRole(r, service.RoleAuditor, service.RoleAdmin)
	if err != nil {
		return err
	}
	c, err := a.audit.LatestCheckpoint(r.Context(), p.Tenant)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(c.Note)
	return nil
}

// queryInt returns the integer query parameter name, def when absent.
func queryInt(r *http.Request, name string, def int64) (int64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, domain.Errorf(domain.CodeInvalid, "%s: %q is not an integer", name, s)
	}
	return v, nil
}

func (a *api) inclusionProof(w http.ResponseWriter, r *http.Request) error {
	p, err := requireRole(r, service.RoleAuditor, service.RoleAdmin)
	if err != nil {
		return err
	}
	if r.URL.Query().Get("seq") == "" {
		return domain.Errorf(domain.CodeInvalid, "seq is required")
	}
	seq, err := queryInt(r, "seq", 0)
	if err != nil {
		return err
	}
	size, err := queryInt(r, "size", 0)
	if err != nil {
		return err
	}
	proof, err := a.audit.InclusionProof(r.Context(), p.Tenant, seq, size)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, proof)
	return nil
}

func (a *api) consistencyProof(w http.ResponseWriter, r *http.Request) error {
	p, err := requireRole(r, service.RoleAuditor, service.RoleAdmin)
	if err != nil {
		return err
	}
	if r.URL.Query().Get("from") == "" {
		return domain.Errorf(domain.CodeInvalid, "from is required")
	}
	from, err := queryInt(r, "from", 0)
	if err != nil {
		return err
	}
	to, err := queryInt(r, "to", 0)
	if err != nil {
		return err
	}
	proof, err := a.audit.ConsistencyProof(r.Context(), p.Tenant, from, to)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, proof)
	return nil
}

func (a *api) receipt(w http.ResponseWriter, r *http.Request) error {
	p, err := requireRole(r, service.RoleAuditor, service.RoleAdmin)
	if err != nil {
		return err
	}
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return domain.Errorf(domain.CodeNotFound, "event %q not found", r.PathValue("id"))
	}
	rc, err := a.audit.Receipt(r.Context(), p.Tenant, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rc)
	return nil
}

func (a *api) tile(w http.ResponseWriter, r *http.Request) error {
	p, err := requireRole(r, service.RoleAuditor, service.RoleAdmin)
	if err != nil {
		return err
	}
	path := r.PathValue("path")
	data, err := a.audit.Tile(r.Context(), p.Tenant, path)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if strings.Contains(path, ".p/") {
		// A partial tile grows into a full one.
		w.Header().Set("Cache-Control", "private, no-cache")
	} else {
		w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	}
	_, _ = w.Write(data)
	return nil
}
