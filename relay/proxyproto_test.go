package relay_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vigilhq/vigil/relay"
)

// v2Header builds a PROXY protocol v2 header by hand (not with the code
// under test): version 2, cmd (0 LOCAL, 1 PROXY), the family and
// transport byte, then body.
func v2Header(cmd, famProto byte, body ...[]byte) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n")
	b = append(b, 0x20|cmd, famProto)
	n := 0
	for _, p := range body {
		n += len(p)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	for _, p := range body {
		b = append(b, p...)
	}
	return b
}

// v2Addrs is the address block of TCP over IPv4 or IPv6.
func v2Addrs(src, dst netip.AddrPort) []byte {
	var b []byte
	if src.Addr().Is4() {
		s, d := src.Addr().As4(), dst.Addr().As4()
		b = append(append(b, s[:]...), d[:]...)
	} else {
		s, d := src.Addr().As16(), dst.Addr().As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

func v2TCP(src, dst string) []byte {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	fam := byte(0x11)
	if s.Addr().Is6() {
		fam = 0x21
	}
	return v2Header(1, fam, v2Addrs(s, d))
}

// awsTLV is a TLV like the one AWS NLB adds (type 0xEA, the VPC endpoint).
var awsTLV = []byte{0xea, 0x00, 0x09, 0x01, 'v', 'p', 'c', 'e', '-', '1', '2', '3'}

func TestReadProxyHeader(t *testing.T) {
	ap := netip.MustParseAddrPort
	cases := []struct {
		name string
		in   string
		want relay.ProxyHeader
	}{
		{"v1 tcp4", "PROXY TCP4 203.0.113.7 10.0.0.1 51234 8443\r\n",
			relay.ProxyHeader{Version: 1, Source: ap("203.0.113.7:51234"), Destination: ap("10.0.0.1:8443")}},
		{"v1 tcp4 shortest", "PROXY TCP4 1.2.3.4 5.6.7.8 0 9\r\n",
			relay.ProxyHeader{Version: 1, Source: ap("1.2.3.4:0"), Destination: ap("5.6.7.8:9")}},
		{"v1 tcp6", "PROXY TCP6 2001:db8::7 2001:db8::1 65535 443\r\n",
			relay.ProxyHeader{Version: 1, Source: ap("[2001:db8::7]:65535"), Destination: ap("[2001:db8::1]:443")}},
		{"v1 tcp6 longest", "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
			relay.ProxyHeader{Version: 1, Source: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Destination: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
		{"v1 unknown short", "PROXY UNKNOWN\r\n", relay.ProxyHeader{Version: 1, Local: true}},
		{"v1 unknown longest", "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
			relay.ProxyHeader{Version: 1, Local: true}},
		{"v2 tcp4", string(v2TCP("198.51.100.9:4000", "10.0.0.1:8443")),
			relay.ProxyHeader{Version: 2, Source: ap("198.51.100.9:4000"), Destination: ap("10.0.0.1:8443")}},
		{"v2 tcp6", string(v2TCP("[2001:db8::9]:4000", "[2001:db8::1]:8443")),
			relay.ProxyHeader{Version: 2, Source: ap("[2001:db8::9]:4000"), Destination: ap("[2001:db8::1]:8443")}},
		{"v2 tcp4 with TLVs", string(v2Header(1, 0x11, v2Addrs(ap("198.51.100.9:4000"), ap("10.0.0.1:8443")), awsTLV, make([]byte, 300))),
			relay.ProxyHeader{Version: 2, Source: ap("198.51.100.9:4000"), Destination: ap("10.0.0.1:8443")}},
		{"v2 local", string(v2Header(0, 0x00)), relay.ProxyHeader{Version: 2, Local: true}},
		{"v2 local with addresses", string(v2Header(0, 0x11, v2Addrs(ap("198.51.100.9:4000"), ap("10.0.0.1:8443")))),
			relay.ProxyHeader{Version: 2, Local: true}},
		{"v2 proxy unspec", string(v2Header(1, 0x00, awsTLV)), relay.ProxyHeader{Version: 2, Local: true}},
		{"v2 proxy udp4", string(v2Header(1, 0x12, v2Addrs(ap("198.51.100.9:4000"), ap("10.0.0.1:53")))),
			relay.ProxyHeader{Version: 2, Local: true}},
		{"v2 proxy unix stream", string(v2Header(1, 0x31, make([]byte, 216))), relay.ProxyHeader{Version: 2, Local: true}},
		{"v2 longest", string(v2Header(1, 0x11, v2Addrs(ap("198.51.100.9:4000"), ap("10.0.0.1:8443")), make([]byte, relay.MaxProxyV2Len-16-12))),
			relay.ProxyHeader{Version: 2, Source: ap("198.51.100.9:4000"), Destination: ap("10.0.0.1:8443")}},
	}
	// What follows the header (a TLS ClientHello starts 0x16 0x03) must
	// stay unread, whether the bytes come all at once or one by one.
	const rest = "\x16\x03\x01\x02\x00REST"
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, oneByte := range []bool{false, true} {
				br := strings.NewReader(c.in + rest)
				var r io.Reader = br
				if oneByte {
					r = iotest.OneByteReader(br)
				}
				got, err := relay.ReadProxyHeader(r)
				if err != nil {
					t.Fatalf("one byte at a time %v: %v", oneByte, err)
				}
				if diff := cmp.Diff(c.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
					t.Errorf("one byte at a time %v: header (-want +got):\n%s", oneByte, diff)
				}
				if left, _ := io.ReadAll(br); string(left) != rest {
					t.Errorf("one byte at a time %v: left %q, want %q", oneByte, left, rest)
				}
			}
		})
	}
}

func TestReadProxyHeaderRefuses(t *testing.T) {
	ap := netip.MustParseAddrPort
	tooLongV2 := v2Header(1, 0x11, v2Addrs(ap("198.51.100.9:4000"), ap("10.0.0.1:8443")), make([]byte, relay.MaxProxyV2Len-16-12+1))
	cases := []struct {
		name      string
		in        string
		truncated bool // an EOF, not a malformed header
	}{
		{"empty", "", true},
		{"truncated v1", "PROXY TCP4 203.0.113.7 10.0.0.1", true},
		{"truncated v1 before the version is known", "PROXY TCP", true},
		{"truncated v1 at the CR", "PROXY TCP4 203.0.113.7 10.0.0.1 1 2\r", true},
		{"truncated v2", string(v2TCP("198.51.100.9:4000", "10.0.0.1:8443")[:20]), true},
		{"truncated v2 fixed part", string(v2TCP("198.51.100.9:4000", "10.0.0.1:8443")[:15]), true},
		{"truncated v2 TLVs", string(v2Header(1, 0x11, v2Addrs(ap("198.51.100.9:4000"), ap("10.0.0.1:8443")), awsTLV)[:30]), true},
		{"tls client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefgh", false},
		{"http", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", false},
		{"lower case", "proxy TCP4 203.0.113.7 10.0.0.1 1 2\r\n", false},
		{"v1 tcp5", "PROXY TCP5 203.0.113.7 10.0.0.1 1 2\r\n", false},
		{"v1 two spaces", "PROXY  TCP4 203.0.113.7 10.0.0.1 1 2\r\n", false},
		{"v1 lf only", "PROXY TCP4 203.0.113.7 10.0.0.1 1 2\n", false},
		{"v1 cr only", "PROXY TCP4 203.0.113.7 10.0.0.1 1 2\rX\r\n", false},
		{"v1 early crlf", "PROXY TCP4 1\r\nabcdefghijklmnopq", false},
		{"v1 too few fields", "PROXY TCP4 203.0.113.7 10.0.0.1 1\r\n", false},
		{"v1 too many fields", "PROXY TCP4 203.0.113.7 10.0.0.1 1 2 3\r\n", false},
		{"v1 ipv6 in tcp4", "PROXY TCP4 2001:db8::7 2001:db8::1 1 2\r\n", false},
		{"v1 ipv4 in tcp6", "PROXY TCP6 203.0.113.7 10.0.0.1 1 2\r\n", false},
		{"v1 zone", "PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n", false},
		{"v1 leading zero address", "PROXY TCP4 203.0.113.07 10.0.0.1 1 2\r\n", false},
		{"v1 leading zero port", "PROXY TCP4 203.0.113.7 10.0.0.1 01 2\r\n", false},
		{"v1 port too big", "PROXY TCP4 203.0.113.7 10.0.0.1 65536 2\r\n", false},
		{"v1 signed port", "PROXY TCP4 203.0.113.7 10.0.0.1 +1 2\r\n", false},
		{"v1 unknown glued", "PROXY UNKNOWNX\r\n", false},
		{"v1 oversized", "PROXY UNKNOWN " + strings.Repeat("a", relay.MaxProxyV1Len) + "\r\n", false},
		{"v1 oversized tcp", "PROXY TCP6 " + strings.Repeat("f", relay.MaxProxyV1Len) + "\r\n", false},
		{"v2 bad version", string(append(v2TCP("198.51.100.9:4000", "10.0.0.1:8443")[:12:12], 0x11, 0x11, 0, 12)), false},
		{"v2 version 1", string(append(v2TCP("198.51.100.9:4000", "10.0.0.1:8443")[:12:12], 0x10, 0x11, 0, 12)), false},
		{"v2 bad command", string(v2Header(2, 0x11, make([]byte, 12))), false},
		{"v2 bad family", string(v2Header(1, 0x41, make([]byte, 12))), false},
		{"v2 bad transport", string(v2Header(1, 0x13, make([]byte, 12))), false},
		{"v2 too short for ipv4", string(v2Header(1, 0x11, make([]byte, 11))), false},
		{"v2 too short for ipv6", string(v2Header(1, 0x21, make([]byte, 35))), false},
		{"v2 length beyond limit", string(tooLongV2), false},
		{"v2 length beyond limit, header only", string(tooLongV2[:16]), false},
		{"v2 bad signature", "\r\n\r\n\x00\r\nQUIT\r\x21\x11\x00\x0c" + strings.Repeat("x", 12), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.in
			if !c.truncated {
				// TLS follows, as from a balancer: a bad line may be
				// read past its end, but must not be waited on.
				in += "\x16\x03\x01\x02\x00"
			}
			r := strings.NewReader(in)
			h, err := relay.ReadProxyHeader(r)
			if err == nil {
				t.Fatalf("accepted as %+v", h)
			}
			eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
			if c.truncated != eof || eof == errors.Is(err, relay.ErrBadProxyHeader) {
				t.Fatalf("error %v: want truncated %v", err, c.truncated)
			}
			read := len(in) - r.Len()
			if read > relay.MaxProxyV2Len || (strings.HasPrefix(c.name, "v1") && read > relay.MaxProxyV1Len) {
				t.Errorf("read %d bytes of a bad header", read)
			}
			if strings.HasPrefix(c.name, "v2 length beyond limit") && read != 16 {
				t.Errorf("read %d bytes, want only the 16-byte fixed part", read)
			}
		})
	}
}

// prefixConn writes prefix in the same write as the first bytes written
// through it: a balancer's header and the client's ClientHello in one TCP
// segment, so that a relay reading past the header breaks the handshake.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Write(b []byte) (int, error) {
	if c.prefix != nil {
		p := append(append([]byte(nil), c.prefix...), b...)
		c.prefix = nil
		n, err := c.Conn.Write(p)
		return max(n-(len(p)-len(b)), 0), err
	}
	return c.Conn.Write(b)
}

