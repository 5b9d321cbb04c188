package relay_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/vigilhq/vigil/relay"
)

func FuzzHello(f *testing.F) {
	f.Add(relay.AppendHello(nil, relay.Hello{Side: relay.SideCustomer}))
	f.Add(relay.AppendHello(nil, relay.Hello{Side: relay.SideTechnician, Token: "vgt_abc.def"}))
	f.Add([]byte("VGRL\x01\x03"))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := relay.ParseHello(b)
		h2, err2 := relay.ReadHello(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, relay.ErrBadHello) && !errors.Is(err, relay.ErrBadVersion) {
				t.Fatalf("ParseHello error %v is neither bad hello nor bad version", err)
			}
			return
		}
		if err2 != nil || h2 != h {
			t.Fatalf("ReadHello = %+v, %v; ParseHello = %+v", h2, err2, h)
		}
		if again := relay.AppendHello(nil, h); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gives %x", b, again)
		}
	})
}

// FuzzProxyHeader checks that ReadProxyHeader never panics, reads exactly
// the header it accepts (up to the first CRLF for v1, 16 bytes and the
// length field for v2) and nothing after it, never reads more than the
// longest header, and gets the same answer when the bytes come one by one.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 8443\r\n\x16\x03\x01"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 65535 443\r\nrest"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"))
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\r\n"))
	f.Add(v2TCP("198.51.100.9:4000", "10.0.0.1:8443"))
	f.Add(append(v2TCP("[2001:db8::9]:4000", "[2001:db8::1]:8443"), 0x16, 0x03))
	f.Add(v2Header(1, 0x11, make([]byte, 12), awsTLV))
	f.Add(v2Header(0, 0x00))
	f.Add(v2Header(1, 0x31, make([]byte, 216)))
	f.Add([]byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, err := relay.ReadProxyHeader(r)
		read := len(b) - r.Len()
		r1 := bytes.NewReader(b)
		h1, err1 := relay.ReadProxyHeader(iotest.OneByteReader(r1))
		if read1 := len(b) - r1.Len(); (err == nil) != (err1 == nil) || h1 != h || read1 != read {
			t.Fatalf("one byte at a time: %+v, %v, %d bytes read; at once: %+v, %v, %d", h1, err1, read1, h, err, read)
		}
		if read > relay.MaxProxyV2Len {
			t.Fatalf("read %d bytes", read)
		}
		if err != nil {
			if !errors.Is(err, relay.ErrBadProxyHeader) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("error %v is neither a bad header nor a truncated one", err)
			}
			return
		}
		var want int
		switch h.Version {
		case 1:
			want = bytes.Index(b, []byte("\r\n")) + 2
			if !bytes.HasPrefix(b, []byte("PROXY ")) || want > relay.MaxProxyV1Len {
				t.Fatalf("accepted a v1 header in %q", b)
			}
		case 2:
			if len(b) < 16 {
				t.Fatalf("accepted a v2 header of %d bytes", len(b))
			}
			want = 16 + int(binary.BigEndian.Uint16(b[14:16]))
		default:
			t.Fatalf("version %d", h.Version)
		}
		if read != want {
			t.Fatalf("read %d bytes of a %d-byte header %q", read, want, b)
		}
		if h.Local != !h.Source.IsValid() || h.Local != !h.Destination.IsValid() {
			t.Fatalf("header %+v: addresses and Local disagree", h)
		}
	})
}
