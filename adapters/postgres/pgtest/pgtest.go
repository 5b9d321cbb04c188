// Package pgtest gives tests a fresh, migrated PostgreSQL database of their
// own, dropped when the test ends. The server comes from
// VIGIL_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/adapters/postgres"
)

// ServerURL returns the URL of the test server's maintenance database.
func ServerURL() string {
	if u := os.Getenv("VIGIL_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// DB is one test's database.
type DB struct {
	Name string
	URL  string
	Pool *pgxpool.Pool
}

// New creates a randomly named database, migrates it, and drops it (closing
// the pool first) when tb ends. It fails tb when the server is unreachable.
func New(tb testing.TB) *DB {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	raw := make([]byte, 6)
	_, _ = rand.Read(raw)
	name := "vigil_test_" + hex.EncodeToString(raw)

	cfg, err := pgx.ParseConfig(ServerURL())
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		tb.Fatalf("pgtest: connect to %s: %v (is PostgreSQL running? .ci/run starts it)", cfg.Host, err)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close(ctx)
		tb.Fatalf("pgtest: create database: %v", err)
	}
	admin.Close(ctx)

	dsn, err := replaceDatabase(ServerURL(), name)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	pool, err := postgres.Open(ctx, dsn)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	db := &DB{Name: name, URL: dsn, Pool: pool}
	tb.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			tb.Logf("pgtest: drop %s: %v", name, err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	if _, err := postgres.Migrate(ctx, pool); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return db
}

// replaceDatabase swaps the database name of a postgres:// URL.
func replaceDatabase(raw, name string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}