// dialProxied connects as a balancer in ProxyFrom passing a client on:
// header, then the TLS handshake and hello. It returns the connection, a
// *relay.RefusedError, or the network or TLS error.
func (h *harness) dialProxied(t *testing.T, header []byte, side relay.Side, g [16]byte, token string) (*tls.Conn, error) {
	t.Helper()
	raw, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(&prefixConn{Conn: raw, prefix: header}, h.client)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fail := func(err error) (*tls.Conn, error) { conn.Close(); return nil, err }
	if err := conn.Handshake(); err != nil {
		return fail(err)
	}
	if _, err := conn.Write(relay.AppendHello(nil, relay.Hello{Side: side, GUID: g, Token: token})); err != nil {
		return fail(err)
	}
	var ans [1]byte
	if _, err := io.ReadFull(conn, ans[:]); err != nil {
		return fail(err)
	}
	if relay.Reason(ans[0]) != relay.ReasonOK {
		return fail(&relay.RefusedError{Reason: relay.Reason(ans[0])})
	}
	conn.SetDeadline(time.Time{})
	t.Cleanup(func() { conn.Close() })
	return conn, nil
}

// sourceIPs returns the source_ip of the session's relay_connected events
// by side, once both sides have one.
func sourceIPs(t *testing.T, h *harness, g [16]byte) map[string]string {
	t.Helper()
	guid := relay.Hello{GUID: g}.GUIDString()
	var ips map[string]string
	waitFor(t, "relay_connected of both sides", func() bool {
		ips = map[string]string{}
		for _, e := range h.events.all() {
			if e.Type == relay.EventConnected && e.Session == guid {
				ips[e.Side] = e.SourceIP
			}
		}
		return len(ips) == 2
	})
	return ips
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// behindBalancer trusts 127.0.0.1 as a balancer; its directions park
// after 30 ms without bytes, so that parking runs on proxied connections.
func behindBalancer(tune func(*relay.Config)) func(*relay.Config) {
	return quiet(func(c *relay.Config) {
		c.ProxyFrom = loopback
		c.Logger = slog.New(slog.DiscardHandler)
		if tune != nil {
			tune(c)
		}
	})
}

// TestRelayProxyProtocol pairs sides announced by a balancer with every
// kind of header: the events name the header's address (or, for LOCAL and
// UNKNOWN, the balancer's), and bytes flow exactly.
func TestRelayProxyProtocol(t *testing.T) {
	h := newHarness(t, behindBalancer(nil))
	cases := []struct {
		name             string
		custHdr, techHdr []byte
		custIP, techIP   string
	}{
		{"v1 tcp4", []byte("PROXY TCP4 203.0.113.7 127.0.0.1 51234 8443\r\n"), []byte("PROXY TCP4 198.51.100.20 127.0.0.1 40000 8443\r\n"),
			"203.0.113.7", "198.51.100.20"},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 51234 8443\r\n"), []byte("PROXY TCP6 2001:db8:ffff::20 2001:db8::1 40000 8443\r\n"),
			"2001:db8::7", "2001:db8:ffff::20"},
		{"v2 tcp4", v2TCP("203.0.113.8:51234", "10.0.0.1:8443"), v2TCP("198.51.100.21:40000", "10.0.0.1:8443"),
			"203.0.113.8", "198.51.100.21"},
		{"v2 tcp6", v2TCP("[2001:db8::8]:51234", "[2001:db8::1]:8443"), v2TCP("[2001:db8:ffff::21]:40000", "[2001:db8::1]:8443"),
			"2001:db8::8", "2001:db8:ffff::21"},
		{"v2 ipv4-mapped", v2TCP("[::ffff:203.0.113.9]:51234", "[2001:db8::1]:8443"), v2TCP("[2001:db8::22]:40000", "[2001:db8::1]:8443"),
			"203.0.113.9", "2001:db8::22"},
		{"v2 with TLVs", v2Header(1, 0x11, v2Addrs(netip.MustParseAddrPort("203.0.113.10:1"), netip.MustParseAddrPort("10.0.0.1:8443")), awsTLV),
			v2Header(1, 0x21, v2Addrs(netip.MustParseAddrPort("[2001:db8::23]:2"), netip.MustParseAddrPort("[2001:db8::1]:8443")), awsTLV, awsTLV),
			"203.0.113.10", "2001:db8::23"},
		{"v2 local and v1 unknown keep the balancer's address", v2Header(0, 0x00), []byte("PROXY UNKNOWN\r\n"),
			"127.0.0.1", "127.0.0.1"},
		{"v2 local with addresses", v2Header(0, 0x11, v2Addrs(netip.MustParseAddrPort("203.0.113.11:1"), netip.MustParseAddrPort("10.0.0.1:8443"))),
			[]byte("PROXY UNKNOWN 2001:db8::24 2001:db8::1 1 2\r\n"),
			"127.0.0.1", "127.0.0.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := h.session("tech-1")
			cust, err := h.dialProxied(t, c.custHdr, relay.SideCustomer, g, "")
			if err != nil {
				t.Fatalf("customer: %v", err)
			}
			tech, err := h.dialProxied(t, c.techHdr, relay.SideTechnician, g, "tech-1")
			if err != nil {
				t.Fatalf("technician: %v", err)
			}
			want := map[string]string{"customer": c.custIP, "technician": c.techIP}
			if diff := cmp.Diff(want, sourceIPs(t, h, g)); diff != "" {
				t.Errorf("source_ip by side (-want +got):\n%s", diff)
			}
			time.Sleep(60 * time.Millisecond) // both directions park
			for _, dir := range []struct {
				from, to *tls.Conn
				msg      string
			}{{cust, tech, "from the customer"}, {tech, cust, "from the technician, " + strings.Repeat("x", 40000)}} {
				go dir.from.Write([]byte(dir.msg))
				got := make([]byte, len(dir.msg))
				dir.to.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(dir.to, got); err != nil || !bytes.Equal(got, []byte(dir.msg)) {
					t.Fatalf("relayed %.30q, %v; want %.30q", got, err, dir.msg)
				}
			}
		})
	}
}

