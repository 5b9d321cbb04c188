package relay_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vigilhq/vigil/relay"
)

// serveUDP starts the rendezvous of h's relay on a loopback UDP port.
func (h *harness) serveUDP(t *testing.T, cfg relay.RendezvousConfig) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.srv.ServeUDP(pc, cfg) }()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

func udpSocket(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rvKey(t *testing.T, c *tls.Conn, side relay.Side, g [16]byte) []byte {
	t.Helper()
	k, err := relay.RendezvousKey(c, side, g)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRendezvous: both sides of a pair announce themselves with a MAC
// under their own TLS exporter key and each learns the other's address as
// the relay saw it; they can then reach each other directly.
func TestRendezvous(t *testing.T) {
	h := newHarness(t, nil)
	rv := h.serveUDP(t, relay.RendezvousConfig{})
	cust, tech, g := h.pair(t)
	cu, te := udpSocket(t), udpSocket(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		ans relay.RendezvousAnswer
		err error
	}
	techDone := make(chan res, 1)
	go func() {
		a, err := relay.Rendezvous(ctx, te, rv, rvKey(t, tech, relay.SideTechnician, g), relay.SideTechnician, g, 50*time.Millisecond)
		techDone <- res{a, err}
	}()
	ca, err := relay.Rendezvous(ctx, cu, rv, rvKey(t, cust, relay.SideCustomer, g), relay.SideCustomer, g, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	tr := <-techDone
	if tr.err != nil {
		t.Fatal(tr.err)
	}
	cuAddr, teAddr := cu.LocalAddr().(*net.UDPAddr).AddrPort(), te.LocalAddr().(*net.UDPAddr).AddrPort()
	if ca.Self != cuAddr || ca.Peer != teAddr || tr.ans.Self != teAddr || tr.ans.Peer != cuAddr {
		t.Fatalf("customer learned self %v peer %v, technician self %v peer %v; sockets %v and %v", ca.Self, ca.Peer, tr.ans.Self, tr.ans.Peer, cuAddr, teAddr)
	}
	// The addresses work: a datagram straight from one side to the other.
	if _, err := cu.WriteToUDPAddrPort([]byte("punch"), ca.Peer); err != nil {
		t.Fatal(err)
	}
	te.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	for {
		n, from, err := te.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if from == cuAddr && string(buf[:n]) == "punch" {
			break
		}
	}
}

// TestRendezvousRefusals: a MAC under another key, an unknown session and
// a closed one are refused; nothing else answers with addresses.
func TestRendezvousRefusals(t *testing.T) {
	h := newHarness(t, nil)
	rv := h.serveUDP(t, relay.RendezvousConfig{})
	cust, tech, g := h.pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status := func(err error) byte {
		var re *relay.RendezvousError
		if errors.As(err, &re) {
			return re.Status
		}
		t.Fatalf("want a refusal, got %v", err)
		return 0
	}
	// The GUID alone is not enough: someone who knows it but holds neither
	// TLS connection cannot make a MAC the relay accepts.
	random := make([]byte, 32)
	rand.Read(random)
	_, err := relay.Rendezvous(ctx, udpSocket(t), rv, random, relay.SideCustomer, g, 50*time.Millisecond)
	if s := status(err); s != relay.RendezvousBadMAC {
		t.Errorf("random key: status %d, want bad_mac", s)
	}
	// Nor is the other side's key.
	_, err = relay.Rendezvous(ctx, udpSocket(t), rv, rvKey(t, tech, relay.SideTechnician, g), relay.SideCustomer, g, 50*time.Millisecond)
	if s := status(err); s != relay.RendezvousBadMAC {
		t.Errorf("technician's key as customer: status %d, want bad_mac", s)
	}
	var other [16]byte
	rand.Read(other[:])
	_, err = relay.Rendezvous(ctx, udpSocket(t), rv, random, relay.SideCustomer, other, 50*time.Millisecond)
	if s := status(err); s != relay.RendezvousUnknownSession {
		t.Errorf("unknown session: status %d, want unknown_session", s)
	}
	key := rvKey(t, cust, relay.SideCustomer, g)
	h.backend.close(relay.Hello{GUID: g}.GUIDString())
	waitFor(t, "the pair torn down", func() bool { return h.srv.Load() == 0 })
	_, err = relay.Rendezvous(ctx, udpSocket(t), rv, key, relay.SideCustomer, g, 50*time.Millisecond)
	if s := status(err); s != relay.RendezvousSessionClosed {
		t.Errorf("closed session: status %d, want session_closed", s)
	}
}

// TestRendezvousRateLimit: past its burst, one address is not answered.
func TestRendezvousRateLimit(t *testing.T) {
	h := newHarness(t, nil)
	rv := h.serveUDP(t, relay.RendezvousConfig{Rate: 0.001, Burst: 3})
	_, _, g := h.pair(t)
	c := udpSocket(t)
	junk := make([]byte, 32)
	for range 10 {
		if _, err := c.WriteToUDPAddrPort(relay.AppendAnnounce(nil, junk, relay.SideCustomer, g, time.Now()), rv); err != nil {
			t.Fatal(err)
		}
	}
	answers := 0
	buf := make([]byte, 256)
	for {
		// Answers to datagrams already sent arrive at once on loopback;
		// the wait only ends the count.
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			break
		}
		answers++
	}
	if answers != 3 {
		t.Errorf("%d answers to 10 datagrams with a burst of 3", answers)
	}
}

// FuzzRendezvousAnswer feeds arbitrary datagrams to the client's parser:
// it must never panic, and must refuse answers with addresses that do not
// verify under the key.
func FuzzRendezvousAnswer(f *testing.F) {
	key := make([]byte, 32)
	var g [16]byte
	f.Add([]byte("VGRV\x01\x02\x03" + string(g[:])))
	f.Add(relay.AppendAnnounce(nil, key, relay.SideCustomer, g, time.Unix(0, 0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		ans, err := relay.ParseRendezvousAnswer(b, key, g)
		if err == nil && (ans.Status == relay.RendezvousOK || ans.Status == relay.RendezvousWaiting) && len(b) != 91 {
			t.Fatalf("accepted an answer of %d bytes", len(b))
		}
	})
}
