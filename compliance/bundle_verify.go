package compliance

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const (
	typeConsentGranted = "session.consent_granted"
	typeConsentDenied  = "session.consent_denied"
	typeTransferred    = "session.transferred"
	typeSessionClosed  = "session.closed"
)

var consentKey = []byte(`"consent_event_id"`)

// citedConsent returns the non-zero consent_event_id of an event's data.
func citedConsent(data []byte) (uuid.UUID, bool) {
	var v struct {
		ConsentEventID uuid.UUID `json:"consent_event_id"`
	}
	if err := json.Unmarshal(data, &v); err != nil || v.ConsentEventID == uuid.Nil {
		return uuid.Nil, false
	}
	return v.ConsentEventID, true
}

func sortPrior(p []PriorEvent) {
	slices.SortFunc(p, func(a, b PriorEvent) int { return int(a.Seq - b.Seq) })
}

// consentRules maps each catalogue event type that records a privileged
// action needing the customer's consent to the action whose consent covers
// it (domain.ActionRule.ConsentAction).
var consentRules = func() map[string]domain.Action {
	m := map[string]domain.Action{}
	for _, name := range domain.Catalogue.Types() {
		p, ok := domain.Catalogue.New(name)
		if !ok {
			continue
		}
		if ap, ok := p.(domain.ActionPayload); ok {
			if r, ok := ap.Action().Rule(); ok && r.Consent {
				m[name] = r.ConsentAction
			}
		}
	}
	return m
}()

// BundleVerifyOptions configure VerifyBundle.
type BundleVerifyOptions struct {
	// Verifiers check the checkpoint signatures. Required.
	Verifiers note.Verifiers
	// Origin is the deployment's log origin prefix (VIGIL_LOG_ORIGIN) the
	// auditor expects. Empty means the name of the verifier key that signed
	// the checkpoint, which is the origin prefix by construction (Vigil names
	// its checkpoint key after the log origin and refuses any other name).
	// Either way the bundle's origin must be exactly Origin + "/" + tenant.
	Origin string
	// Tenant, when set, is the only tenant whose bundle is accepted.
	Tenant string
	// Since is an earlier checkpoint note the auditor holds; the bundle must
	// prove that its log is an extension of it.
	Since []byte
}

// BundleReport summarises a verified bundle.
type BundleReport struct {
	Tenant         string
	Origin         string
	FromSeq, ToSeq int64
	Events         int64
	Bytes          int64
	CheckpointSize int64
	CheckpointRoot tlog.Hash
	Signer         string
	// SinceSize is the size of the earlier checkpoint proven consistent,
	// 0 when none was checked.
	SinceSize int64
	// PrivilegedActions counts the actions whose consent was checked;
	// PriorConsents those whose consent lies before the bundle and is proven
	// by an inclusion proof.
	PrivilegedActions int64
	PriorConsents     int64
	Streams           int
	Opened            bool
	Duration          time.Duration
}

// BundleError says why a bundle fails to verify. Seq and Position are -1
// and 0 when the failure is not tied to one event.
type BundleError struct {
	Line     int64
	Seq      int64
	Position int64
	Reason   string
}

// Error implements error.
func (e *BundleError) Error() string {
	var where []string
	if e.Seq >= 0 {
		where = append(where, fmt.Sprintf("seq %d", e.Seq))
	}
	if e.Position > 0 {
		where = append(where, fmt.Sprintf("position %d", e.Position))
	}
	if e.Line > 0 {
		where = append(where, fmt.Sprintf("line %d", e.Line))
	}
	if len(where) == 0 {
		return e.Reason
	}
	return strings.Join(where, ", ") + ": " + e.Reason
}

// ConsentError lists the privileged actions of a bundle whose consent
// check failed, while the log itself verified.
type ConsentError struct {
	Findings []*BundleError
}

// Error implements error.
func (e *ConsentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d privileged action(s) without a valid consent:", len(e.Findings))
	for _, f := range e.Findings {
		b.WriteString("\n  ")
		b.WriteString(f.Error())
	}
	return b.String()
}