// TestRelayProxyHandshakeLimit checks that the per-address handshake
// limit counts the client the header names, not the balancer.
func TestRelayProxyHandshakeLimit(t *testing.T) {
	h := newHarness(t, behindBalancer(func(c *relay.Config) { c.MaxHandshakesPerIP = 2; c.HandshakeTimeout = 3 * time.Second }))
	crowded := []byte("PROXY TCP4 203.0.113.50 127.0.0.1 1000 8443\r\n")
	// Connections of 203.0.113.50 that send their header and no TLS hold
	// its handshake slots. One more comes before each try, for a silent
	// one may come after a try took a slot for a moment and be refused.
	silent := func() {
		raw, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		if _, err := raw.Write(crowded); err != nil {
			t.Fatal(err)
		}
	}
	silent()
	waitFor(t, "the slots of 203.0.113.50 taken", func() bool {
		silent()
		time.Sleep(20 * time.Millisecond)
		_, err := h.dialProxied(t, crowded, relay.SideCustomer, h.session("x"), "")
		return err != nil && refusal(err) == 0xff // closed before TLS
	})
	if counter(t, h, "busy") < 1 {
		t.Error("busy refusal not counted")
	}
	// Other clients behind the same balancer are not held up...
	g := h.session("x")
	if _, err := h.dialProxied(t, []byte("PROXY TCP4 203.0.113.51 127.0.0.1 1000 8443\r\n"), relay.SideCustomer, g, ""); err != nil {
		t.Fatalf("another client behind the balancer: %v", err)
	}
	// ...nor are the balancer's own connections.
	if _, err := h.dialProxied(t, v2Header(0, 0x00), relay.SideCustomer, h.session("x"), ""); err != nil {
		t.Fatalf("the balancer's own connection: %v", err)
	}
	// ...while 203.0.113.50 still is.
	if _, err := h.dialProxied(t, crowded, relay.SideCustomer, h.session("x"), ""); err == nil || refusal(err) != 0xff {
		t.Fatalf("203.0.113.50 over its limit: %v, want the connection closed", err)
	}
}

