package relay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// The PROXY protocol (haproxy's doc/proxy-protocol.txt) lets a TCP load
// balancer tell the relay whom a connection is from: it sends one header,
// text (v1) or binary (v2), before the client's first byte. The relay
// parses it only on connections from the addresses in Config.ProxyFrom
// (docs/relay-protocol.md, "Behind a load balancer").
//
// ReadProxyHeader reads exactly the header's bytes and no more, so that the
// TLS handshake reads the client's bytes from the socket itself: the
// connection stays a bare *net.TCPConn, which parking needs, and no byte
// can wait in a buffer of ours while its socket is parked.

// ProxyHeader is a parsed PROXY protocol header.
type ProxyHeader struct {
	// Version is 1 (text) or 2 (binary).
	Version int
	// Local reports a header that names no client: a v2 LOCAL command (the
	// balancer's own connection, such as a health check), a v1 UNKNOWN
	// line, or a v2 PROXY command for anything but TCP over IPv4 or IPv6.
	// The connection's own peer address stands, and Source and Destination
	// are zero.
	Local bool
	// Source is the client's address and port as the balancer saw them.
	Source netip.AddrPort
	// Destination is the address and port the client connected to.
	Destination netip.AddrPort
}

// ErrBadProxyHeader is returned (wrapped) by ReadProxyHeader for bytes that
// are not a valid PROXY protocol header.
var ErrBadProxyHeader = errors.New("malformed PROXY protocol header")

// Size limits of a PROXY protocol header.
const (
	// MaxProxyV1Len is the longest v1 line, CRLF included (the
	// specification's worst case, an UNKNOWN line with IPv6 fields).
	MaxProxyV1Len = 107
	// MaxProxyV2Len is the longest v2 header the relay accepts: the 16-byte
	// fixed part and at most 4 KiB of addresses and TLVs, far more than
	// balancers send (addresses and a few short TLVs).
	MaxProxyV2Len = 16 + 4096
)

// proxyV2Sig opens every v2 header.
var proxyV2Sig = [12]byte{0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a}

// proxyMinLen is what ReadProxyHeader reads before it knows the version:
// the shortest valid header, "PROXY UNKNOWN\r\n" (a v2 header is at least
// 16 bytes).
const proxyMinLen = 15

func badProxy(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadProxyHeader, fmt.Sprintf(format, args...))
}

// ReadProxyHeader reads one PROXY protocol header, v1 or v2, from r. It
// never reads a byte past the header: every Read asks for at most as many
// bytes as the shortest valid header could still need, so whatever follows
// (the TLS ClientHello) stays unread in r. v2 TLVs are skipped. It returns
// an error wrapping ErrBadProxyHeader for anything that is not a valid
// header (bad signature or version, unknown command, family or transport,
// a malformed or too long v1 line, a v2 header longer than MaxProxyV2Len or
// too short for its addresses), io.ErrUnexpectedEOF or io.EOF for a
// truncated one, or r's error.
func ReadProxyHeader(r io.Reader) (ProxyHeader, error) {
	var buf [MaxProxyV1Len]byte
	if _, err := io.ReadFull(r, buf[:proxyMinLen]); err != nil {
		return ProxyHeader{}, err
	}
	switch {
	case bytes.Equal(buf[:len(proxyV2Sig)], proxyV2Sig[:]):
		return readProxyV2(r, buf[:proxyMinLen])
	case bytes.HasPrefix(buf[:proxyMinLen], []byte("PROXY ")):
		return readProxyV1(r, &buf)
	}
	return ProxyHeader{}, badProxy("no PROXY protocol signature")
}

// readProxyV1 reads the rest of a v1 line whose first proxyMinLen bytes are
// in buf.
func readProxyV1(r io.Reader, buf *[MaxProxyV1Len]byte) (ProxyHeader, error) {
	n := proxyMinLen
	var tcp bool
	switch line := buf[:n]; {
	case bytes.HasPrefix(line, []byte("PROXY TCP4 ")), bytes.HasPrefix(line, []byte("PROXY TCP6 ")):
		tcp = true
	case bytes.HasPrefix(line, []byte("PROXY UNKNOWN\r")), bytes.HasPrefix(line, []byte("PROXY UNKNOWN ")):
	default:
		return ProxyHeader{}, badProxy("v1 line %q: want TCP4, TCP6 or UNKNOWN", line)
	}
	for {
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			if i != n-1 || buf[i-1] != '\r' {
				return ProxyHeader{}, badProxy("v1 line not ended by CRLF")
			}
			return parseProxyV1(buf[:n-2], tcp)
		}
		need := v1Need(buf[:n], tcp)
		if need < 0 || n+need > MaxProxyV1Len {
			return ProxyHeader{}, badProxy("v1 line longer than %d bytes or malformed", MaxProxyV1Len)
		}
		if _, err := io.ReadFull(r, buf[n:n+need]); err != nil {
			return ProxyHeader{}, unexpected(err)
		}
		n += need
	}
}

// v1Need is how many more bytes any valid line beginning with line (which
// has no LF yet) must still have: reading that many can never go past its
// CRLF. A TCP line is six tokens of at least one byte, five spaces and
// CRLF; an UNKNOWN line ends at the first CRLF. It returns -1 when no
// valid line begins with line.
func v1Need(line []byte, tcp bool) int {
	if line[len(line)-1] == '\r' {
		return 1
	}
	if !tcp {
		return 2
	}
	spaces := bytes.Count(line, []byte(" "))
	if spaces > 5 {
		return -1
	}
	need := 2*(5-spaces) + 2 // the missing spaces, a token after each, CRLF
	if line[len(line)-1] == ' ' {
		need++ // the token after the last space
	}
	return need
}