// maxFindings bounds the consent findings kept.
const maxFindings = 1000

type grant struct {
	stream  string
	action  domain.Action
	seq     int64
	revoked string // why it stopped being in force, "" while it is
}

type revocation struct {
	seq    int64
	action domain.Action // "" ends every consent of the stream
	why    string
}

type pendingAction struct {
	seq, pos int64
	stream   string
	consent  uuid.UUID
	needs    domain.Action // "" when any granted action will do
}

// VerifyBundle reads a bundle from r and checks it with no other input: the
// header's checkpoint signature and origin, every leaf hash recomputed from
// the leaf bytes, the seq and version continuity, the tree root recomputed
// from the prefix hashes and the leaves against the signed checkpoint (with
// the tail proof), the consistency proof from the header's and from
// opts.Since's earlier checkpoint, and that every privileged action cites a
// consent_granted event of the same stream, before it, of the right action,
// and not revoked since by a transfer or a denial. It returns a
// *BundleError for the first integrity failure, a *ConsentError listing
// consent findings when the log verified but actions lack consent, and
// another error when r fails.
func VerifyBundle(r io.Reader, opts BundleVerifyOptions) (BundleReport, error) {
	start := time.Now()
	var rep BundleReport
	if opts.Verifiers == nil {
		return rep, errors.New("verify bundle: no verifier key")
	}
	cr := &countReader{r: r}
	lr := &lineReader{r: bufio.NewReaderSize(cr, 64<<10), max: 4 * ledger.MaxFieldLen}
	var line int64
	fail := func(seq, pos int64, format string, args ...any) error {
		return &BundleError{Line: line, Seq: seq, Position: pos, Reason: fmt.Sprintf(format, args...)}
	}
	next := func() ([]byte, error) {
		b, err := lr.next()
		switch {
		case err == io.EOF:
			return nil, io.EOF
		case errors.Is(err, errLineTooLong):
			line++
			return nil, fail(-1, 0, "a line is longer than any valid record")
		case errors.Is(err, errNoNewline):
			line++
			return nil, fail(-1, 0, "the last line does not end in a newline")
		case err != nil:
			return nil, fmt.Errorf("read bundle: %w", err)
		}
		line++
		return b, nil
	}

	// 1. The header and its signed checkpoint.
	b, err := next()
	if err == io.EOF {
		return rep, fail(-1, 0, "the bundle is empty")
	} else if err != nil {
		return rep, err
	}
	var h BundleHeader
	if !bytes.HasPrefix(b, []byte(`{"record":"header",`)) || json.Unmarshal(b, &h) != nil || h.Record != RecordHeader {
		return rep, fail(-1, 0, "the first line is not a bundle header")
	}
	if h.Format == "vigil-audit-bundle/v1" {
		return rep, fail(-1, 0, "format %q has no bundle signature and is no longer accepted: export the range again", h.Format)
	}
	if h.Format != BundleFormat {
		return rep, fail(-1, 0, "format %q, want %q", h.Format, BundleFormat)
	}
	if enc, err := canonicalHeader(h); err != nil || !bytes.Equal(enc, b) {
		return rep, fail(-1, 0, "the header is not in the canonical form (docs/export-format.md, \"Canonical form\")")
	}
	body := sha256.New() // what the bundle signature covers
	body.Write(b)
	body.Write(newline)
	if !domain.ValidStream(domain.TenantStream(h.Tenant)) {
		return rep, fail(-1, 0, "tenant %q is not a valid tenant id", h.Tenant)
	}
	if opts.Tenant != "" && h.Tenant != opts.Tenant {
		return rep, fail(-1, 0, "the bundle is of tenant %q, not of %q", h.Tenant, opts.Tenant)
	}
	if h.FromSeq < 0 || h.ToSeq < h.FromSeq || h.Count != h.ToSeq-h.FromSeq+1 {
		return rep, fail(-1, 0, "bad range: from %d to %d, count %d", h.FromSeq, h.ToSeq, h.Count)
	}
	// The origin comes from what the auditor trusts, never from the
	// bundle: the prefix is the verifier key's name (or opts.Origin, which
	// must then be that name), and the tenant completes it.
	cp, signer, err := openCheckpoint([]byte(h.Checkpoint.Note), opts.Verifiers, "")
	if err != nil {
		return rep, fail(-1, 0, "checkpoint: %v", err)
	}
	prefix := signer
	if opts.Origin != "" && opts.Origin != signer {
		return rep, fail(-1, 0, "checkpoint: signed by key %q, but the expected log origin is %q", signer, opts.Origin)
	}
	if want := ledger.Origin(prefix, h.Tenant); cp.Origin != want || h.Origin != want {
		return rep, fail(-1, 0, "checkpoint: signed origin %q and header origin %q, want exactly %q (the key's log origin and the tenant)", cp.Origin, h.Origin, want)
	}
	if cp.Size != h.Checkpoint.Size || cp.Root != h.Checkpoint.Root {
		return rep, fail(-1, 0, "checkpoint: the header's size and root differ from the signed note's (%d, %s)", cp.Size, cp.Root)
	}
	end := h.ToSeq + 1
	if cp.Size < end {
		return rep, fail(-1, 0, "checkpoint: signed size %d does not cover the bundle's last seq %d", cp.Size, h.ToSeq)
	}
	if cp.Size == end && len(h.TailProof) != 0 {
		return rep, fail(-1, 0, "checkpoint: a tail proof is present although the checkpoint's size is the bundle's end")
	}
	rep = BundleReport{Tenant: h.Tenant, Origin: h.Origin, FromSeq: h.FromSeq, ToSeq: h.ToSeq, CheckpointSize: cp.Size, CheckpointRoot: cp.Root, Signer: signer, Opened: h.Opened}

	// The earlier checkpoints whose consistency is to be checked: the one
	// the header carries and the auditor's own.
	type sinceCheck struct {
		p        ledger.ParsedCheckpoint
		proof    []tlog.Hash
		hasProof bool
		checked  bool
		what     string
	}
	var sinces []*sinceCheck
	if h.Since != nil {
		p, _, err := openCheckpoint([]byte(h.Since.Note), opts.Verifiers, h.Origin)
		if err != nil {
			return rep, fail(-1, 0, "since checkpoint in the header: %v", err)
		}
		if p.Size != h.Since.Size || p.Root != h.Since.Root {
			return rep, fail(-1, 0, "since checkpoint in the header: its size and root differ from the signed note's (%d, %s)", p.Size, p.Root)
		}
		// The proof is checked even when the scan reaches the since size,
		// so that no part of the header goes unchecked.
		if p.Size == cp.Size {
			if len(h.Since.Proof) != 0 || p.Root != cp.Root {
				return rep, fail(-1, 0, "since checkpoint in the header: of the checkpoint's size but with another root or a proof")
			}
		} else if p.Size < 1 || p.Size > cp.Size {
			return rep, fail(-1, 0, "since checkpoint in the header: size %d is not between 1 and the checkpoint's size %d", p.Size, cp.Size)
		} else if err := tlog.CheckTree(h.Since.Proof, cp.Size, cp.Root, p.Size, p.Root); err != nil {
			return rep, fail(-1, 0, "the consistency proof from the header's since checkpoint (size %d) to the checkpoint of size %d does not hold: %v", p.Size, cp.Size, err)
		}
		sinces = append(sinces, &sinceCheck{p: p, proof: h.Since.Proof, hasProof: true, what: "the header's since checkpoint"})
	}
	if len(opts.Since) > 0 {
		p, _, err := openCheckpoint(opts.Since, opts.Verifiers, h.Origin)
		if err != nil {
			return rep, fail(-1, 0, "--since checkpoint: %v", err)
		}
		s := &sinceCheck{p: p, what: "the --since checkpoint"}
		if h.Since != nil && h.Since.Size == p.Size {
			s.proof, s.hasProof = h.Since.Proof, true
		}
		sinces = append(sinces, s)
	}
	for _, s := range sinces {
		if s.p.Size < 1 || s.p.Size > cp.Size {
			return rep, fail(-1, 0, "%s has size %d, beyond the bundle's checkpoint of size %d", s.what, s.p.Size, cp.Size)
		}
	}

	// 2. The prefix.
	f, err := ledger.LoadFrontier(h.FromSeq, h.Prefix)
	if err != nil {
		return rep, fail(-1, 0, "prefix: %v", err)
	}
	checkSinceAt := func(seq, pos int64) error {
		for _, s := range sinces {
			if !s.checked && s.p.Size == f.Size() {
				if f.Root() != s.p.Root {
					return fail(seq, pos, "%s (size %d) does not match the tree recomputed from the bundle: the log is not an extension of it", s.what, s.p.Size)
				}
				s.checked = true
			}
		}
		return nil
	}
	if err := checkSinceAt(-1, 0); err != nil {
		return rep, err
	}

	// 3. The events.
	var (
		seq      = h.FromSeq
		lastPos  int64
		firstPos int64
		versions = map[string]int64{}
		grants   = map[uuid.UUID]*grant{}
		streams  = map[string][]uuid.UUID{} // a stream's grants, to revoke
		pending  []pendingAction
		revs     = map[string][]revocation{} // for consents before the bundle
		findings []*BundleError
		ev       BundleEvent
		canon    []byte
		stored   []tlog.Hash
	)
	finding := func(seq, pos int64, format string, args ...any) {
		if len(findings) < maxFindings {
			findings = append(findings, &BundleError{Seq: seq, Position: pos, Reason: fmt.Sprintf(format, args...)})
		}
	}
	checkGrant := func(seq, pos int64, stream string, id uuid.UUID, needs domain.Action, g *grant, before string) {
		switch {
		case g.stream != stream:
			finding(seq, pos, "cites consent %s of stream %s, not of its own stream %s", id, g.stream, stream)
		case needs != "" && g.action != needs && g.action != domain.ActionOneTimePrompt:
			finding(seq, pos, "cites consent %s given to %s, but the action needs consent to %s", id, g.action, needs)
		case g.revoked != "":
			finding(seq, pos, "cites consent %s%s, which was revoked by %s", id, before, g.revoked)
		}
	}
	var endRec BundleEnd
	gotEnd := false
	for {
		b, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return rep, err
		}
		if gotEnd {
			return rep, fail(-1, 0, "data after the end record")
		}
		if bytes.HasPrefix(b, []byte(`{"record":"end",`)) {
			if err := json.Unmarshal(b, &endRec); err != nil || endRec.Record != RecordEnd {
				return rep, fail(-1, 0, "malformed end record")
			}
			if enc, err := canonicalEnd(endRec); err != nil || !bytes.Equal(enc, b) {
				return rep, fail(-1, 0, "the end record is not in the canonical form")
			}
			unsigned := endRec
			unsigned.Signature = ""
			ub, _ := canonicalEnd(unsigned)
			body.Write(ub)
			gotEnd = true
			continue
		}
		ev = BundleEvent{}
		if !bytes.HasPrefix(b, []byte(`{"record":"event",`)) || json.Unmarshal(b, &ev) != nil || ev.Record != RecordEvent {
			return rep, fail(seq, 0, "malformed event record (expected seq %d)", seq)
		}
		canon, err = appendEventLine(canon[:0], &ev)
		if err != nil || !bytes.Equal(canon[:len(canon)-1], b) {
			return rep, fail(seq, ev.Position, "the event record is not in the canonical form")
		}
		body.Write(canon)
		if ev.Seq != seq {
			if ev.Seq > seq {
				return rep, fail(seq, ev.Position, "leaf %d is missing from the bundle (the next record is seq %d)", seq, ev.Seq)
			}
			return rep, fail(ev.Seq, ev.Position, "record out of order (expected seq %d)", seq)
		}
		if seq > h.ToSeq {
			return rep, fail(seq, ev.Position, "more event records than the header's range %d..%d", h.FromSeq, h.ToSeq)
		}
		if ev.Position <= lastPos {
			return rep, fail(seq, ev.Position, "position %d does not follow %d", ev.Position, lastPos)
		}
		if seq == h.FromSeq {
			firstPos = ev.Position
		}
		lastPos = ev.Position
		leafHash := tlog.RecordHash(ev.Leaf)
		if leafHash != ev.LeafHash {
			return rep, fail(seq, ev.Position, "the leaf bytes do not hash to the record's leaf hash: the event was altered")
		}
		e, err := ledger.DecodeLeaf(ev.Leaf)
		if err != nil {
			return rep, fail(seq, ev.Position, "the leaf is not a canonical encoding: %v", err)
		}
		if e.Tenant != h.Tenant {
			return rep, fail(seq, ev.Position, "event of tenant %q in a bundle of tenant %q", e.Tenant, h.Tenant)
		}
		if e.ID != ev.ID || e.Stream != ev.Stream || e.Type != ev.Type {
			return rep, fail(seq, ev.Position, "the record's id, stream or type differ from its leaf")
		}
		if err := checkOpened(h.Opened, e.Sealed, ev.Opened); err != nil {
			return rep, fail(seq, ev.Position, "opened fields: %v", err)
		}
		if v, ok := versions[e.Stream]; ok && e.Version != v+1 {
			return rep, fail(seq, ev.Position, "stream %s jumps from version %d to %d", e.Stream, v, e.Version)
		} else if !ok && h.FromSeq == 0 && e.Version != 1 {
			return rep, fail(seq, ev.Position, "stream %s starts at version %d", e.Stream, e.Version)
		}
		versions[e.Stream] = e.Version
		stored = f.Append(stored[:0], leafHash)
		if err := checkSinceAt(seq, ev.Position); err != nil {
			return rep, err
		}

		// Consent.
		switch e.Type {
		case typeConsentGranted:
			var p struct {
				Action domain.Action `json:"action"`
			}
			_ = json.Unmarshal(e.Data, &p)
			grants[e.ID] = &grant{stream: e.Stream, action: p.Action, seq: seq}
			streams[e.Stream] = append(streams[e.Stream], e.ID)
		case typeConsentDenied:
			var p struct {
				Action domain.Action `json:"action"`
			}
			_ = json.Unmarshal(e.Data, &p)
			why := fmt.Sprintf("the consent_denied at seq %d", seq)
			for _, id := range streams[e.Stream] {
				if g := grants[id]; g.action == p.Action && g.revoked == "" {
					g.revoked = why
				}
			}
			revs[e.Stream] = append(revs[e.Stream], revocation{seq: seq, action: p.Action, why: why})
		case typeTransferred:
			why := fmt.Sprintf("the transfer at seq %d", seq)
			for _, id := range streams[e.Stream] {
				if g := grants[id]; g.revoked == "" {
					g.revoked = why
				}
			}
			revs[e.Stream] = append(revs[e.Stream], revocation{seq: seq, why: why})
		case typeSessionClosed:
			why := fmt.Sprintf("the session's closing at seq %d", seq)
			for _, id := range streams[e.Stream] {
				if g := grants[id]; g.revoked == "" {
					g.revoked = why
				}
			}
			revs[e.Stream] = append(revs[e.Stream], revocation{seq: seq, why: why})
		}
		needs, privileged := consentRules[e.Type]
		if privileged || bytes.Contains(e.Data, consentKey) {
			id, ok := citedConsent(e.Data)
			switch {
			case !ok && privileged:
				rep.PrivilegedActions++
				finding(seq, ev.Position, "%s needs the customer's consent to %s and cites none", e.Type, needs)
			case ok:
				rep.PrivilegedActions++
				if g := grants[id]; g != nil {
					checkGrant(seq, ev.Position, e.Stream, id, needs, g, "")
				} else {
					pending = append(pending, pendingAction{seq: seq, pos: ev.Position, stream: e.Stream, consent: id, needs: needs})
				}
			}
		}
		seq++
		rep.Events++
	}
	if seq <= h.ToSeq {
		return rep, fail(seq, 0, "the bundle ends at seq %d; the header announces %d..%d: events were removed", seq-1, h.FromSeq, h.ToSeq)
	}
	if !gotEnd {
		return rep, fail(-1, 0, "the end record is missing: the bundle is truncated")
	}
	if endRec.Count != rep.Events {
		return rep, fail(-1, 0, "the end record counts %d events, the bundle holds %d", endRec.Count, rep.Events)
	}

	// 4. The root against the signed checkpoint.
	root := f.Root()
	if cp.Size == end {
		if root != cp.Root {
			return rep, fail(-1, 0, "the tree recomputed from the bundle (size %d) does not match the signed checkpoint's root: an event was altered, added or removed", end)
		}
	} else if err := tlog.CheckTree(h.TailProof, cp.Size, cp.Root, end, root); err != nil {
		return rep, fail(-1, 0, "the tree recomputed from the bundle (size %d) is not a prefix of the signed checkpoint of size %d: an event was altered, added or removed (%v)", end, cp.Size, err)
	}

	// 5. Consistency from the earlier checkpoints not reached by the scan.
	for _, s := range sinces {
		if s.checked {
			rep.SinceSize = max(rep.SinceSize, s.p.Size)
			continue
		}
		if !s.hasProof {
			return rep, fail(-1, 0, "%s (size %d) is outside the bundle's range and the bundle carries no consistency proof from it", s.what, s.p.Size)
		}
		if s.p.Size == cp.Size {
			if s.p.Root != cp.Root {
				return rep, fail(-1, 0, "%s has the size of the bundle's checkpoint but another root: the log forked", s.what)
			}
		} else if err := tlog.CheckTree(s.proof, cp.Size, cp.Root, s.p.Size, s.p.Root); err != nil {
			return rep, fail(-1, 0, "the consistency proof from %s (size %d) to the checkpoint of size %d does not hold: %v", s.what, s.p.Size, cp.Size, err)
		}
		rep.SinceSize = max(rep.SinceSize, s.p.Size)
	}

	// 6. Consents before the bundle, proven by inclusion.
	prior := map[uuid.UUID]*grant{}
	lastPrior := PriorEvent{Seq: -1}
	for _, p := range endRec.PriorConsents {
		pfail := func(format string, args ...any) error {
			return fail(p.Seq, p.Position, "prior consent: "+format, args...)
		}
		if p.Seq < 0 || p.Seq >= h.FromSeq {
			return rep, pfail("seq %d is not before the bundle's first seq %d", p.Seq, h.FromSeq)
		}
		// One order, seq ascending; positions grow with seq in a tenant's
		// log, so they stay below the bundle's first position.
		if p.Seq <= lastPrior.Seq || p.Position <= lastPrior.Position || p.Position >= firstPos {
			return rep, pfail("not in seq order, or a position out of order (%d)", p.Position)
		}
		lastPrior = p
		lh := tlog.RecordHash(p.Leaf)
		if lh != p.LeafHash {
			return rep, pfail("the leaf bytes do not hash to the record's leaf hash")
		}
		if err := tlog.CheckRecord(p.Proof, cp.Size, cp.Root, p.Seq, lh); err != nil {
			return rep, pfail("the inclusion proof does not hold: %v", err)
		}
		e, err := ledger.DecodeLeaf(p.Leaf)
		if err != nil {
			return rep, pfail("the leaf is not a canonical encoding: %v", err)
		}
		if e.Tenant != h.Tenant || e.Type != typeConsentGranted {
			continue // proven, but not a consent of this tenant: actions citing it stay flagged
		}
		var d struct {
			Action domain.Action `json:"action"`
		}
		_ = json.Unmarshal(e.Data, &d)
		prior[e.ID] = &grant{stream: e.Stream, action: d.Action, seq: p.Seq}
	}
	for _, a := range pending {
		g := prior[a.consent]
		if g == nil {
			finding(a.seq, a.pos, "cites consent %s, which is neither a consent_granted before it in the bundle nor proven before the bundle's start", a.consent)
			continue
		}
		if g.stream == a.stream {
			// Revocations inside the bundle, before the action, count;
			// those before the bundle's start are outside it.
			for _, r := range revs[a.stream] {
				if r.seq < a.seq && (r.action == "" || r.action == g.action) {
					g = &grant{stream: g.stream, action: g.action, seq: g.seq, revoked: r.why}
					break
				}
			}
		}
		checkGrant(a.seq, a.pos, a.stream, a.consent, a.needs, g, fmt.Sprintf(" (seq %d, before the bundle)", g.seq))
		rep.PriorConsents++
	}
	// 7. The bundle signature, over every byte: the values that nothing
	// else covers (positions, created_at, opened values) included.
	var digest [32]byte
	body.Sum(digest[:0])
	if err := checkStatement([]byte(endRec.Signature), opts.Verifiers, prefix, BundleStatement(h.Origin, digest)); err != nil {
		return rep, fail(-1, 0, "bundle signature: %v", err)
	}

	slices.SortFunc(findings, func(a, b *BundleError) int { return int(a.Seq - b.Seq) })
	rep.Streams = len(versions)
	rep.Bytes = cr.n
	rep.Duration = time.Since(start)
	if len(findings) > 0 {
		return rep, &ConsentError{Findings: findings}
	}
	return rep, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// openCheckpoint verifies a checkpoint note and, when origin is not empty,
