package compliance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/tlog"
)

// Auditor produces auditor export bundles and the proofs and receipts of a
// tenant's log. It is safe for concurrent use.
type Auditor struct {
	l   *ledger.Ledger
	st  ledger.Store
	now func() time.Time
}

// NewAuditor returns an Auditor over l. Exports append
// compliance.audit_export_created through l, so l must be running.
func NewAuditor(l *ledger.Ledger) *Auditor {
	return &Auditor{l: l, st: l.Store(), now: time.Now}
}

// ExportRequest says what to export.
type ExportRequest struct {
	Tenant string
	// Actor is recorded on the compliance.audit_export_created event.
	Actor domain.Actor
	// From is the first seq exported (default 0).
	From int64
	// To is the last seq exported, inclusive; a negative To exports up to
	// the end of the log, which gets a fresh checkpoint.
	To int64
	// Since is an earlier signed checkpoint note of the tenant's log; the
	// bundle then carries a consistency proof from it.
	Since []byte
	// Open adds the personal fields in clear beside the ciphertext. The
	// caller decides who may ask for it.
	Open bool
}

// ExportResult describes a written bundle.
type ExportResult struct {
	FromSeq, ToSeq int64
	Count          int64
	TreeSize       int64     // size of the bundle's checkpoint
	Root           tlog.Hash // root of the bundle's checkpoint
	Bytes          int64
	SHA256         [32]byte
	// EventID is the id of the compliance.audit_export_created event.
	EventID uuid.UUID
}

// Export validates req, writes the bundle to w as it reads the log (the log
// is never buffered whole), and appends compliance.audit_export_created with
// the range and the bundle's SHA-256 on the tenant's stream. Nothing is
// written to w when validation fails: errors of code invalid for a bad
// range or a checkpoint of another log or tree, not_found for a tenant
// without events. An error after the first write means the bundle is
// incomplete and no event was appended.
func (a *Auditor) Export(ctx context.Context, req ExportRequest, w io.Writer) (ExportResult, error) {
	var res ExportResult
	h, err := a.prepare(ctx, req)
	if err != nil {
		return res, err
	}
	sum := sha256.New()
	cw := &countWriter{w: io.MultiWriter(w, sum)}
	body := sha256.New() // what the bundle signature covers
	bw := bufio.NewWriterSize(io.MultiWriter(cw, body), 256<<10)
	hb, err := json.Marshal(h)
	if err != nil {
		return res, fmt.Errorf("export %s: %w", req.Tenant, err)
	}
	bw.Write(hb)
	bw.WriteByte('\n')

	var (
		line    []byte
		leaf    []byte
		count   int64
		granted = map[uuid.UUID]bool{}
		cited   = map[uuid.UUID]bool{}
		seq     = h.FromSeq
	)
	err = a.st.ScanLog(ctx, req.Tenant, h.FromSeq, h.ToSeq+1, func(e *domain.Event, sealed []byte) error {
		if e.Seq != seq {
			return fmt.Errorf("leaf %d is missing from the store (next is %d)", seq, e.Seq)
		}
		seq++
		leaf = ledger.AppendLeaf(leaf[:0], e, sealed)
		ev := BundleEvent{Seq: e.Seq, Position: e.Position, ID: e.ID, Stream: e.Stream, Type: e.Type, LeafHash: e.LeafHash, Leaf: leaf}
		switch {
		case e.Type == typeConsentGranted:
			granted[e.ID] = true
		case bytes.Contains(e.Data, consentKey):
			if id, ok := citedConsent(e.Data); ok && !granted[id] {
				cited[id] = true
			}
		}
		if req.Open && len(sealed) > 0 {
			opened, err := a.open(ctx, e, sealed)
			if err != nil {
				return err
			}
			ev.Opened = opened
		}
		var err error
		if line, err = appendEventLine(line[:0], &ev); err != nil {
			return err
		}
		count++
		_, err = bw.Write(line)
		return err
	})
	if err == nil && count != h.Count {
		err = fmt.Errorf("read %d leaves, want %d", count, h.Count)
	}
	if err != nil {
		return res, fmt.Errorf("export %s: %w", req.Tenant, err)
	}
	end := BundleEnd{Record: RecordEnd, Count: count, PriorConsents: []PriorEvent{}}
	for id := range cited {
		p, ok, err := a.prior(ctx, req.Tenant, id, h.FromSeq, h.Checkpoint.Size)
		if err != nil {
			return res, fmt.Errorf("export %s: %w", req.Tenant, err)
		}
		if ok {
			end.PriorConsents = append(end.PriorConsents, p)
		}
	}
	sortPrior(end.PriorConsents)
	eb, err := json.Marshal(end)
	if err != nil {
		return res, fmt.Errorf("export %s: %w", req.Tenant, err)
	}
	if err := bw.Flush(); err != nil {
		return res, fmt.Errorf("export %s: write: %w", req.Tenant, err)
	}
	body.Write(eb)
	var digest [32]byte
	body.Sum(digest[:0])
	sig, err := a.l.SignStatement(ctx, BundleStatement(h.Origin, digest))
	if err != nil {
		return res, fmt.Errorf("export %s: sign the bundle: %w", req.Tenant, err)
	}
	end.Signature = string(sig)
	if eb, err = json.Marshal(end); err != nil {
		return res, fmt.Errorf("export %s: %w", req.Tenant, err)
	}
	bw.Write(eb)
	bw.WriteByte('\n')
	if err := bw.Flush(); err != nil {
		return res, fmt.Errorf("export %s: write: %w", req.Tenant, err)
	}

	res = ExportResult{FromSeq: h.FromSeq, ToSeq: h.ToSeq, Count: count, TreeSize: h.Checkpoint.Size, Root: h.Checkpoint.Root, Bytes: cw.n}
	copy(res.SHA256[:], sum.Sum(nil))
	e, err := domain.NewEvent(domain.Meta{Tenant: req.Tenant, Stream: domain.TenantStream(req.Tenant), Actor: req.Actor}, domain.AuditExportCreated{
		FromSeq: h.FromSeq, ToSeq: h.ToSeq, TreeSize: h.Checkpoint.Size,
		RootHash: hex.EncodeToString(h.Checkpoint.Root[:]), SHA256: hex.EncodeToString(res.SHA256[:]),
	})
	if err != nil {
		return res, fmt.Errorf("export %s: %w", req.Tenant, err)
	}
	stored, err := a.l.Append(ctx, domain.TenantStream(req.Tenant), ledger.AnyVersion, e)
	if err != nil {
		return res, fmt.Errorf("export %s: record the export: %w", req.Tenant, err)
	}
	res.EventID = stored[0].ID
	return res, nil
}

