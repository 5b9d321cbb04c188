package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
	"golang.org/x/mod/sumdb/tlog"
)

// LeafPrefix starts every canonical leaf encoding. A new encoding gets a new
// prefix, so that old leaves keep verifying.
const LeafPrefix = "vigil/leaf/v1\n"

// SealedPrefix starts the canonical encoding of an event's sealed fields.
const SealedPrefix = "vigil/sealed/v1\n"

// MaxFieldLen bounds one length-prefixed field in the encodings, so that a
// corrupt or hostile length cannot make a decoder allocate without limit.
const MaxFieldLen = 16 << 20

// ErrMalformed is returned by the decoders for input that is not a canonical
// encoding.
var ErrMalformed = errors.New("malformed encoding")

// EncodeLeaf returns the canonical leaf encoding of e, the bytes whose RFC 6962
// leaf hash (SHA-256 of 0x00 || bytes) is stored in the tenant's Merkle log.
// It covers every stored field of the envelope except the ones the log itself
// assigns (position, seq, leaf hash). Times are encoded as Unix microseconds,
// the precision PostgreSQL keeps. See docs/ledger.md for the layout.
func EncodeLeaf(e *domain.Event) []byte {
	sealed := EncodeSealed(e.Sealed)
	return AppendLeaf(make([]byte, 0, 128+len(e.Tenant)+len(e.Stream)+len(e.Type)+len(e.Data)+len(sealed)), e, sealed)
}

// AppendLeaf appends the canonical leaf encoding of e, with sealed being the
// output of EncodeSealed(e.Sealed), to b and returns the extended slice.
func AppendLeaf(b []byte, e *domain.Event, sealed []byte) []byte {
	b = append(b, LeafPrefix...)
	b = appendBytes(b, e.ID[:])
	b = appendBytes(b, []byte(e.Tenant))
	b = appendBytes(b, []byte(e.Stream))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Version))
	b = appendBytes(b, []byte(e.Type))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Schema))
	b = binary.BigEndian.AppendUint64(b, uint64(e.OccurredAt.UnixMicro()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.RecordedAt.UnixMicro()))
	b = appendBytes(b, []byte(e.Actor.Kind))
	b = appendBytes(b, []byte(e.Actor.ID))
	b = appendBytes(b, e.Data)
	b = appendBytes(b, sealed)
	return b
}

// LeafHash returns the RFC 6962 leaf hash of e's canonical encoding.
func LeafHash(e *domain.Event) tlog.Hash {
	return tlog.RecordHash(EncodeLeaf(e))
}

// EncodeSealed returns the canonical encoding of an event's sealed fields:
// the prefix, a count, and for each field its name, subject, key id, nonce
// and ciphertext, each length-prefixed.
func EncodeSealed(fields []domain.SealedField) []byte {
	n := len(SealedPrefix) + 8
	for _, f := range fields {
		n += 5*binary.MaxVarintLen32 + len(f.Name) + len(f.Subject) + len(f.KeyID) + len(f.Nonce) + len(f.Ciphertext)
	}
	b := make([]byte, 0, n)
	b = append(b, SealedPrefix...)
	b = binary.AppendUvarint(b, uint64(len(fields)))
	for _, f := range fields {
		b = appendBytes(b, []byte(f.Name))
		b = appendBytes(b, []byte(f.Subject))
		b = appendBytes(b, []byte(f.KeyID))
		b = appendBytes(b, f.Nonce)
		b = appendBytes(b, f.Ciphertext)
	}
	return b
}

// DecodeSealed parses the output of EncodeSealed. It returns ErrMalformed
// (wrapped) for anything else, including trailing bytes.
func DecodeSealed(b []byte) ([]domain.SealedField, error) {
	d := decoder{b: b}
	if !d.prefix(SealedPrefix) {
		return nil, fmt.Errorf("sealed fields: bad prefix: %w", ErrMalformed)
	}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(b)) {
		return nil, fmt.Errorf("sealed fields: bad count: %w", ErrMalformed)
	}
	var out []domain.SealedField
	if n > 0 {
		out = make([]domain.SealedField, 0, n)
	}
	for i := uint64(0); i < n; i++ {
		var f domain.SealedField
		f.Name = string(d.bytes())
		f.Subject = domain.Subject(d.bytes())
		f.KeyID = string(d.bytes())
		f.Nonce = d.bytes()
		f.Ciphertext = d.bytes()
		if d.err != nil {
			return nil, fmt.Errorf("sealed field %d: %w", i, d.err)
		}
		out = append(out, f)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("sealed fields: %d trailing bytes: %w", len(d.b), ErrMalformed)
	}
	return out, nil
}

// DecodeLeaf parses a canonical leaf encoding back into an envelope (without
// position, seq and leaf hash). It returns ErrMalformed (wrapped) for any
// input that EncodeLeaf could not have produced.
func DecodeLeaf(b []byte) (domain.Event, error) {
	var e domain.Event
	d := decoder{b: b}
	if !d.prefix(LeafPrefix) {
		return e, fmt.Errorf("leaf: bad prefix: %w", ErrMalformed)
	}
	id := d.bytes()
	if d.err == nil && len(id) != 16 {
		return e, fmt.Errorf("leaf: id of %d bytes: %w", len(id), ErrMalformed)
	}
	if d.err == nil {
		e.ID = uuid.UUID(id)
	}
	e.Tenant = string(d.bytes())
	e.Stream = string(d.bytes())
	e.Version = int64(d.uint64())
	e.Type = string(d.bytes())
	e.Schema = int(d.uint64())
	e.OccurredAt = time.UnixMicro(int64(d.uint64())).UTC()
	e.RecordedAt = time.UnixMicro(int64(d.uint64())).UTC()
	e.Actor.Kind = domain.ActorKind(d.bytes())
	e.Actor.ID = string(d.bytes())
	e.Data = d.bytes()
	sealed := d.bytes()
	if d.err != nil {
		return domain.Event{}, fmt.Errorf("leaf: %w", d.err)
	}
	if len(d.b) != 0 {
		return domain.Event{}, fmt.Errorf("leaf: %d trailing bytes: %w", len(d.b), ErrMalformed)
	}
	fields, err := DecodeSealed(sealed)
	if err != nil {
		return domain.Event{}, fmt.Errorf("leaf: %w", err)
	}
	e.Sealed = fields
	return e, nil
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) prefix(p string) bool {
	if len(d.b) < len(p) || string(d.b[:len(p)]) != p {
		return false
	}
	d.b = d.b[len(p):]
	return true
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = ErrMalformed
		return 0
	}
	// Reject non-minimal varints so that each value has one encoding.
	if n > 1 && d.b[n-1] == 0 {
		d.err = ErrMalformed
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.err = ErrMalformed
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > MaxFieldLen || n > uint64(len(d.b)) {
		d.err = ErrMalformed
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b[:n])
	d.b = d.b[n:]
	return v
}
