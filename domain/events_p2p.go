package domain

// P2P channel events. Once relayed, the two sides try a direct channel
// (whitepaper, "Architecture multimédia"): the applet listens on TCP; if
// no TCP connection is made within 10 seconds, a UDP connection is tried
// with the gateway's help (its UDP rendezvous); a channel that connects is
// authenticated with the session GUID and then carries the traffic, or the
// session stays relayed. The applet and the console report each step; none
// needs a permission or consent (they move the session's own bytes), none
// carries personal data, and none is accepted after the session closed.
// Their type names say "peer" (type names hold no digits).

// Transports of a session's traffic.
const (
	TransportRelayed = "relayed"
	TransportTCP     = "tcp"
	TransportUDP     = "udp"
)

// P2PTCPListening records that the applet listens for a direct TCP connection.
type P2PTCPListening struct {
	// Port is the TCP port the operating system gave the applet.
	Port int `json:"port"`
}

// EventType implements Payload.
func (P2PTCPListening) EventType() string { return "session.peer_tcp_listening" }

// P2PTCPTimeout records that no direct TCP connection was made in time (10 s by default).
type P2PTCPTimeout struct {
	// WaitedMS is how long the applet waited, in milliseconds.
	WaitedMS int64 `json:"waited_ms"`
}

// EventType implements Payload.
func (P2PTCPTimeout) EventType() string { return "session.peer_tcp_timeout" }

// P2PUDPRendezvous records a side's UDP rendezvous through a gateway.
type P2PUDPRendezvous struct {
	// GatewayID is the gateway whose rendezvous was used.
	GatewayID string `json:"gateway_id"`
	// Outcome is ok, or the refusal (unknown_session, session_closed, bad_mac, bad_packet) or timeout.
	Outcome string `json:"outcome"`
}

// EventType implements Payload.
func (P2PUDPRendezvous) EventType() string { return "session.peer_udp_rendezvous" }

// P2PEstablished records that a direct channel was authenticated with the session GUID and now carries the traffic.
type P2PEstablished struct {
	// Transport is tcp or udp.
	Transport string `json:"transport"`
	// TimeToP2PMS is the time from the start of the attempt (the applet listening) to the authenticated channel, in milliseconds.
	TimeToP2PMS int64 `json:"time_to_p2p_ms"`
}

// EventType implements Payload.
func (P2PEstablished) EventType() string { return "session.peer_channel_established" }

// P2PFailed records that no direct channel could be made: the traffic stays relayed.
type P2PFailed struct {
	// Reason is a short code such as "udp_timeout", "rendezvous_refused" or "authentication_failed".
	Reason string `json:"reason"`
	// ElapsedMS is the time from the start of the attempt to the give-up, in milliseconds.
	ElapsedMS int64 `json:"elapsed_ms"`
}

// EventType implements Payload.
func (P2PFailed) EventType() string { return "session.peer_channel_failed" }

// ReportP2P records one step of the P2P attempt reported by the applet or
// the console. It returns an error of code invalid for another payload or
// bad values, not_found for an unknown session and session_closed after
// closing.
func (s *Session) ReportP2P(cmd Cmd, p Payload) ([]Event, error) {
	if err := s.open(); err != nil {
		return nil, err
	}
	switch p := p.(type) {
	case P2PTCPListening:
		if p.Port < 1 || p.Port > 65535 {
			return nil, Errorf(CodeInvalid, "p2p port %d", p.Port)
		}
	case P2PTCPTimeout:
		if p.WaitedMS < 0 {
			return nil, Errorf(CodeInvalid, "negative p2p wait")
		}
	case P2PUDPRendezvous:
		if p.GatewayID == "" || p.Outcome == "" {
			return nil, Errorf(CodeInvalid, "a rendezvous report needs a gateway and an outcome")
		}
	case P2PEstablished:
		if p.Transport != TransportTCP && p.Transport != TransportUDP {
			return nil, Errorf(CodeInvalid, "p2p transport %q: want tcp or udp", p.Transport)
		}
		if p.TimeToP2PMS < 0 {
			return nil, Errorf(CodeInvalid, "negative time to p2p")
		}
	case P2PFailed:
		if p.Reason == "" || p.ElapsedMS < 0 {
			return nil, Errorf(CodeInvalid, "a p2p failure needs a reason")
		}
	default:
		return nil, Errorf(CodeInvalid, "not a p2p report")
	}
	return s.one(cmd, p)
}