// prepare checks the request and builds the header: checkpoint, prefix
// hashes and proofs.
func (a *Auditor) prepare(ctx context.Context, req ExportRequest) (BundleHeader, error) {
	h := BundleHeader{Record: RecordHeader, Format: BundleFormat, Tenant: req.Tenant, Origin: a.l.Origin(req.Tenant), Opened: req.Open, CreatedAt: a.now().UTC().Truncate(time.Millisecond)}
	if req.Tenant == "" {
		return h, domain.Errorf(domain.CodeInvalid, "export: no tenant")
	}
	if req.From < 0 {
		return h, domain.Errorf(domain.CodeInvalid, "export: from %d is negative", req.From)
	}
	// Checkpoint makes one at the current size when the log grew, so the
	// end of the log is always covered by a signed checkpoint.
	latest, err := a.l.Checkpoint(ctx, req.Tenant)
	if err != nil {
		return h, err
	}
	if latest.Size == 0 {
		return h, domain.Errorf(domain.CodeNotFound, "export: tenant %s has no events", req.Tenant)
	}
	to := req.To
	if to < 0 {
		to = latest.Size - 1
	}
	if to >= latest.Size {
		return h, domain.Errorf(domain.CodeInvalid, "export: to %d is beyond the log's last seq %d", to, latest.Size-1)
	}
	if req.From > to {
		return h, domain.Errorf(domain.CodeInvalid, "export: from %d is after to %d", req.From, to)
	}
	h.FromSeq, h.ToSeq, h.Count = req.From, to, to-req.From+1
	end := to + 1

	cp := latest
	if end < latest.Size {
		cps, err := a.st.Checkpoints(ctx, req.Tenant)
		if err != nil {
			return h, fmt.Errorf("export %s: %w", req.Tenant, err)
		}
		for _, c := range cps {
			if c.Size >= end {
				cp = c
				break
			}
		}
	}
	h.Checkpoint = BundleCheckpoint{Size: cp.Size, Root: cp.Root, Note: string(cp.Note)}
	hr := ledger.HashReader{Ctx: ctx, Store: a.st, Tenant: req.Tenant}
	h.TailProof = []tlog.Hash{}
	if cp.Size > end {
		if h.TailProof, err = tlog.ProveTree(cp.Size, end, hr); err != nil {
			return h, fmt.Errorf("export %s: tail proof: %w", req.Tenant, err)
		}
	}
	h.Prefix = []tlog.Hash{}
	if h.FromSeq > 0 {
		if h.Prefix, err = a.st.ReadHashes(ctx, req.Tenant, ledger.FrontierIndexes(h.FromSeq)); err != nil {
			return h, fmt.Errorf("export %s: prefix hashes: %w", req.Tenant, err)
		}
	}
	if len(req.Since) > 0 {
		s, err := parseNote(req.Since)
		if err != nil {
			return h, domain.Errorf(domain.CodeInvalid, "export: since: %v", err)
		}
		if s.Origin != h.Origin {
			return h, domain.Errorf(domain.CodeInvalid, "export: since: the checkpoint's origin is %q, not this log's %q", s.Origin, h.Origin)
		}
		if s.Size < 1 || s.Size > cp.Size {
			return h, domain.Errorf(domain.CodeInvalid, "export: since: checkpoint of size %d is not between 1 and the bundle's checkpoint size %d", s.Size, cp.Size)
		}
		root, err := tlog.TreeHash(s.Size, hr)
		if err != nil {
			return h, fmt.Errorf("export %s: since: %w", req.Tenant, err)
		}
		if root != s.Root {
			return h, domain.Errorf(domain.CodeInvalid, "export: since: the checkpoint's root at size %d is not this log's: the log or the checkpoint was altered", s.Size)
		}
		// The note goes into the bundle as it is, so it must be byte for
		// byte a checkpoint this log signed: a broken signature, an edit or
		// a trailing blank line would make a bundle that the verifier
		// refuses, recorded as a valid export.
		if ok, err := a.issued(ctx, req.Tenant, s.Size, req.Since); err != nil {
			return h, fmt.Errorf("export %s: since: %w", req.Tenant, err)
		} else if !ok {
			return h, domain.Errorf(domain.CodeInvalid, "export: since: the note is not, byte for byte, a checkpoint this log signed (a bad signature, an edited line or extra whitespace?)")
		}
		since := &BundleSince{BundleCheckpoint: BundleCheckpoint{Size: s.Size, Root: s.Root, Note: string(req.Since)}, Proof: []tlog.Hash{}}
		if s.Size < cp.Size {
			if since.Proof, err = tlog.ProveTree(cp.Size, s.Size, hr); err != nil {
				return h, fmt.Errorf("export %s: since proof: %w", req.Tenant, err)
			}
		}
		h.Since = since
	}
	return h, nil
}