// that its origin is origin, and returns its body and the name of the key
// that signed it. The note must be in the one form Vigil signs: the three
// body lines of ledger.CheckpointBody, a blank line and exactly one
// signature line in canonical base64, by a key of verifiers. Anything else
// (a cosignature, an extension line, stray padding bits) is refused, so
// that a checkpoint has one byte form in a bundle.
func openCheckpoint(msg []byte, verifiers note.Verifiers, origin string) (ledger.ParsedCheckpoint, string, error) {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return ledger.ParsedCheckpoint{}, "", fmt.Errorf("the signature does not verify with the given key: %w", err)
	}
	p, err := ledger.ParseCheckpointBody(n.Text)
	if err != nil {
		return p, "", err
	}
	if len(n.Sigs) != 1 || len(n.UnverifiedSigs) != 0 {
		return p, "", fmt.Errorf("want exactly one signature, by the log's key")
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(n.Sigs[0].Base64)
	if err != nil {
		return p, "", fmt.Errorf("the signature is not canonical base64")
	}
	canonical := ledger.CheckpointBody(p.Origin, p.Size, p.Root) + "\n\u2014 " + n.Sigs[0].Name + " " + base64.StdEncoding.EncodeToString(sig) + "\n"
	if string(msg) != canonical {
		return p, "", fmt.Errorf("the note is not in the canonical checkpoint form (origin, size and root lines, a blank line, one signature line)")
	}
	if origin != "" && p.Origin != origin {
		return p, "", fmt.Errorf("signed origin %q, want %q", p.Origin, origin)
	}
	return p, n.Sigs[0].Name, nil
}

