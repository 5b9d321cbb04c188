package compliance

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vigilhq/vigil/domain"
	"golang.org/x/mod/sumdb/note"
)

// ErasureReceiptHeader is the first line of an erasure receipt's text.
const ErasureReceiptHeader = "vigil.erasure-receipt/v1"

// ErasureReceipt is what a signed erasure receipt states: which subject of which
// tenant was erased, when, which data keys were destroyed, and where the
// compliance.subject_erased events are in the log (their leaf hashes let
// the holder ask for an inclusion proof, GET /v1/events/{id}/receipt, and
// check it against any later checkpoint). It holds no personal data.
//
// The receipt is a signed note (golang.org/x/mod/sumdb/note, the format of
// the checkpoints) signed with the checkpoint signing key, so the
// checkpoint verifier key checks it offline. Its text is, one field per
// line, in this order:
//
//	vigil.erasure-receipt/v1
//	tenant <tenant id>
//	subject <subject>                      technician:<id> or session:<guid>
//	scope <all|chat>
//	request <request id>                   the erasure_requested event's id
//	erased-at <RFC 3339 time, UTC>
//	key <key subject> <key id>             one line per destroyed data key
//	event <event id> <position> <seq> <leaf hash, hex>
//	                                       one line per subject_erased event
//	counts events=<n> rows=<n> recordings=<n> webhooks=<n>
type ErasureReceipt struct {
	Tenant          string
	Subject         domain.Subject
	Scope           string
	Request         string
	ErasedAt        time.Time
	Keys            []ErasedKey
	Events          []ErasedEvent
	EventsAffected  int64
	ProjectionRows  int64
	Recordings      int64
	WebhookPayloads int64
}

// ErasedKey is one destroyed data key.
type ErasedKey struct {
	Subject domain.Subject
	KeyID   string
}

// ErasedEvent is one compliance.subject_erased event.
type ErasedEvent struct {
	ID       string
	Position int64
	Seq      int64
	LeafHash [32]byte
}

// Text returns the receipt's note text.
func (r ErasureReceipt) Text() string {
	var b strings.Builder
	b.WriteString(ErasureReceiptHeader + "\n")
	fmt.Fprintf(&b, "tenant %s\nsubject %s\nscope %s\nrequest %s\nerased-at %s\n",
		r.Tenant, r.Subject, r.Scope, r.Request, r.ErasedAt.UTC().Format(time.RFC3339Nano))
	for _, k := range r.Keys {
		fmt.Fprintf(&b, "key %s %s\n", k.Subject, k.KeyID)
	}
	for _, e := range r.Events {
		fmt.Fprintf(&b, "event %s %d %d %s\n", e.ID, e.Position, e.Seq, hex.EncodeToString(e.LeafHash[:]))
	}
	fmt.Fprintf(&b, "counts events=%d rows=%d recordings=%d webhooks=%d\n", r.EventsAffected, r.ProjectionRows, r.Recordings, r.WebhookPayloads)
	return b.String()
}

// SignErasureReceipt returns r as a note signed by signer.
func SignErasureReceipt(signer note.Signer, r ErasureReceipt) ([]byte, error) {
	for _, s := range []string{r.Tenant, string(r.Subject), r.Scope, r.Request} {
		if s == "" || strings.ContainsAny(s, " \n") {
			return nil, fmt.Errorf("erasure receipt: empty or malformed field %q", s)
		}
	}
	msg, err := note.Sign(&note.Note{Text: r.Text()}, signer)
	if err != nil {
		return nil, fmt.Errorf("sign erasure receipt: %w", err)
	}
	return msg, nil
}

// VerifyErasureReceipt checks the signature of a receipt note with verifiers and
// parses it. It returns an error naming what is wrong: an unknown key, a
// bad signature, or a malformed text.
func VerifyErasureReceipt(msg []byte, verifiers note.Verifiers) (ErasureReceipt, error) {
	n, err := note.Open(msg, verifiers)
	if err != nil {
		return ErasureReceipt{}, fmt.Errorf("erasure receipt signature: %w", err)
	}
	return ParseErasureReceipt(n.Text)
}

// ParseErasureReceipt parses a receipt's text (without checking any signature).
func ParseErasureReceipt(text string) (ErasureReceipt, error) {
	var r ErasureReceipt
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 7 || lines[0] != ErasureReceiptHeader {
		return r, fmt.Errorf("erasure receipt: want a %s text", ErasureReceiptHeader)
	}
	field := func(i int, name string) (string, error) {
		v, ok := strings.CutPrefix(lines[i], name+" ")
		if !ok || v == "" {
			return "", fmt.Errorf("erasure receipt: line %d: want %q", i+1, name)
		}
		return v, nil
	}
	var err error
	var subject, at string
	if r.Tenant, err = field(1, "tenant"); err != nil {
		return r, err
	}
	if subject, err = field(2, "subject"); err != nil {
		return r, err
	}
	r.Subject = domain.Subject(subject)
	if r.Scope, err = field(3, "scope"); err != nil {
		return r, err
	}
	if r.Request, err = field(4, "request"); err != nil {
		return r, err
	}
	if at, err = field(5, "erased-at"); err != nil {
		return r, err
	}
	if r.ErasedAt, err = time.Parse(time.RFC3339Nano, at); err != nil {
		return r, fmt.Errorf("erasure receipt: erased-at: %w", err)
	}
	i := 6
	for ; i < len(lines) && strings.HasPrefix(lines[i], "key "); i++ {
		f := strings.Fields(lines[i])
		if len(f) != 3 {
			return r, fmt.Errorf("erasure receipt: line %d: want key <subject> <key id>", i+1)
		}
		r.Keys = append(r.Keys, ErasedKey{Subject: domain.Subject(f[1]), KeyID: f[2]})
	}
	for ; i < len(lines) && strings.HasPrefix(lines[i], "event "); i++ {
		f := strings.Fields(lines[i])
		if len(f) != 5 {
			return r, fmt.Errorf("erasure receipt: line %d: want event <id> <position> <seq> <leaf hash>", i+1)
		}
		e := ErasedEvent{ID: f[1]}
		var perr error
		if e.Position, perr = strconv.ParseInt(f[2], 10, 64); perr != nil {
			return r, fmt.Errorf("erasure receipt: line %d: position: %w", i+1, perr)
		}
		if e.Seq, perr = strconv.ParseInt(f[3], 10, 64); perr != nil {
			return r, fmt.Errorf("erasure receipt: line %d: seq: %w", i+1, perr)
		}
		h, herr := hex.DecodeString(f[4])
		if herr != nil || len(h) != 32 {
			return r, fmt.Errorf("erasure receipt: line %d: leaf hash is not 32 bytes of hex", i+1)
		}
		copy(e.LeafHash[:], h)
		r.Events = append(r.Events, e)
	}
	if len(r.Keys) == 0 || len(r.Events) == 0 {
		return r, fmt.Errorf("erasure receipt: no key or event lines")
	}
	if i != len(lines)-1 {
		return r, fmt.Errorf("erasure receipt: line %d: unexpected %q", i+1, lines[i])
	}
	if _, err := fmt.Sscanf(lines[i], "counts events=%d rows=%d recordings=%d webhooks=%d",
		&r.EventsAffected, &r.ProjectionRows, &r.Recordings, &r.WebhookPayloads); err != nil {
		return r, fmt.Errorf("erasure receipt: line %d: counts: %w", i+1, err)
	}
	return r, nil
}
