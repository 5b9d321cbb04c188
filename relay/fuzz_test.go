package relay_test

import (
	"bytes"
	"errors"
	"testing"

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
