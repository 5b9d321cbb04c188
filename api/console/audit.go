package console

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/compliance"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
)

// The auditor's workspace. The server hands out evidence (checkpoints,
// receipts, proofs, bundles); the verdicts are computed in the browser by
// static/verify.js with WebCrypto (SHA-256 and Ed25519) against the
// verifier key the auditor pastes, so that they do not rest on the server.

type auditPage struct {
	Checkpoint  string
	Size        int64
	CreatedAt   time.Time
	Age         string
	Origin      string
	VerifierKey string
	Event       string
	Receipt     string
	CanExport   bool
}

var errNoAudit = domain.Errorf(domain.CodeNotFound, "the auditor's services are not configured on this node")

func (c *Console) auditData(r *http.Request, rc *reqctx) (auditPage, error) {
	if c.opts.Audit == nil {
		return auditPage{}, errNoAudit
	}
	d := auditPage{VerifierKey: c.opts.VerifierKey, CanExport: rc.p.Role == service.RoleAuditor}
	cp, err := c.opts.Audit.LatestCheckpoint(r.Context(), rc.p.Tenant)
	switch {
	case err == nil:
		d.Checkpoint, d.Size, d.CreatedAt = string(cp.Note), cp.Size, cp.CreatedAt
		if !cp.CreatedAt.IsZero() {
			d.Age = c.opts.Service.Now().Sub(cp.CreatedAt).Truncate(time.Second).String()
		}
		if body, err := ledger.ParseCheckpointBody(strings.SplitN(string(cp.Note), "\n\n", 2)[0] + "\n"); err == nil {
			d.Origin = body.Origin
		}
	case domain.ErrorCode(err) != domain.CodeNotFound:
		return d, err
	}
	return d, nil
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	d, err := c.auditData(r, rc)
	if err != nil {
		return err
	}
	c.render(w, r, rc, http.StatusOK, "audit", "Audit", d)
	return nil
}

// auditProof shows an event's receipt: its leaf hash, its inclusion proof
// and the signed checkpoint the proof leads to, for the browser to check.
func (c *Console) auditProof(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	d, err := c.auditData(r, rc)
	if err != nil {
		return err
	}
	d.Event = strings.TrimSpace(r.URL.Query().Get("event"))
	id, err := uuid.Parse(d.Event)
	if err != nil {
		return domain.Errorf(domain.CodeInvalid, "event %q: want an event id (a UUID)", d.Event)
	}
	rec, err := c.opts.Audit.Receipt(r.Context(), rc.p.Tenant, id)
	if err != nil {
		return err
	}
	raw, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	d.Receipt = string(raw)
	c.render(w, r, rc, http.StatusOK, "audit", "Audit", d)
	return nil
}

// auditConsistency answers, as JSON for the page's script, the consistency
// proof from the checkpoint the auditor kept to today's, with today's
// signed checkpoint. The kept note's signature is not checked here: the
// browser checks both notes.
func (c *Console) auditConsistency(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	if c.opts.Audit == nil {
		return errNoAudit
	}
	var body struct {
		Kept string `json:"kept"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&body); err != nil {
		return domain.Errorf(domain.CodeInvalid, "want {\"kept\": \"<checkpoint note>\"}")
	}
	text, _, ok := strings.Cut(body.Kept, "\n\n")
	if !ok {
		return domain.Errorf(domain.CodeInvalid, "the kept checkpoint is not a signed note")
	}
	kept, err := ledger.ParseCheckpointBody(text + "\n")
	if err != nil {
		return domain.Errorf(domain.CodeInvalid, "the kept checkpoint: %v", err)
	}
	ctx := r.Context()
	latest, err := c.opts.Audit.LatestCheckpoint(ctx, rc.p.Tenant)
	if err != nil {
		return err
	}
	proof, err := c.opts.Audit.ConsistencyProof(ctx, rc.p.Tenant, kept.Size, latest.Size)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{"proof": proof, "checkpoint": string(latest.Note)})
}

// auditExport streams an audit bundle (auditors only, as POST /v1/exports),
// recorded as compliance.audit_export_created.
func (c *Console) auditExport(w http.ResponseWriter, r *http.Request, rc *reqctx) error {
	if c.opts.Audit == nil {
		return errNoAudit
	}
	if rc.p.Role != service.RoleAuditor {
		return &domain.Error{Code: domain.CodeForbidden, Message: "bundle exports are for auditor keys", Err: domain.ErrForbidden}
	}
	bw := &lazyWriter{w: w, name: fmt.Sprintf("vigil-%s-export.jsonl", rc.p.Tenant)}
	res, err := c.opts.Audit.Export(r.Context(), compliance.ExportRequest{Tenant: rc.p.Tenant, Actor: rc.p.Actor(), To: -1}, bw)
	if err != nil {
		if !bw.started {
			return err
		}
		c.log.Error("console: export failed while streaming", "tenant", rc.p.Tenant, "err", err)
		panic(http.ErrAbortHandler)
	}
	c.log.Info("console: audit bundle exported", "tenant", rc.p.Tenant, "events", res.Count, "bytes", res.Bytes)
	return nil
}

// lazyWriter sends the headers of a download on its first write, so that a
// refused export still answers with an error page.
type lazyWriter struct {
	w       http.ResponseWriter
	name    string
	started bool
}

func (b *lazyWriter) Write(p []byte) (int, error) {
	if !b.started {
		b.started = true
		h := b.w.Header()
		h.Set("Content-Type", compliance.BundleContentType)
		h.Set("Content-Disposition", `attachment; filename="`+b.name+`"`)
		b.w.WriteHeader(http.StatusOK)
	}
	n, err := b.w.Write(p)
	if f, ok := b.w.(http.Flusher); ok && err == nil {
		f.Flush()
	}
	return n, err
}