// checkStatement checks that msg is exactly text signed by one key of
// verifiers named name, in canonical form.
func checkStatement(msg []byte, verifiers note.Verifiers, name, text string) error {
	if len(msg) == 0 {
		return errors.New("missing")
	}
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return fmt.Errorf("the signature does not verify with the given key: %w", err)
	}
	if len(n.Sigs) != 1 || len(n.UnverifiedSigs) != 0 || n.Sigs[0].Name != name {
		return fmt.Errorf("want exactly one signature, by the log's key %s", name)
	}
	if n.Text != text {
		return errors.New("the signed digest is not the bundle's: the file was altered after export")
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(n.Sigs[0].Base64)
	if err != nil || string(msg) != text+"\n\u2014 "+name+" "+base64.StdEncoding.EncodeToString(sig)+"\n" {
		return errors.New("the signed note is not in its canonical form")
	}
	return nil
}

var newline = []byte("\n")

var (
	errLineTooLong = errors.New("line too long")
	errNoNewline   = errors.New("no newline at the end")
)

// lineReader reads a bundle's lines. Unlike bufio.Scanner it keeps a '\r'
// before the newline (so a CRLF file fails the canonical comparison) and
// refuses a last line without its newline.
type lineReader struct {
	r   *bufio.Reader
	buf []byte
	max int
}