// parseProxyV1 parses a v1 line without its CRLF.
func parseProxyV1(line []byte, tcp bool) (ProxyHeader, error) {
	if !tcp {
		// "For UNKNOWN, the rest of the line before the CRLF may be omitted
		// by the sender, and the receiver must ignore anything presented
		// before the CRLF is found."
		if s := string(line); s != "PROXY UNKNOWN" && !strings.HasPrefix(s, "PROXY UNKNOWN ") {
			return ProxyHeader{}, badProxy("v1 line %q", line)
		}
		return ProxyHeader{Version: 1, Local: true}, nil
	}
	f := strings.Split(string(line), " ")
	if len(f) != 6 {
		return ProxyHeader{}, badProxy("v1 line of %d fields", len(f))
	}
	v4 := f[1] == "TCP4"
	src, err := parseV1Addr(f[2], v4)
	if err != nil {
		return ProxyHeader{}, err
	}
	dst, err := parseV1Addr(f[3], v4)
	if err != nil {
		return ProxyHeader{}, err
	}
	sport, err := parseV1Port(f[4])
	if err != nil {
		return ProxyHeader{}, err
	}
	dport, err := parseV1Port(f[5])
	if err != nil {
		return ProxyHeader{}, err
	}
	return ProxyHeader{Version: 1, Source: netip.AddrPortFrom(src, sport), Destination: netip.AddrPortFrom(dst, dport)}, nil
}

func parseV1Addr(s string, v4 bool) (netip.Addr, error) {
	a, err := netip.ParseAddr(s) // rejects IPv4 numbers with leading zeroes
	if err != nil || a.Zone() != "" || a.Is4() != v4 {
		fam := "TCP6"
		if v4 {
			fam = "TCP4"
		}
		return netip.Addr{}, badProxy("v1 %s address %q", fam, s)
	}
	return a, nil
}

// parseV1Port parses a decimal port in [0, 65535] without leading zeroes.
func parseV1Port(s string) (uint16, error) {
	if s == "" || len(s) > 5 || (s[0] == '0' && len(s) > 1) {
		return 0, badProxy("v1 port %q", s)
	}
	var v int
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, badProxy("v1 port %q", s)
		}
		v = v*10 + int(c-'0')
	}
	if v > 65535 {
		return 0, badProxy("v1 port %q", s)
	}
	return uint16(v), nil
}

// The v2 commands, address families and transports.
const (
	proxyCmdLocal = 0x0
	proxyCmdProxy = 0x1
	proxyTCP4     = 0x11 // AF_INET, STREAM
	proxyTCP6     = 0x21 // AF_INET6, STREAM
)

// readProxyV2 reads the rest of a v2 header whose first proxyMinLen bytes
// are in got.
func readProxyV2(r io.Reader, got []byte) (ProxyHeader, error) {
	var fixed [16]byte
	copy(fixed[:], got)
	if _, err := io.ReadFull(r, fixed[len(got):]); err != nil {
		return ProxyHeader{}, unexpected(err)
	}
	verCmd, famProto := fixed[12], fixed[13]
	length := int(binary.BigEndian.Uint16(fixed[14:16]))
	switch {
	case verCmd>>4 != 2:
		return ProxyHeader{}, badProxy("v2 version %d", verCmd>>4)
	case verCmd&0xf > proxyCmdProxy:
		return ProxyHeader{}, badProxy("v2 command %d", verCmd&0xf)
	case famProto>>4 > 3 || famProto&0xf > 2:
		return ProxyHeader{}, badProxy("v2 family and transport %#02x", famProto)
	case 16+length > MaxProxyV2Len:
		return ProxyHeader{}, badProxy("v2 header of %d bytes (at most %d)", 16+length, MaxProxyV2Len)
	}
	h := ProxyHeader{Version: 2, Local: true}
	var addrs [36]byte
	if verCmd&0xf == proxyCmdProxy && (famProto == proxyTCP4 || famProto == proxyTCP6) {
		// Only TCP over IPv4 or IPv6 is used; the specification has a
		// receiver fall back to the connection's own addresses (as for
		// LOCAL) for any other valid combination.
		size := 12
		if famProto == proxyTCP6 {
			size = 36
		}
		if length < size {
			return ProxyHeader{}, badProxy("v2 length %d too short for the addresses", length)
		}
		a := addrs[:size]
		if _, err := io.ReadFull(r, a); err != nil {
			return ProxyHeader{}, unexpected(err)
		}
		length -= size
		h.Local = false
		if famProto == proxyTCP4 {
			h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
			h.Destination = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
		} else {
			h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
			h.Destination = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
		}
	}
	// Skip the TLVs (or, for LOCAL and the fallbacks, the whole block).
	for length > 0 {
		k := min(length, len(addrs))
		if _, err := io.ReadFull(r, addrs[:k]); err != nil {
			return ProxyHeader{}, unexpected(err)
		}
		length -= k
	}
	return h, nil
}

// unexpected turns an EOF in the middle of a header into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