// TestRelayProxyUntrustedPeer checks that a header from a peer not in
// ProxyFrom is not parsed: its bytes go to TLS, which fails.
func TestRelayProxyUntrustedPeer(t *testing.T) {
	h := newHarness(t, func(c *relay.Config) { c.ProxyFrom = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} })
	for _, hdr := range [][]byte{[]byte("PROXY TCP4 203.0.113.7 127.0.0.1 51234 8443\r\n"), v2TCP("203.0.113.7:1", "10.0.0.1:8443")} {
		if _, err := h.dialProxied(t, hdr, relay.SideCustomer, h.session("x"), ""); err == nil || refusal(err) != 0xff {
			t.Fatalf("a header from an untrusted peer: %v, want the TLS handshake to fail", err)
		}
	}
	waitFor(t, "2 bad_hello refusals (failed TLS handshakes)", func() bool { return counter(t, h, "bad_hello") == 2 })
	if got := counter(t, h, relay.RefusalBadProxyHeader); got != 0 {
		t.Errorf("bad_proxy_header refusals %v, want 0", got)
	}
	// Without a header it connects as itself.
	cust, tech, g := h.pair(t)
	_, _ = cust, tech
	if diff := cmp.Diff(map[string]string{"customer": "127.0.0.1", "technician": "127.0.0.1"}, sourceIPs(t, h, g)); diff != "" {
		t.Errorf("source_ip by side (-want +got):\n%s", diff)
	}
}

