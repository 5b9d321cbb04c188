package relay

import (
	"context"
	"time"
)

// GatewayInfo is what a relay node tells the gateway registry about itself
// (docs/relay-protocol.md, "Gateway registry").
type GatewayInfo struct {
	// ID is the node's id: Config.RelayID, the relay_id of its events.
	ID string `json:"id"`
	// Region is the data-residency region it serves; empty means the
	// deployment's.
	Region string `json:"region,omitempty"`
	// PublicAddr is the TLS address applets dial (host:port).
	PublicAddr string `json:"address"`
	// UDPAddr is its UDP rendezvous address; empty when none runs.
	UDPAddr string `json:"udp_address,omitempty"`
	// Capacity is the number of connections it accepts (Config.MaxConns).
	Capacity int `json:"capacity"`
	// Load is the number of connections it holds now.
	Load int `json:"load"`
}

// Registrar is the gateway registry as a relay node sees it.
// Implementations must be safe for concurrent use.
type Registrar interface {
	// Heartbeat registers the node, or tells the registry it is alive and
	// how loaded it is.
	Heartbeat(ctx context.Context, info GatewayInfo) error
}

// Load returns the number of connections the relay holds: each side
// waiting for its peer, both sides of each pair, and those in the
// handshake.
func (s *Server) Load() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.waiting) + 2*len(s.pairs)
	for _, h := range s.handshakes {
		n += h
	}
	return n
}

// RunHeartbeats registers the relay with reg at once and then every
// interval (default 5 s) with its current load, until ctx ends or the
// server shuts down. A failed heartbeat is logged and retried at the next
// tick: the registry lists the node again as soon as one gets through.
func (s *Server) RunHeartbeats(ctx context.Context, reg Registrar, info GatewayInfo, interval time.Duration) {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	if info.ID == "" {
		info.ID = s.cfg.RelayID
	}
	if info.Capacity <= 0 {
		info.Capacity = s.cfg.MaxConns
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		info.Load = s.Load()
		hctx, cancel := context.WithTimeout(ctx, max(interval, time.Second))
		err := reg.Heartbeat(hctx, info)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			s.cfg.Logger.Warn("relay: gateway heartbeat failed; retrying every interval", "gateway", info.ID, "err", err)
		case err == nil && failing:
			failing = false
			s.cfg.Logger.Info("relay: gateway heartbeat accepted again", "gateway", info.ID)
		case err != nil:
			s.cfg.Logger.Debug("relay: gateway heartbeat failed", "gateway", info.ID, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-t.C:
		}
	}
}