// next returns the next line without its '\n'; the slice is valid until the
// next call. It returns io.EOF at a clean end of input.
func (lr *lineReader) next() ([]byte, error) {
	lr.buf = lr.buf[:0]
	for {
		chunk, err := lr.r.ReadSlice('\n')
		if len(lr.buf)+len(chunk) > lr.max+1 {
			return nil, errLineTooLong
		}
		switch {
		case err == bufio.ErrBufferFull:
			lr.buf = append(lr.buf, chunk...)
			continue
		case err == io.EOF:
			if len(lr.buf)+len(chunk) == 0 {
				return nil, io.EOF
			}
			return nil, errNoNewline
		case err != nil:
			return nil, err
		}
		if len(lr.buf) == 0 {
			return chunk[:len(chunk)-1], nil
		}
		lr.buf = append(lr.buf, chunk...)
		return lr.buf[:len(lr.buf)-1], nil
	}
}

// canonicalHeader returns the one byte form of h (without the newline): what
// Auditor.Export writes. The verifier decodes each line, encodes it again
// and refuses the line unless both are equal, which refuses in one rule
// whitespace, member order, duplicate or unknown members, escapes,
// non-canonical base64, numbers and times written otherwise, and nulls.
func canonicalHeader(h BundleHeader) ([]byte, error) {
	h.CreatedAt = h.CreatedAt.UTC()
	h.Prefix = nonNil(h.Prefix)
	h.TailProof = nonNil(h.TailProof)
	if h.Since != nil {
		s := *h.Since
		s.Proof = nonNil(s.Proof)
		h.Since = &s
	}
	return json.Marshal(h)
}