// TestRelayProxyRefusals checks that a balancer's connection without a
// valid header is closed before TLS, at once, and counted.
func TestRelayProxyRefusals(t *testing.T) {
	h := newHarness(t, behindBalancer(func(c *relay.Config) { c.ProxyHeaderTimeout = 10 * time.Second }))
	ap := netip.MustParseAddrPort
	t.Run("no header", func(t *testing.T) {
		if _, err := h.dial(t, relay.SideCustomer, h.session("x"), ""); err == nil || refusal(err) != 0xff {
			t.Fatalf("TLS without a header: %v, want the connection closed", err)
		}
	})
	cases := []struct {
		name      string
		b         []byte
		truncated bool // the balancer then closes its side
	}{
		{"truncated v1", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 "), true},
		{"truncated v2", v2TCP("203.0.113.7:1", "10.0.0.1:8443")[:22], true},
		{"bad signature", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"bad v2 version", append(v2TCP("203.0.113.7:1", "10.0.0.1:8443")[:12:12], 0x31, 0x11, 0, 12), false},
		{"bad v2 command", v2Header(0xf, 0x11, make([]byte, 12)), false},
		{"bad v1 address", []byte("PROXY TCP4 203.0.113.256 10.0.0.1 1 2\r\n"), false},
		{"oversized v1 line", []byte("PROXY UNKNOWN " + strings.Repeat("a", 200) + "\r\n"), false},
		{"v2 length beyond limit", v2Header(1, 0x11, v2Addrs(ap("203.0.113.7:1"), ap("10.0.0.1:8443")), make([]byte, relay.MaxProxyV2Len)), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			go func() {
				raw.Write(c.b)
				if c.truncated {
					raw.(*net.TCPConn).CloseWrite()
				}
			}()
			raw.SetReadDeadline(time.Now().Add(5 * time.Second)) // well before the header timeout
			got, err := io.ReadAll(raw)
			if len(got) != 0 || isTimeout(err) {
				t.Fatalf("read %q, %v; want the relay to close at once", got, err)
			}
		})
	}
	if got, want := counter(t, h, relay.RefusalBadProxyHeader), float64(1+len(cases)); got != want {
		t.Errorf("bad_proxy_header refusals %v, want %v", got, want)
	}
}

