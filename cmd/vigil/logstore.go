package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/adapters/eventstoredb"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/ledger"
)

// openLogStore returns the store of the ledger's log: the PostgreSQL store
// itself by default, or KurrentDB with VIGIL_LOG_STORE=kurrentdb. Subject
// keys stay in PostgreSQL either way, because crypto-shredding destroys
// them and a KurrentDB event cannot be destroyed (docs/kurrentdb.md).
func openLogStore(ctx context.Context, cfg *Config, pg *postgres.Store, log *slog.Logger) (ledger.Store, func(), error) {
	switch cfg.LogStore {
	case "", "postgres":
		return pg, func() {}, nil
	case "kurrentdb":
		st, err := eventstoredb.Open(ctx, cfg.KurrentDBURL, eventstoredb.Options{Keys: pg, Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("log store kurrentdb: %w", err)
		}
		return st, func() { st.Close() }, nil
	}
	return nil, nil, fmt.Errorf("VIGIL_LOG_STORE=%q: want postgres or kurrentdb", cfg.LogStore)
}

// locateSession finds a session's tenant by its GUID. On PostgreSQL it
// probes the session's first event per tenant through the (tenant, stream,
// version) index, in one statement; on another log store it reads the
// session's stream in each tenant in turn.
func locateSession(pool *pgxpool.Pool, log ledger.Store) service.SessionLocator {
	if _, ok := log.(*postgres.Store); ok {
		return service.SessionLocatorFunc(func(ctx context.Context, guid string) (string, error) {
			var tenant string
			err := pool.QueryRow(ctx, `SELECT t.id FROM tenants t
				WHERE EXISTS (SELECT 1 FROM events e WHERE e.tenant = t.id AND e.stream = $1 AND e.version = 1)
				LIMIT 1`, domain.SessionStream(guid)).Scan(&tenant)
			if errors.Is(err, pgx.ErrNoRows) {
				return "", domain.ErrNotFound
			}
			return tenant, err
		})
	}
	return service.SessionLocatorFunc(func(ctx context.Context, guid string) (string, error) {
		rows, err := pool.Query(ctx, `SELECT id FROM tenants ORDER BY id`)
		if err != nil {
			return "", err
		}
		tenants, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return "", err
		}
		for _, t := range tenants {
			evs, err := log.ReadStream(ctx, t, domain.SessionStream(guid), 0)
			if err != nil && !errors.Is(err, domain.ErrNotFound) {
				return "", err
			}
			if len(evs) > 0 {
				return t, nil
			}
		}
		return "", domain.ErrNotFound
	})
}
