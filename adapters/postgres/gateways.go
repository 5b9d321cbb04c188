package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// The gateway registry lives in the gateways table of migration 00018.
var _ service.GatewayStore = (*Store)(nil)

const gatewayColumns = `id, tenant, region, public_addr, udp_addr, capacity, load, healthy, registered_at, last_heartbeat, down_since`

func scanGateway(row pgx.Row) (service.Gateway, error) {
	var (
		g    service.Gateway
		down *time.Time
	)
	err := row.Scan(&g.ID, &g.Tenant, &g.Region, &g.PublicAddr, &g.UDPAddr, &g.Capacity, &g.Load, &g.Healthy,
		&g.RegisteredAt, &g.LastHeartbeat, &down)
	g.RegisteredAt, g.LastHeartbeat, g.DownSince = g.RegisteredAt.UTC(), g.LastHeartbeat.UTC(), fromNullTime(down)
	return g, err
}

// HeartbeatGateway implements service.GatewayStore. The previous row is
// read under a row lock in the same transaction, so that of two heartbeats
// of a gateway that was down only one sees it down.
func (s *Store) HeartbeatGateway(ctx context.Context, g service.Gateway, now time.Time) (service.Gateway, bool, error) {
	var (
		prev  service.Gateway
		found bool
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		prev, err = scanGateway(tx.QueryRow(ctx, `SELECT `+gatewayColumns+` FROM gateways WHERE id = $1 FOR UPDATE`, g.ID))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		default:
			found = true
			if prev.Tenant != g.Tenant {
				return fmt.Errorf("gateway %s: %w", g.ID, domain.ErrConflict)
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO gateways (id, tenant, region, public_addr, udp_addr, capacity, load, healthy, registered_at, last_heartbeat)
			VALUES ($1, $2, $3, $4, $5, $6, $7, true, $8, $8)
			ON CONFLICT (id) DO UPDATE SET region = EXCLUDED.region, public_addr = EXCLUDED.public_addr,
				udp_addr = EXCLUDED.udp_addr, capacity = EXCLUDED.capacity, load = EXCLUDED.load, healthy = true,
				last_heartbeat = EXCLUDED.last_heartbeat, down_since = NULL
			WHERE gateways.tenant = EXCLUDED.tenant`,
			g.ID, g.Tenant, g.Region, g.PublicAddr, g.UDPAddr, g.Capacity, g.Load, now)
		return err
	})
	if errors.Is(err, domain.ErrConflict) {
		return service.Gateway{}, false, err
	}
	if err != nil {
		return service.Gateway{}, false, translate(err)
	}
	return prev, found, nil
}

// MarkGatewaysDown implements service.GatewayStore: one UPDATE … RETURNING,
// so that a gateway is marked by exactly one of several callers.
func (s *Store) MarkGatewaysDown(ctx context.Context, cutoff, now time.Time) ([]service.Gateway, error) {
	rows, err := s.pool.Query(ctx, `UPDATE gateways SET healthy = false, down_since = $2
		WHERE healthy AND last_heartbeat < $1 RETURNING `+gatewayColumns, cutoff, now)
	if err != nil {
		return nil, unavailable(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (service.Gateway, error) { return scanGateway(r) })
	return out, unavailable(err)
}

// HealthyGateways implements service.GatewayStore.
func (s *Store) HealthyGateways(ctx context.Context, region, tenant string, cutoff time.Time) ([]service.Gateway, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+gatewayColumns+` FROM gateways
		WHERE region = $1 AND (tenant = '' OR tenant = $2) AND healthy AND last_heartbeat >= $3
		ORDER BY load::float8 / capacity, id`, region, tenant, cutoff)
	if err != nil {
		return nil, unavailable(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (service.Gateway, error) { return scanGateway(r) })
	return out, unavailable(err)
}

// TenantsInRegion implements service.GatewayStore.
func (s *Store) TenantsInRegion(ctx context.Context, region string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM tenants WHERE region = $1 ORDER BY id`, region)
	if err != nil {
		return nil, unavailable(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return out, unavailable(err)
}
