package projections

import "github.com/vigilhq/vigil/domain"

// applyTransport keeps where a session's bytes went (issue 18): the
// gateway the applet chose (its relay_connected), and the transport that
// carried the traffic in the end. A paired relay makes it "relayed" until
// a P2P channel is established (then tcp or udp, with the time to P2P); a
// failed attempt keeps it relayed and records why.
func applyTransport(s *sessionRow, p domain.Payload) {
	switch v := p.(type) {
	case *domain.RelayConnected:
		if v.Side == domain.RelaySideCustomer {
			s.gatewayID = v.RelayID
		}
	case *domain.RelayPaired:
		if s.transport == "" {
			s.transport = domain.TransportRelayed
		}
	case *domain.P2PEstablished:
		ms := v.TimeToP2PMS
		s.transport, s.p2pMS, s.p2pFailure = v.Transport, &ms, ""
	case *domain.P2PFailed:
		if s.transport == "" || s.transport == domain.TransportRelayed {
			s.transport, s.p2pFailure = domain.TransportRelayed, v.Reason
		}
	}
}
