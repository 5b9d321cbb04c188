// Package relay is Vigil's gateway relay: a TLS listener that pairs the
// customer's applet and the technician's console of one support session
// and copies the bytes between them without reading them. It asks the
// backend whether a side may connect through the Backend port and reports
// what happened through the Publisher port; docs/relay-protocol.md
// describes the wire protocol.
package relay

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Magic opens every hello.
var Magic = [4]byte{'V', 'G', 'R', 'L'}

// Version is the protocol version this relay speaks.
const Version byte = 1

// MaxTokenLen bounds the technician's bearer token in a hello.
const MaxTokenLen = 1024

// Side is the role a connection announces in its hello.
type Side byte

// The two sides of a relayed session.
const (
	SideCustomer   Side = 1
	SideTechnician Side = 2
)

// String returns "customer" or "technician" (the domain's names).
func (s Side) String() string {
	switch s {
	case SideCustomer:
		return "customer"
	case SideTechnician:
		return "technician"
	}
	return fmt.Sprintf("side(%d)", byte(s))
}

// Reason is the one-byte answer to a hello: ReasonOK or why the relay
// refuses the side.
type Reason byte

// The answers. Their values are part of the protocol and never change.
const (
	ReasonOK             Reason = 0x00 // accepted: wait for the peer, then bytes flow
	ReasonBadHello       Reason = 0x01 // malformed hello
	ReasonBadVersion     Reason = 0x02 // unsupported protocol version
	ReasonUnknownSession Reason = 0x03 // no such session
	ReasonSessionClosed  Reason = 0x04 // the session is closed
	ReasonNotAuthorized  Reason = 0x05 // bad token, or not the technician holding the session
	ReasonSideTaken      Reason = 0x06 // this side of the session is already connected
	ReasonBusy           Reason = 0x07 // connection or handshake limit reached
	ReasonUnavailable    Reason = 0x08 // the backend could not be asked
	ReasonShuttingDown   Reason = 0x09 // the relay is draining
	ReasonNotWaiting     Reason = 0x0a // the session is not in a state to accept this side
)

var reasonNames = map[Reason]string{
	ReasonOK: "ok", ReasonBadHello: "bad_hello", ReasonBadVersion: "bad_version",
	ReasonUnknownSession: "unknown_session", ReasonSessionClosed: "session_closed",
	ReasonNotAuthorized: "not_authorized", ReasonSideTaken: "side_taken", ReasonBusy: "busy",
	ReasonUnavailable: "unavailable", ReasonShuttingDown: "shutting_down", ReasonNotWaiting: "not_waiting",
}

// String returns the reason's stable name, used in metrics and logs.
func (r Reason) String() string {
	if n, ok := reasonNames[r]; ok {
		return n
	}
	return fmt.Sprintf("reason(%d)", byte(r))
}

// Hello is what a side sends right after the TLS handshake.
type Hello struct {
	Side Side
	// GUID is the session's 128-bit identifier.
	GUID [16]byte
	// Token is the technician's bearer token; empty for the customer.
	Token string
}

// GUIDString returns the GUID as Vigil writes it: 32 lower-case hex digits.
func (h Hello) GUIDString() string { return hex.EncodeToString(h.GUID[:]) }

// ErrBadHello is returned (wrapped) by ReadHello for a malformed hello.
var ErrBadHello = errors.New("malformed relay hello")

// ErrBadVersion is returned by ReadHello for a hello of another version.
var ErrBadVersion = errors.New("unsupported relay protocol version")

// helloFixed is magic(4) version(1) side(1) guid(16) tokenlen(2).
const helloFixed = 4 + 1 + 1 + 16 + 2

// AppendHello appends h's wire form to b. It panics on a token longer than
// MaxTokenLen.
func AppendHello(b []byte, h Hello) []byte {
	if len(h.Token) > MaxTokenLen {
		panic("relay: token too long")
	}
	b = append(b, Magic[:]...)
	b = append(b, Version, byte(h.Side))
	b = append(b, h.GUID[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Token)))
	return append(b, h.Token...)
}

// ReadHello reads one hello from r. It returns ErrBadVersion for another
// version, an error wrapping ErrBadHello for anything malformed (bad
// magic, unknown side, a customer with a token, a technician without one,
// a token too long), or the read error.
func ReadHello(r io.Reader) (Hello, error) {
	var fixed [helloFixed]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return Hello{}, err
	}
	h, n, err := parseFixed(fixed[:])
	if err != nil {
		return Hello{}, err
	}
	if n > 0 {
		tok := make([]byte, n)
		if _, err := io.ReadFull(r, tok); err != nil {
			return Hello{}, err
		}
		h.Token = string(tok)
	}
	return h, nil
}

// ParseHello parses a complete hello held in b, with nothing after it.
func ParseHello(b []byte) (Hello, error) {
	if len(b) < helloFixed {
		return Hello{}, fmt.Errorf("%w: %d bytes", ErrBadHello, len(b))
	}
	h, n, err := parseFixed(b[:helloFixed])
	if err != nil {
		return Hello{}, err
	}
	if len(b) != helloFixed+n {
		return Hello{}, fmt.Errorf("%w: token length %d does not match", ErrBadHello, n)
	}
	h.Token = string(b[helloFixed:])
	return h, nil
}

func parseFixed(b []byte) (Hello, int, error) {
	if [4]byte(b[0:4]) != Magic {
		return Hello{}, 0, fmt.Errorf("%w: bad magic", ErrBadHello)
	}
	if b[4] != Version {
		return Hello{}, 0, ErrBadVersion
	}
	h := Hello{Side: Side(b[5]), GUID: [16]byte(b[6:22])}
	n := int(binary.BigEndian.Uint16(b[22:24]))
	switch {
	case h.Side != SideCustomer && h.Side != SideTechnician:
		return Hello{}, 0, fmt.Errorf("%w: unknown side %d", ErrBadHello, b[5])
	case n > MaxTokenLen:
		return Hello{}, 0, fmt.Errorf("%w: token of %d bytes", ErrBadHello, n)
	case h.Side == SideCustomer && n != 0:
		return Hello{}, 0, fmt.Errorf("%w: the customer side sends no token", ErrBadHello)
	case h.Side == SideTechnician && n == 0:
		return Hello{}, 0, fmt.Errorf("%w: the technician side needs a token", ErrBadHello)
	}
	return h, n, nil
}
