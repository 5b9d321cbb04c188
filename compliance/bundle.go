// Package compliance holds what Vigil does for auditors and data-protection
// officers on top of the ledger: self-contained auditor export bundles with
// their proofs and the offline verifier for them, proof and receipt queries,
// GDPR export and erasure, and retention. It depends on the core packages
// only (domain, ledger, projections); cmd/vigil wires it to the adapters.
package compliance

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/tlog"
)

// BundleFormat names the auditor bundle format, the "format" of its header
// record. A change to the format gets a new name; see docs/export-format.md.
// v2 added the bundle signature and the canonical form.
const BundleFormat = "vigil-audit-bundle/v2"

// BundleStatement returns the text of a bundle's signed statement: the
// format, the log's origin, and the SHA-256 of the bundle's bytes up to the
// end record, followed by the end record encoded without its signature.
func BundleStatement(origin string, digest [32]byte) string {
	return BundleFormat + "\n" + origin + "\nsha256 " + base64.StdEncoding.EncodeToString(digest[:]) + "\n"
}

// The values of the "record" member of each line of a bundle.
const (
	RecordHeader = "header"
	RecordEvent  = "event"
	RecordEnd    = "end"
)

// BundleContentType is the media type of a bundle: JSON Lines.
const BundleContentType = "application/x-ndjson"

// BundleHeader is the first line of a bundle. Everything in it is either
// signed (the checkpoint notes) or checked against signed values by the
// verifier (prefix hashes, proofs).
type BundleHeader struct {
	Record string `json:"record"` // "header"
	Format string `json:"format"` // BundleFormat
	Tenant string `json:"tenant"`
	// Origin is the checkpoint origin of the tenant's log, "<prefix>/<tenant>".
	Origin string `json:"origin"`
	// FromSeq and ToSeq bound the exported leaves, both inclusive.
	FromSeq int64 `json:"from_seq"`
	ToSeq   int64 `json:"to_seq"`
	// Count is ToSeq-FromSeq+1, the number of event records that follow.
	Count int64 `json:"count"`
	// Opened reports whether event records carry opened personal fields.
	Opened    bool      `json:"opened"`
	CreatedAt time.Time `json:"created_at"`
	// Prefix holds the roots of the complete subtrees of the tree of size
	// FromSeq, one per set bit of FromSeq, lowest level first (the stored
	// hashes at ledger.FrontierIndexes(FromSeq)). Empty when FromSeq is 0.
	Prefix []tlog.Hash `json:"prefix"`
	// Checkpoint is the signed checkpoint the bundle ends at: the smallest
	// of the tenant's checkpoints of size at least ToSeq+1.
	Checkpoint BundleCheckpoint `json:"checkpoint"`
	// TailProof proves that the tree of size ToSeq+1 is a prefix of the
	// checkpoint's tree (RFC 6962 consistency proof, tlog.ProveTree); empty
	// when the checkpoint's size is ToSeq+1.
	TailProof []tlog.Hash `json:"tail_proof"`
	// Since, when the exporter named an earlier checkpoint, holds it and the
	// consistency proof from it to Checkpoint.
	Since *BundleSince `json:"since,omitempty"`
}

// BundleCheckpoint is a signed checkpoint in a bundle. Size and Root repeat
// the note's body for readers; the verifier trusts only the signed note.
type BundleCheckpoint struct {
	Size int64     `json:"size"`
	Root tlog.Hash `json:"root"`
	Note string    `json:"note"`
}

// BundleSince is the earlier checkpoint an export was asked to prove
// consistency from, with the proof.
type BundleSince struct {
	BundleCheckpoint
	// Proof is the consistency proof from Size to the bundle's checkpoint
	// size; empty when the sizes are equal.
	Proof []tlog.Hash `json:"proof"`
}

// BundleEvent is one exported leaf. Leaf is authoritative: ID, Stream and
// Type repeat fields of it for readers and must match it.
type BundleEvent struct {
	Record   string    `json:"record"` // "event"
	Seq      int64     `json:"seq"`
	Position int64     `json:"position"`
	ID       uuid.UUID `json:"id"`
	Stream   string    `json:"stream"`
	Type     string    `json:"type"`
	LeafHash tlog.Hash `json:"leaf_hash"`
	// Leaf is the canonical leaf encoding (docs/ledger.md), sealed fields
	// as ciphertext.
	Leaf []byte `json:"leaf"`
	// Opened holds the personal fields in clear when the bundle is opened;
	// they are beside the leaf, never part of it.
	Opened []OpenedField `json:"opened,omitempty"`
}

// OpenedField is a personal field opened for an export.
type OpenedField struct {
	Name    string          `json:"name"`
	Subject string          `json:"subject"`
	Value   json.RawMessage `json:"value,omitempty"`
	Erased  bool            `json:"erased,omitempty"`
}

// BundleEnd is the last line of a bundle.
type BundleEnd struct {
	Record string `json:"record"` // "end"
	// Count repeats the number of event records written.
	Count int64 `json:"count"`
	// PriorConsents are the consent events, before FromSeq, that privileged
	// actions inside the bundle cite, each with an inclusion proof to the
	// bundle's checkpoint.
	PriorConsents []PriorEvent `json:"prior_consents"`
	// Signature is a note signed with the checkpoint key whose text is
	// BundleStatement: it covers every byte of the bundle, the values not
	// otherwise checked (positions, created_at, opened values) included.
	Signature string `json:"signature,omitempty"`
}

// PriorEvent is a leaf before the bundle's range with its inclusion proof
// (tlog.ProveRecord) to the bundle's checkpoint.
type PriorEvent struct {
	Seq      int64       `json:"seq"`
	Position int64       `json:"position"`
	LeafHash tlog.Hash   `json:"leaf_hash"`
	Leaf     []byte      `json:"leaf"`
	Proof    []tlog.Hash `json:"proof"`
}

// appendEventLine appends the JSON line of an event record without
// reflection: exports are bounded by this loop. Stream and type are
// printable ASCII without quotes or backslashes (domain.ValidStream and the
// catalogue's names), so they need no escaping; anything else goes through
// encoding/json.
func appendEventLine(b []byte, ev *BundleEvent) ([]byte, error) {
	b = append(b, `{"record":"event","seq":`...)
	b = strconv.AppendInt(b, ev.Seq, 10)
	b = append(b, `,"position":`...)
	b = strconv.AppendInt(b, ev.Position, 10)
	b = append(b, `,"id":"`...)
	b = append(b, ev.ID.String()...)
	b = append(b, `","stream":`...)
	b = appendJSONString(b, ev.Stream)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, ev.Type)
	b = append(b, `,"leaf_hash":"`...)
	b = base64.StdEncoding.AppendEncode(b, ev.LeafHash[:])
	b = append(b, `","leaf":"`...)
	b = base64.StdEncoding.AppendEncode(b, ev.Leaf)
	b = append(b, '"')
	if len(ev.Opened) > 0 {
		o, err := json.Marshal(ev.Opened)
		if err != nil {
			return nil, err
		}
		b = append(b, `,"opened":`...)
		b = append(b, o...)
	}
	return append(b, "}\n"...), nil
}

func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