// issued reports whether note is exactly the stored signed checkpoint of
// tenant's log at size.
func (a *Auditor) issued(ctx context.Context, tenant string, size int64, note []byte) (bool, error) {
	cps, err := a.st.Checkpoints(ctx, tenant)
	if err != nil {
		return false, err
	}
	for _, c := range cps {
		if c.Size == size {
			return bytes.Equal(c.Note, note), nil
		}
	}
	return false, nil
}

// parseNote parses a checkpoint note's body without checking its
// signature: the exporter only proves against it; the auditor's verifier
// checks who signed it.
func parseNote(msg []byte) (ledger.ParsedCheckpoint, error) {
	text, _, ok := strings.Cut(string(msg), "\n\n")
	if !ok {
		return ledger.ParsedCheckpoint{}, errors.New("not a signed note (no blank line before the signatures)")
	}
	return ledger.ParseCheckpointBody(text + "\n")
}

func (a *Auditor) open(ctx context.Context, e *domain.Event, sealed []byte) ([]OpenedField, error) {
	fields, err := ledger.DecodeSealed(sealed)
	if err != nil {
		return nil, fmt.Errorf("seq %d: %w", e.Seq, err)
	}
	ev := *e
	ev.Sealed = fields
	if err := a.l.Open(ctx, &ev); err != nil {
		return nil, err
	}
	out := make([]OpenedField, 0, len(ev.Personal))
	for _, p := range ev.Personal {
		out = append(out, OpenedField{Name: p.Name, Subject: string(p.Subject), Value: p.Value, Erased: p.Erased})
	}
	return out, nil
}

// prior returns the consent event id of tenant with an inclusion proof to
// size when it lies before from; false when there is no such event (the
// verifier then flags the action citing it).
func (a *Auditor) prior(ctx context.Context, tenant string, id uuid.UUID, from, size int64) (PriorEvent, bool, error) {
	e, err := a.st.EventByID(ctx, id)
	if errors.Is(err, domain.ErrNotFound) {
		return PriorEvent{}, false, nil
	}
	if err != nil {
		return PriorEvent{}, false, err
	}
	if e.Tenant != tenant || e.Seq >= from {
		return PriorEvent{}, false, nil
	}
	proof, err := a.l.ProveInclusion(ctx, tenant, e.Seq, size)
	if err != nil {
		return PriorEvent{}, false, fmt.Errorf("inclusion proof of seq %d: %w", e.Seq, err)
	}
	return PriorEvent{Seq: e.Seq, Position: e.Position, LeafHash: e.LeafHash, Leaf: ledger.EncodeLeaf(&e), Proof: nonNil(proof)}, true, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