// canonicalEnd is canonicalHeader for the end record.
func canonicalEnd(e BundleEnd) ([]byte, error) {
	e.PriorConsents = nonNil(e.PriorConsents)
	p := make([]PriorEvent, len(e.PriorConsents))
	for i, c := range e.PriorConsents {
		c.Proof = nonNil(c.Proof)
		c.Leaf = nonNil(c.Leaf)
		p[i] = c
	}
	e.PriorConsents = p
	return json.Marshal(e)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// checkOpened checks an event record's opened fields against its leaf: none
// unless the header says opened; when opened, one per sealed field, in the
// leaf's order, with the same name and subject, and either a value or
// erased. The values themselves are not covered by any hash.
func checkOpened(opened bool, sealed []domain.SealedField, got []OpenedField) error {
	if !opened {
		if len(got) != 0 {
			return errors.New("present in a bundle whose header says it is not opened")
		}
		return nil
	}
	if len(got) != len(sealed) {
		return fmt.Errorf("%d opened fields for %d sealed fields in the leaf", len(got), len(sealed))
	}
	for i, f := range sealed {
		o := got[i]
		if o.Name != f.Name || o.Subject != string(f.Subject) {
			return fmt.Errorf("opened field %d is %s of %s, the leaf's is %s of %s", i, o.Name, o.Subject, f.Name, f.Subject)
		}
		if o.Erased == (len(o.Value) > 0) {
			return fmt.Errorf("opened field %s must have either a value or erased", o.Name)
		}
	}
	return nil
}
