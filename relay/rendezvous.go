package relay

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// The UDP rendezvous (docs/relay-protocol.md, "UDP rendezvous"): once the
// relay pairs the two sides of a session, each may announce itself on the
// relay's UDP port, and learns its own address as the relay sees it and
// its peer's, to punch a hole for a direct P2P channel (as STUN does). An
// announcement is authenticated by a MAC under a key exported from the
// side's own TLS connection to the relay (RFC 5705/8446 exporter), which
// only that side and the relay know: the GUID alone, which whoever saw the
// applet's download may hold, is not enough to learn or redirect anyone's
// address.

// RendezvousMagic opens every rendezvous datagram.
var RendezvousMagic = [4]byte{'V', 'G', 'R', 'V'}

// RendezvousExporterLabel is the TLS exporter label of the rendezvous key;
// the context is the 16 GUID bytes followed by the side byte.
const RendezvousExporterLabel = "EXPORTER-vigil-rendezvous"

// Rendezvous datagram types and answer statuses. Their values are part of
// the protocol.
const (
	rvAnnounce byte = 1
	rvAnswer   byte = 2

	RendezvousOK             byte = 0x00 // both announced: the answer holds the peer's address
	RendezvousWaiting        byte = 0x01 // the peer has not announced yet: retry
	RendezvousBadPacket      byte = 0x02 // malformed or stale announcement
	RendezvousUnknownSession byte = 0x03 // the relay holds no pair of this session
	RendezvousSessionClosed  byte = 0x04 // the session closed
	RendezvousBadMAC         byte = 0x05 // the MAC does not verify
)

const (
	rvAnnounceLen = 4 + 1 + 1 + 1 + 16 + 8 + 32 // 63
	rvRefusalLen  = 4 + 1 + 1 + 1 + 16          // 23: no addresses, no MAC
	rvAnswerLen   = rvRefusalLen + 18 + 18 + 32 // 91
	rvFreshness   = 30 * time.Second
)

// RendezvousKey returns the rendezvous MAC key of a side's TLS connection
// to the relay: the client calls it on the connection Dial returned, the
// relay on its end of the same connection.
func RendezvousKey(c *tls.Conn, side Side, guid [16]byte) ([]byte, error) {
	st := c.ConnectionState()
	ctx := append(guid[:], byte(side))
	return st.ExportKeyingMaterial(RendezvousExporterLabel, ctx, 32)
}