// TestRelayProxyHeaderTimeout checks that a balancer's connection that
// sends nothing is closed after the header timeout, well before the
// handshake timeout.
func TestRelayProxyHeaderTimeout(t *testing.T) {
	h := newHarness(t, behindBalancer(func(c *relay.Config) {
		c.ProxyHeaderTimeout = 200 * time.Millisecond
		c.HandshakeTimeout = 30 * time.Second
	}))
	raw, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write([]byte("PROXY TCP4 203.0.113.7")) // and then nothing
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(raw); isTimeout(err) {
		t.Fatal("the relay kept a silent balancer connection open")
	}
	if got := counter(t, h, relay.RefusalBadProxyHeader); got != 1 {
		t.Errorf("bad_proxy_header refusals %v, want 1", got)
	}
}

func TestRelayProxyFromPrefixes(t *testing.T) {
	// An IPv4-mapped prefix names IPv4 balancers.
	h := newHarness(t, func(c *relay.Config) { c.ProxyFrom = []netip.Prefix{netip.MustParsePrefix("::ffff:127.0.0.0/104")} })
	g := h.session("tech-1")
	if _, err := h.dialProxied(t, []byte("PROXY TCP4 203.0.113.7 127.0.0.1 1 8443\r\n"), relay.SideCustomer, g, ""); err != nil {
		t.Fatalf("balancer in an IPv4-mapped prefix: %v", err)
	}
	if _, err := h.dialProxied(t, []byte("PROXY TCP4 203.0.113.8 127.0.0.1 1 8443\r\n"), relay.SideTechnician, g, "tech-1"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"customer": "203.0.113.7", "technician": "203.0.113.8"}, sourceIPs(t, h, g)); diff != "" {
		t.Errorf("source_ip by side (-want +got):\n%s", diff)
	}
	_, err := relay.New(relay.Config{TLS: &tls.Config{}, Backend: h.backend, ProxyFrom: []netip.Prefix{{}}})
	if err == nil {
		t.Fatal("New accepted an invalid ProxyFrom prefix")
	}
}
