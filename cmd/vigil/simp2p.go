package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/vigilhq/vigil/relay"
)

// simP2PError is a failed report of the P2P attempt to the API: the
// gateway is fine, so relaySession does not move to the next one.
type simP2PError struct{ err error }

func (e *simP2PError) Error() string { return "p2p: " + e.err.Error() }
func (e *simP2PError) Unwrap() error { return e.err }

// p2pTag is what each side sends first on a direct channel: an HMAC of its
// side under the session GUID, with which the whitepaper's parties
// authenticate the P2P channel.
func p2pTag(guid [16]byte, side string) []byte {
	m := hmac.New(sha256.New, guid[:])
	m.Write([]byte("vigil-p2p " + side))
	return m.Sum(nil)
}

// simP2P runs the P2P attempt of a relayed session on loopback, as the
// whitepaper describes it, and reports each step through the API: the
// applet listens on TCP; in 4 sessions of 10 the console connects and the
// channel is authenticated (transport tcp); otherwise the applet waits the
// P2P timeout, both sides do the UDP rendezvous on the gateway, and the
// channel is authenticated over UDP (transport udp), except in 2 sessions
// of 10 where the applet never answers and the session stays relayed.
func (s *simulator) simP2P(ctx context.Context, ss *simSession, gw simGateway, cust, tech *tls.Conn) error {
	raw, _ := hex.DecodeString(ss.id)
	guid := [16]byte(raw)
	start := time.Now()
	elapsed := func() int64 { return time.Since(start).Milliseconds() }
	report := func(side func(context.Context, simCommand) error, c simCommand) error {
		c.Type = "p2p"
		if err := side(ctx, c); err != nil {
			return &simP2PError{fmt.Errorf("%s: %w", c.Step, err)}
		}
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if err := report(ss.customer, simCommand{Step: "tcp_listening", Port: port}); err != nil {
		return err
	}
	mode := ss.r.IntN(10)
	if mode < 4 {
		if err := simP2PTCP(ctx, ln, guid); err != nil {
			return report(ss.tech, simCommand{Step: "failed", Reason: "authentication_failed", ElapsedMS: elapsed()})
		}
		return report(ss.tech, simCommand{Step: "established", Transport: "tcp", ElapsedMS: elapsed()})
	}
	// Nobody connects: the applet's wait runs out.
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(s.cfg.p2pTimeout))
	if c, err := ln.Accept(); err == nil {
		c.Close()
	}
	if err := report(ss.customer, simCommand{Step: "tcp_timeout", ElapsedMS: elapsed()}); err != nil {
		return err
	}
	udp, err := netip.ParseAddrPort(gw.UDP)
	if gw.UDP == "" || err != nil {
		return report(ss.tech, simCommand{Step: "failed", Reason: "no_rendezvous", ElapsedMS: elapsed()})
	}
	cu, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer cu.Close()
	te, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer te.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	type result struct {
		ans relay.RendezvousAnswer
		err error
	}
	meet := func(c *net.UDPConn, conn *tls.Conn, side relay.Side, out chan<- result) {
		key, err := relay.RendezvousKey(conn, side, guid)
		if err != nil {
			out <- result{err: err}
			return
		}
		a, err := relay.Rendezvous(rctx, c, udp, key, side, guid, 100*time.Millisecond)
		out <- result{a, err}
	}
	cr, tr := make(chan result, 1), make(chan result, 1)
	go meet(cu, cust, relay.SideCustomer, cr)
	go meet(te, tech, relay.SideTechnician, tr)
	c, t := <-cr, <-tr
	outcome := func(err error) string {
		var re *relay.RendezvousError
		switch {
		case err == nil:
			return "ok"
		case errors.As(err, &re):
			return re.Error()[len("rendezvous refused: "):]
		}
		return "timeout"
	}
	if err := report(ss.customer, simCommand{Step: "udp_rendezvous", GatewayID: gw.ID, Outcome: outcome(c.err)}); err != nil {
		return err
	}
	if err := report(ss.tech, simCommand{Step: "udp_rendezvous", GatewayID: gw.ID, Outcome: outcome(t.err)}); err != nil {
		return err
	}
	if c.err != nil || t.err != nil {
		return report(ss.tech, simCommand{Step: "failed", Reason: "rendezvous_" + outcome(errors.Join(c.err, t.err)), ElapsedMS: elapsed()})
	}
	deadline := time.Now().Add(s.cfg.p2pTimeout)
	errs := make(chan error, 1)
	if mode < 8 {
		go func() {
			errs <- simUDPAuth(cu, c.ans.Peer, p2pTag(guid, "customer"), p2pTag(guid, "technician"), deadline)
		}()
	} else {
		errs <- nil // the applet never answers
	}
	terr := simUDPAuth(te, t.ans.Peer, p2pTag(guid, "technician"), p2pTag(guid, "customer"), deadline)
	<-errs
	if terr != nil {
		return report(ss.tech, simCommand{Step: "failed", Reason: "udp_timeout", ElapsedMS: elapsed()})
	}
	return report(ss.tech, simCommand{Step: "established", Transport: "udp", ElapsedMS: elapsed()})
}

// simP2PTCP is the console connecting to the applet's listener: each side
// sends its tag and checks the other's.
func simP2PTCP(ctx context.Context, ln net.Listener, guid [16]byte) error {
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		accepted <- exchangeTags(c, p2pTag(guid, "customer"), p2pTag(guid, "technician"))
	}()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := exchangeTags(c, p2pTag(guid, "technician"), p2pTag(guid, "customer")); err != nil {
		return err
	}
	return <-accepted
}

func exchangeTags(c net.Conn, mine, want []byte) error {
	if _, err := c.Write(mine); err != nil {
		return err
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !hmac.Equal(got, want) {
		return errors.New("p2p channel: peer not authenticated")
	}
	return nil
}

// simUDPAuth sends mine to peer every 100 ms until it has received want
// from peer (and then sends it once more, for a peer still waiting), or
// deadline passes.
func simUDPAuth(c *net.UDPConn, peer netip.AddrPort, mine, want []byte, deadline time.Time) error {
	buf := make([]byte, 256)
	for time.Now().Before(deadline) {
		if _, err := c.WriteToUDPAddrPort(mine, peer); err != nil {
			return err
		}
		rd := time.Now().Add(100 * time.Millisecond)
		if rd.After(deadline) {
			rd = deadline
		}
		c.SetReadDeadline(rd)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			if from == peer && hmac.Equal(buf[:n], want) {
				_, _ = c.WriteToUDPAddrPort(mine, peer)
				return nil
			}
		}
	}
	return errors.New("p2p channel: no answer over UDP")
}