func rvMAC(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// AppendAnnounce appends an announcement of side for session guid at at,
// authenticated with key (RendezvousKey), to b.
func AppendAnnounce(b []byte, key []byte, side Side, guid [16]byte, at time.Time) []byte {
	start := len(b)
	b = append(b, RendezvousMagic[:]...)
	b = append(b, Version, rvAnnounce, byte(side))
	b = append(b, guid[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixMilli()))
	return append(b, rvMAC(key, b[start:])...)
}

type announce struct {
	side Side
	guid [16]byte
	at   time.Time
	mac  []byte
	body []byte // what the MAC covers
}

// parseAnnounce parses an announcement without checking its MAC.
func parseAnnounce(b []byte) (announce, error) {
	if len(b) != rvAnnounceLen || [4]byte(b[0:4]) != RendezvousMagic || b[4] != Version || b[5] != rvAnnounce {
		return announce{}, errors.New("not a rendezvous announcement")
	}
	a := announce{side: Side(b[6]), guid: [16]byte(b[7:23]), body: b[:31], mac: b[31:]}
	if a.side != SideCustomer && a.side != SideTechnician {
		return announce{}, fmt.Errorf("unknown side %d", b[6])
	}
	a.at = time.UnixMilli(int64(binary.BigEndian.Uint64(b[23:31])))
	return a, nil
}

func appendAddr(b []byte, ap netip.AddrPort) []byte {
	a := ap.Addr()
	if a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	x := a.As16()
	b = append(b, x[:]...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

func parseAddr(b []byte) netip.AddrPort {
	a := netip.AddrFrom16([16]byte(b[:16])).Unmap()
	return netip.AddrPortFrom(a, binary.BigEndian.Uint16(b[16:18]))
}

// RendezvousAnswer is the relay's answer to an announcement.
type RendezvousAnswer struct {
	Status byte
	// Self is the announcer's address as the relay saw it; Peer the
	// other side's (valid with RendezvousOK only).
	Self, Peer netip.AddrPort
}

// ParseRendezvousAnswer parses an answer for session guid; an answer with
// addresses (OK, waiting) must carry a MAC under key.
func ParseRendezvousAnswer(b []byte, key []byte, guid [16]byte) (RendezvousAnswer, error) {
	if len(b) < rvRefusalLen || [4]byte(b[0:4]) != RendezvousMagic || b[4] != Version || b[5] != rvAnswer || [16]byte(b[7:23]) != guid {
		return RendezvousAnswer{}, errors.New("not a rendezvous answer for this session")
	}
	ans := RendezvousAnswer{Status: b[6]}
	if ans.Status != RendezvousOK && ans.Status != RendezvousWaiting {
		if len(b) != rvRefusalLen {
			return RendezvousAnswer{}, errors.New("malformed rendezvous refusal")
		}
		return ans, nil
	}
	if len(b) != rvAnswerLen || !hmac.Equal(b[59:], rvMAC(key, b[:59])) {
		return RendezvousAnswer{}, errors.New("rendezvous answer does not verify")
	}
	ans.Self, ans.Peer = parseAddr(b[23:41]), parseAddr(b[41:59])
	return ans, nil
}

// RendezvousConfig configures ServeUDP.
type RendezvousConfig struct {
	// Rate and Burst bound the datagrams accepted from one source address
	// (default 10 per second, bursts of 20); the excess is dropped unread.
	Rate  float64
	Burst float64
}

// rvSide is what the relay remembers of one side's announcement.
type rvSide struct {
	addr netip.AddrPort
	at   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// rendezvous is the state of one UDP listener.
type rendezvous struct {
	s    *Server
	pc   net.PacketConn
	cfg  RendezvousConfig
	mu   sync.Mutex
	seen map[[16]byte]*[2]rvSide // by GUID: customer, technician
	keys map[*pair]*[2][]byte    // exported keys, computed once per pair
	lim  map[netip.Addr]*bucket
}

// markClosed records (under s.mu) that the session guid closed, for the
// rendezvous to refuse it as closed rather than unknown. Entries older
// than 10 minutes are forgotten.
func (s *Server) markClosed(guid string) {
	now := time.Now()
	s.closedGUIDs[guid] = now
	for g, at := range s.closedGUIDs {
		if now.Sub(at) > 10*time.Minute {
			delete(s.closedGUIDs, g)
		}
	}
}

// ServeUDP answers rendezvous announcements on pc until Shutdown or until
// pc fails; it then closes pc and returns nil (or the read error).
func (s *Server) ServeUDP(pc net.PacketConn, cfg RendezvousConfig) error {
	if cfg.Rate <= 0 {
		cfg.Rate = 10
	}
	if cfg.Burst < 1 {
		cfg.Burst = 20
	}
	rv := &rendezvous{s: s, pc: pc, cfg: cfg, seen: map[[16]byte]*[2]rvSide{}, keys: map[*pair]*[2][]byte{}, lim: map[netip.Addr]*bucket{}}
	go func() {
		<-s.done
		pc.Close()
	}()
	defer pc.Close()
	buf := make([]byte, 1500)
	sweep := time.Now()
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		src, ok := udpAddrPort(from)
		if !ok {
			continue
		}
		now := time.Now()
		if now.Sub(sweep) > time.Minute {
			rv.sweep(now)
			sweep = now
		}
		if !rv.allow(src.Addr(), now) {
			s.m.rendezvous("rate_limited")
			continue
		}
		if out := rv.handle(buf[:n], src, now); out != nil {
			_, _ = pc.WriteTo(out.msg, net.UDPAddrFromAddrPort(src))
			if out.peerMsg != nil {
				_, _ = pc.WriteTo(out.peerMsg, net.UDPAddrFromAddrPort(out.peer))
			}
		}
	}
}

func udpAddrPort(a net.Addr) (netip.AddrPort, bool) {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
	}
	return netip.AddrPort{}, false
}

// allow takes a token of src's bucket.
func (rv *rendezvous) allow(src netip.Addr, now time.Time) bool {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	b := rv.lim[src]
	if b == nil {
		b = &bucket{tokens: rv.cfg.Burst, last: now}
		rv.lim[src] = b
	}
	b.tokens = min(rv.cfg.Burst, b.tokens+now.Sub(b.last).Seconds()*rv.cfg.Rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets full buckets, old announcements and keys of ended pairs.
func (rv *rendezvous) sweep(now time.Time) {
	rv.s.mu.Lock()
	live := make(map[*pair]bool, len(rv.keys))
	for p := range rv.keys {
		if rv.s.pairByGUID[p.ref.GUID] == p {
			live[p] = true
		}
	}
	rv.s.mu.Unlock()
	rv.mu.Lock()
	defer rv.mu.Unlock()
	for a, b := range rv.lim {
		if b.tokens+now.Sub(b.last).Seconds()*rv.cfg.Rate >= rv.cfg.Burst {
			delete(rv.lim, a)
		}
	}
	for g, sides := range rv.seen {
		if now.Sub(sides[0].at) > 2*rvFreshness && now.Sub(sides[1].at) > 2*rvFreshness {
			delete(rv.seen, g)
		}
	}
	for p := range rv.keys {
		if !live[p] {
			delete(rv.keys, p)
		}
	}
}

type rvOut struct {
	msg     []byte
	peer    netip.AddrPort
	peerMsg []byte
}

func refusal(guid [16]byte, status byte) []byte {
	b := append(RendezvousMagic[:0:0], RendezvousMagic[:]...)
	b = append(b, Version, rvAnswer, status)
	return append(b, guid[:]...)
}

func answer(key []byte, guid [16]byte, status byte, self, peer netip.AddrPort) []byte {
	b := refusal(guid, status)
	b = appendAddr(b, self)
	if peer.IsValid() {
		b = appendAddr(b, peer)
	} else {
		b = append(b, make([]byte, 18)...)
	}
	return append(b, rvMAC(key, b)...)
}

// handle answers one datagram; nil means no answer (not ours at all).
func (rv *rendezvous) handle(b []byte, src netip.AddrPort, now time.Time) *rvOut {
	a, err := parseAnnounce(b)
	if err != nil {
		rv.s.m.rendezvous("bad_packet")
		if len(b) >= 23 && [4]byte(b[0:4]) == RendezvousMagic {
			return &rvOut{msg: refusal([16]byte(b[7:23]), RendezvousBadPacket)}
		}
		return nil
	}
	guid := hex.EncodeToString(a.guid[:])
	rv.s.mu.Lock()
	p := rv.s.pairByGUID[guid]
	_, closed := rv.s.closedGUIDs[guid]
	rv.s.mu.Unlock()
	if p == nil {
		status, what := RendezvousUnknownSession, "unknown_session"
		if closed {
			status, what = RendezvousSessionClosed, "session_closed"
		}
		rv.s.m.rendezvous(what)
		return &rvOut{msg: refusal(a.guid, status)}
	}
	keys, err := rv.pairKeys(p)
	if err != nil {
		rv.s.m.rendezvous("bad_mac")
		return &rvOut{msg: refusal(a.guid, RendezvousBadMAC)}
	}
	i := 0
	if a.side == SideTechnician {
		i = 1
	}
	if !hmac.Equal(a.mac, rvMAC(keys[i], a.body)) {
		rv.s.m.rendezvous("bad_mac")
		return &rvOut{msg: refusal(a.guid, RendezvousBadMAC)}
	}
	if d := now.Sub(a.at); d > rvFreshness || d < -rvFreshness {
		rv.s.m.rendezvous("bad_packet")
		return &rvOut{msg: refusal(a.guid, RendezvousBadPacket)}
	}
	rv.mu.Lock()
	sides := rv.seen[a.guid]
	if sides == nil {
		sides = &[2]rvSide{}
		rv.seen[a.guid] = sides
	}
	sides[i] = rvSide{addr: src, at: now}
	other := sides[1-i]
	rv.mu.Unlock()
	if !other.addr.IsValid() || now.Sub(other.at) > rvFreshness {
		rv.s.m.rendezvous("waiting")
		return &rvOut{msg: answer(keys[i], a.guid, RendezvousWaiting, src, netip.AddrPort{})}
	}
	rv.s.m.rendezvous("ok")
	// The peer learns at once too, without waiting for its next retry.
	return &rvOut{msg: answer(keys[i], a.guid, RendezvousOK, src, other.addr),
		peer: other.addr, peerMsg: answer(keys[1-i], a.guid, RendezvousOK, other.addr, src)}
}

// pairKeys returns the rendezvous keys of p's customer and technician
// connections, exported once.
func (rv *rendezvous) pairKeys(p *pair) (*[2][]byte, error) {
	rv.mu.Lock()
	k := rv.keys[p]
	rv.mu.Unlock()
	if k != nil {
		return k, nil
	}
	guid, err := guidBytes(p.ref.GUID)
	if err != nil {
		return nil, err
	}
	var keys [2][]byte
	if keys[0], err = RendezvousKey(p.customer, SideCustomer, guid); err != nil {
		return nil, err
	}
	if keys[1], err = RendezvousKey(p.technician, SideTechnician, guid); err != nil {
		return nil, err
	}
	rv.mu.Lock()
	rv.keys[p] = &keys
	rv.mu.Unlock()
	return &keys, nil
}

func guidBytes(s string) ([16]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return [16]byte{}, errors.New("bad guid")
	}
	return [16]byte(b), nil
}

// Rendezvous announces side of session guid to the relay's UDP address
// from conn every interval (default 250 ms) until the relay answers with
// the peer's address, ctx ends, or the relay refuses (a *RendezvousError).
// key is RendezvousKey of the side's TLS connection to the relay.
func Rendezvous(ctx context.Context, conn *net.UDPConn, relayUDP netip.AddrPort, key []byte, side Side, guid [16]byte, interval time.Duration) (RendezvousAnswer, error) {
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	buf := make([]byte, 1500)
	for {
		if _, err := conn.WriteToUDPAddrPort(AppendAnnounce(nil, key, side, guid, time.Now()), relayUDP); err != nil {
			return RendezvousAnswer{}, err
		}
		deadline := time.Now().Add(interval)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		conn.SetReadDeadline(deadline)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return RendezvousAnswer{}, err
			}
			if from.Addr().Unmap() != relayUDP.Addr().Unmap() || from.Port() != relayUDP.Port() {
				continue // a peer's punch arriving early: not for us here
			}
			ans, err := ParseRendezvousAnswer(buf[:n], key, guid)
			if err != nil {
				continue
			}
			switch ans.Status {
			case RendezvousOK:
				conn.SetReadDeadline(time.Time{})
				return ans, nil
			case RendezvousWaiting:
				continue
			default:
				conn.SetReadDeadline(time.Time{})
				return ans, &RendezvousError{Status: ans.Status}
			}
		}
		if err := ctx.Err(); err != nil {
			conn.SetReadDeadline(time.Time{})
			return RendezvousAnswer{}, err
		}
	}
}

// RendezvousError is a refused rendezvous.
type RendezvousError struct{ Status byte }

func (e *RendezvousError) Error() string {
	switch e.Status {
	case RendezvousUnknownSession:
		return "rendezvous refused: unknown_session"
	case RendezvousSessionClosed:
		return "rendezvous refused: session_closed"
	case RendezvousBadMAC:
		return "rendezvous refused: bad_mac"
	case RendezvousBadPacket:
		return "rendezvous refused: bad_packet"
	}
	return fmt.Sprintf("rendezvous refused: status %d", e.Status)
}
