package service

import "github.com/vigilhq/vigil/domain"

// P2PCmd: p2p, a step of the P2P attempt reported by the applet (ingest
// key) or the console (the holding technician): step is tcp_listening
// (port), tcp_timeout (elapsed_ms: the wait), udp_rendezvous (gateway_id,
// outcome), established (transport tcp or udp, elapsed_ms: the time to
// P2P) or failed (reason, elapsed_ms). It decodes as a pointer: the
// command switch matches *P2PCmd.
type P2PCmd struct {
	Type      string `json:"type" text:"line,64"`
	Step      string `json:"step" text:"line,64"`
	Port      int    `json:"port,omitempty"`
	GatewayID string `json:"gateway_id,omitempty" text:"id"`
	Outcome   string `json:"outcome,omitempty" text:"line,64"`
	Transport string `json:"transport,omitempty" text:"line,64"`
	ElapsedMS int64  `json:"elapsed_ms,omitempty"`
	Reason    string `json:"reason,omitempty" text:"text,1000"`
}

// CommandType implements Command.
func (c *P2PCmd) CommandType() string { return c.Type }

// p2pPayload maps a p2p command to its event.
func p2pPayload(c *P2PCmd) (domain.Payload, error) {
	switch c.Step {
	case "tcp_listening":
		return domain.P2PTCPListening{Port: c.Port}, nil
	case "tcp_timeout":
		return domain.P2PTCPTimeout{WaitedMS: c.ElapsedMS}, nil
	case "udp_rendezvous":
		return domain.P2PUDPRendezvous{GatewayID: c.GatewayID, Outcome: c.Outcome}, nil
	case "established":
		return domain.P2PEstablished{Transport: c.Transport, TimeToP2PMS: c.ElapsedMS}, nil
	case "failed":
		return domain.P2PFailed{Reason: c.Reason, ElapsedMS: c.ElapsedMS}, nil
	}
	return nil, domain.Errorf(domain.CodeInvalid, "p2p step %q: want tcp_listening, tcp_timeout, udp_rendezvous, established or failed", c.Step)
}

func decideP2P(sess *domain.Session, cmd domain.Cmd, c *P2PCmd) ([]domain.Event, error) {
	p, err := p2pPayload(c)
	if err != nil {
		return nil, err
	}
	return sess.ReportP2P(cmd, p)
}
