package domain

import "time"

// Gateway registry events. A gateway is a relay node; the registry of the
// healthy ones is what an applet downloads before it chooses one (the
// whitepaper's "liste des passerelles disponibles"). What changes in the
// registry is appended to the tenant stream of every tenant the gateway may
// carry bytes for: the tenant of the relay key that registered it, or, for
// a deployment gateway, every tenant of its region (docs/architecture.md
// says why). None carries personal data.

// GatewayRegistered records that a gateway joined the registry, or came
// back with another address, region or capacity.
type GatewayRegistered struct {
	// GatewayID is the relay node's id, the relay_id of its session events.
	GatewayID string `json:"gateway_id"`
	// Region is the data-residency region the gateway serves.
	Region string `json:"region"`
	// PublicAddr is the TLS address (host:port) applets connect to.
	PublicAddr string `json:"public_addr"`
	// UDPAddr is the address of its UDP rendezvous service; empty when it runs none.
	UDPAddr string `json:"udp_addr,omitempty"`
	// Capacity is the number of connections the gateway accepts.
	Capacity int `json:"capacity"`
}

// EventType implements Payload.
func (GatewayRegistered) EventType() string { return "tenant.gateway_registered" }

// GatewayDown records that a gateway missed its heartbeats and left the
// list applets are given.
type GatewayDown struct {
	// GatewayID is the relay node's id.
	GatewayID string `json:"gateway_id"`
	// LastHeartbeatAt is the time of its last heartbeat.
	LastHeartbeatAt time.Time `json:"last_heartbeat_at"`
}

// EventType implements Payload.
func (GatewayDown) EventType() string { return "tenant.gateway_down" }

// GatewayUp records that a gateway that was down sent a heartbeat again and
// is listed again.
type GatewayUp struct {
	// GatewayID is the relay node's id.
	GatewayID string `json:"gateway_id"`
	// DownMS is how long it was down, in milliseconds.
	DownMS int64 `json:"down_ms"`
}

// EventType implements Payload.
func (GatewayUp) EventType() string { return "tenant.gateway_up" }
