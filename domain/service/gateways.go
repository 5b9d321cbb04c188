package service

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/vigilhq/vigil/domain"
)

// Gateway is a relay node as the registry keeps it.
type Gateway struct {
	ID string `json:"id"`
	// Tenant is the tenant of the relay key that registered it; "" for a
	// deployment gateway (the relay inside serve), which serves every
	// tenant of its region.
	Tenant        string    `json:"-"`
	Region        string    `json:"region"`
	PublicAddr    string    `json:"address"`
	UDPAddr       string    `json:"udp_address,omitempty"`
	Capacity      int       `json:"capacity"`
	Load          int       `json:"load"`
	Healthy       bool      `json:"-"`
	RegisteredAt  time.Time `json:"-"`
	LastHeartbeat time.Time `json:"-"`
	// DownSince is when it was marked down; zero while healthy.
	DownSince time.Time `json:"-"`
}

// GatewayStore keeps the registry. It is state outside the log (a row per
// gateway, rewritten by every heartbeat); the changes are appended to the
// log by Gateways. Implementations are safe for concurrent use.
type GatewayStore interface {
	// HeartbeatGateway inserts or updates g (healthy, last heartbeat now)
	// and returns the row as it was before, with found false for a new
	// gateway. It returns domain.ErrConflict when the id belongs to
	// another tenant (or to the deployment).
	HeartbeatGateway(ctx context.Context, g Gateway, now time.Time) (prev Gateway, found bool, err error)
	// MarkGatewaysDown marks unhealthy every healthy gateway whose last
	// heartbeat is before cutoff, and returns them as marked; of two
	// callers at once only one gets a given gateway.
	MarkGatewaysDown(ctx context.Context, cutoff, now time.Time) ([]Gateway, error)
	// HealthyGateways returns the healthy gateways of region that tenant
	// may use (its own and the deployment's) whose last heartbeat is at or
	// after cutoff, least loaded first (load over capacity, then id).
	HealthyGateways(ctx context.Context, region, tenant string, cutoff time.Time) ([]Gateway, error)
	// TenantsInRegion returns the ids of the tenants of region.
	TenantsInRegion(ctx context.Context, region string) ([]string, error)
}

// GatewayHeartbeat is what a relay node sends to register itself and then
// every heartbeat interval.
type GatewayHeartbeat struct {
	ID         string `json:"id" text:"id"`
	Region     string `json:"region,omitempty" text:"line,63"`
	PublicAddr string `json:"address" text:"line"`
	UDPAddr    string `json:"udp_address,omitempty" text:"line"`
	Capacity   int    `json:"capacity"`
	Load       int    `json:"load"`
}

// Gateways runs the gateway registry: heartbeats, the list an applet gets
// and the watchdog that takes silent gateways off it. It is safe for
// concurrent use.
type Gateways struct {
	svc    *Service
	store  GatewayStore
	locate SessionLocator
	ttl    time.Duration
}

// DefaultGatewayTTL is how long a gateway stays listed after its last
// heartbeat: three heartbeats of the relay's default 5 s interval.
const DefaultGatewayTTL = 15 * time.Second

// Gateways returns the registry over store. locate finds a session's
// tenant from its GUID (the applet presents nothing else); ttl is how long
// a gateway stays listed after its last heartbeat (DefaultGatewayTTL when
// zero).
func (s *Service) Gateways(store GatewayStore, locate SessionLocator, ttl time.Duration) *Gateways {
	if ttl <= 0 {
		ttl = DefaultGatewayTTL
	}
	return &Gateways{svc: s, store: store, locate: locate, ttl: ttl}
}

// Heartbeat registers the relay node hb or records that it is alive. p
// must be a relay: a relay key (the gateway then serves the key's tenant)
// or the deployment's own relay (no tenant: it serves every tenant of the
// region). A new gateway, or one whose address, region or capacity
// changed, is appended as tenant.gateway_registered; one that was down as
// tenant.gateway_up. Errors: forbidden for another role or another region
// than the deployment's, invalid for a malformed heartbeat, conflict for
// an id registered by another tenant.
func (g *Gateways) Heartbeat(ctx context.Context, p Principal, hb GatewayHeartbeat) error {
	if p.Role != RoleRelay {
		return errForbidden("gateway heartbeats need a relay key")
	}
	if hb.Region == "" {
		hb.Region = g.svc.region
	}
	if g.svc.region != "" && hb.Region != g.svc.region {
		return errForbidden("this deployment serves region %q, not %q", g.svc.region, hb.Region)
	}
	if err := validGateway(hb); err != nil {
		return err
	}
	now := g.svc.Now()
	gw := Gateway{ID: hb.ID, Tenant: p.Tenant, Region: hb.Region, PublicAddr: hb.PublicAddr, UDPAddr: hb.UDPAddr,
		Capacity: hb.Capacity, Load: hb.Load, Healthy: true, RegisteredAt: now, LastHeartbeat: now}
	prev, found, err := g.store.HeartbeatGateway(ctx, gw, now)
	if errors.Is(err, domain.ErrConflict) {
		return &domain.Error{Code: domain.CodeConflict, Message: fmt.Sprintf("gateway %s is registered by another tenant", hb.ID), Err: domain.ErrConflict}
	}
	if err != nil {
		return fmt.Errorf("gateway heartbeat %s: %w", hb.ID, err)
	}
	var changes []domain.Payload
	if !found || prev.PublicAddr != gw.PublicAddr || prev.UDPAddr != gw.UDPAddr || prev.Region != gw.Region || prev.Capacity != gw.Capacity {
		changes = append(changes, domain.GatewayRegistered{GatewayID: gw.ID, Region: gw.Region, PublicAddr: gw.PublicAddr, UDPAddr: gw.UDPAddr, Capacity: gw.Capacity})
	}
	if found && !prev.Healthy {
		down := prev.DownSince
		if down.IsZero() {
			down = prev.LastHeartbeat
		}
		changes = append(changes, domain.GatewayUp{GatewayID: gw.ID, DownMS: max(now.Sub(down).Milliseconds(), 0)})
	}
	if len(changes) == 0 {
		return nil
	}
	return g.record(ctx, gw, domain.Actor{Kind: domain.ActorRelay, ID: gw.ID}, now, changes...)
}

