// Package postgres is Vigil's PostgreSQL adapter: the ledger store (events,
// Merkle hashes, checkpoints, subject keys) through pgx, the migration
// runner, and the LISTEN/NOTIFY wake-ups of catch-up subscriptions.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/vigilhq/vigil/migrations"
)

// EnsureDatabase creates the database named in url if it does not exist, by
// connecting to the server's "postgres" database with the same credentials.
// It is a no-op when the database exists or the role may not create one and
// it exists anyway.
func EnsureDatabase(ctx context.Context, dsn string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("database url: %w", err)
	}
	name := cfg.Database
	if name == "" {
		return nil
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		conn.Close(ctx)
		return nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" { // invalid_catalog_name
		return fmt.Errorf("connect to %s: %w", name, err)
	}
	admin := cfg.Copy()
	admin.Database = "postgres"
	conn, err = pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return fmt.Errorf("connect to create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if err != nil && !(errors.As(err, &pgErr) && pgErr.Code == "42P04") { // duplicate_database
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// Open creates the database if missing and returns a connection pool.
func Open(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	if err := EnsureDatabase(ctx, dsn); err != nil {
		return nil, err
	}
	return OpenExisting(ctx, dsn)
}

// OpenExisting returns a connection pool to a database that must exist
// already: for commands that only read, where creating a misspelled
// database would hide the mistake.
func OpenExisting(ctx context.Context, dsn string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	// The ledger writer, key look-ups, subscribers and the listener each
	// hold a connection at times; pgx's default (the CPU count) starves them
	// on small machines.
	if cfg.MaxConns < 16 && !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = 16
	}
	// Prepared statements switch to a generic plan after five runs. Planned
	// while a table is new and empty, that plan scans the whole table ever
	// after (seen here: ReadStream and the writer's id lookup slowing down
	// as the log grew). Vigil's queries are small; planning each for its
	// actual arguments costs microseconds and keeps index use.
	if _, ok := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !ok {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	return pool, nil
}

// Migrate applies every pending migration of migrations.FS, holding a
// PostgreSQL advisory lock so that several processes starting at once apply
// each migration once. It returns the versions applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]int64, error) {
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	return migrate(ctx, db)
}

func migrate(ctx context.Context, db *sql.DB) ([]int64, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	res, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	out := make([]int64, 0, len(res))
	for _, r := range res {
		out = append(out, r.Source.Version)
	}
	return out, nil
}

// Redact returns dsn with any password replaced, for logs.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		if i := strings.Index(dsn, "password="); i >= 0 {
			return dsn[:i] + "password=xxxxx"
		}
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