// List returns the healthy gateways an applet of session guid may use:
// those of its tenant's region, the tenant's own and the deployment's,
// least loaded first. Errors: not_found for an unknown GUID,
// session_closed for a closed session.
func (g *Gateways) List(ctx context.Context, guid string) ([]Gateway, error) {
	if _, err := uuid.Parse(guid); err != nil || len(guid) != 32 || g.locate == nil {
		return nil, errNotFound("session %s does not exist", guid)
	}
	tenant, err := g.locate.SessionTenant(ctx, guid)
	if errors.Is(err, domain.ErrNotFound) {
		return nil, errNotFound("session %s does not exist", guid)
	}
	if err != nil {
		return nil, err
	}
	sess := domain.NewSession(tenant, guid)
	if err := g.svc.load(ctx, sess); err != nil {
		return nil, err
	}
	if !sess.Exists() {
		return nil, errNotFound("session %s does not exist", guid)
	}
	if sess.Closed() {
		return nil, &domain.Error{Code: domain.CodeSessionClosed, Message: "the session is closed", Err: domain.ErrSessionClosed}
	}
	t, err := g.svc.ids.Tenant(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out, err := g.store.HealthyGateways(ctx, t.Region, tenant, g.svc.Now().Add(-g.ttl))
	if err != nil {
		return nil, fmt.Errorf("list gateways: %w", err)
	}
	if out == nil {
		out = []Gateway{}
	}
	return out, nil
}

// CheckHeartbeats marks down the gateways silent for longer than the TTL
// and appends tenant.gateway_down for each. It returns how many it marked.
func (g *Gateways) CheckHeartbeats(ctx context.Context) (int, error) {
	now := g.svc.Now()
	down, err := g.store.MarkGatewaysDown(ctx, now.Add(-g.ttl), now)
	if err != nil {
		return 0, fmt.Errorf("gateway watchdog: %w", err)
	}
	for _, gw := range down {
		g.svc.logger.Warn("gateway missed its heartbeats: no longer listed", "gateway", gw.ID, "last_heartbeat", gw.LastHeartbeat)
		if err := g.record(ctx, gw, domain.Actor{Kind: domain.ActorSystem, ID: "gateway-watchdog"}, now,
			domain.GatewayDown{GatewayID: gw.ID, LastHeartbeatAt: gw.LastHeartbeat}); err != nil {
			return len(down), err
		}
	}
	return len(down), nil
}

// RunWatchdog calls CheckHeartbeats every interval until ctx ends. Any
// number of processes may run it: each silent gateway is marked (and
// recorded) by one of them.
func (g *Gateways) RunWatchdog(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = g.ttl / 3
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := g.CheckHeartbeats(ctx); err != nil && ctx.Err() == nil {
			g.svc.logger.Error("gateway watchdog", "err", err)
		}
	}
}

// record appends changes to the tenant stream of every tenant gw serves.
func (g *Gateways) record(ctx context.Context, gw Gateway, actor domain.Actor, at time.Time, changes ...domain.Payload) error {
	tenants := []string{gw.Tenant}
	if gw.Tenant == "" {
		var err error
		if tenants, err = g.store.TenantsInRegion(ctx, gw.Region); err != nil {
			return fmt.Errorf("gateway %s: tenants of %s: %w", gw.ID, gw.Region, err)
		}
	}
	for _, t := range tenants {
		evs := make([]domain.Event, 0, len(changes))
		for _, c := range changes {
			e, err := domain.NewEvent(domain.Meta{Tenant: t, Stream: domain.TenantStream(t), Actor: actor, OccurredAt: at}, c)
			if err != nil {
				return err
			}
			evs = append(evs, e)
		}
		if _, err := g.svc.log.Append(ctx, domain.TenantStream(t), anyVersion, evs...); err != nil {
			return fmt.Errorf("gateway %s: record in tenant %s: %w", gw.ID, t, err)
		}
	}
	return nil
}

// anyVersion appends without a stream version check (ledger.AnyVersion):
// registry events do not decide on the tenant stream's state.
const anyVersion = -1

func validGateway(hb GatewayHeartbeat) error {
	if hb.ID == "" || len(hb.ID) > 100 {
		return domain.Errorf(domain.CodeInvalid, "gateway id: want 1 to 100 characters")
	}
	if err := validHostPort(hb.PublicAddr); err != nil {
		return domain.Errorf(domain.CodeInvalid, "gateway address %q: %v", hb.PublicAddr, err)
	}
	if hb.UDPAddr != "" {
		if err := validHostPort(hb.UDPAddr); err != nil {
			return domain.Errorf(domain.CodeInvalid, "gateway UDP address %q: %v", hb.UDPAddr, err)
		}
	}
	if hb.Capacity < 1 || hb.Load < 0 {
		return domain.Errorf(domain.CodeInvalid, "gateway capacity must be positive and load not negative")
	}
	return nil
}

func validHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" || len(host) > 253 {
		return errors.New("want HOST:PORT")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("bad port")
	}
	return nil
}
