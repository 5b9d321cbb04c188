// Package stack gives the benchmarks a scratch Vigil: its own database on
// a PostgreSQL server, migrated, with a store, a sealer and a running
// ledger, all removed again by Close.
package stack

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/ledger"
	"golang.org/x/mod/sumdb/note"
)

// Origin is the checkpoint origin of the benchmarks' ledgers.
const Origin = "vigil.bench"

// Stack is a scratch Vigil over its own database.
type Stack struct {
	Name     string // the database's name
	Pool     *pgxpool.Pool
	Store    *postgres.Store
	Sealer   *ledger.Sealer
	Ledger   *ledger.Ledger
	Signer   note.Signer
	Verifier note.Verifier
	admin    *pgx.Conn
}

// Open creates a database named vigil_<prefix>_<random> on the server at
// serverURL (a URL of its "postgres" database), migrates it and starts a
// ledger over it with fresh keys.
func Open(ctx context.Context, serverURL, prefix string, logger *slog.Logger) (*Stack, error) {
	raw := make([]byte, 6)
	_, _ = rand.Read(raw)
	s := &Stack{Name: fmt.Sprintf("vigil_%s_%x", prefix, raw)}
	var err error
	if s.admin, err = pgx.Connect(ctx, serverURL); err != nil {
		return nil, err
	}
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+s.Name); err != nil {
		s.admin.Close(ctx)
		return nil, err
	}
	if s.Pool, err = postgres.Open(ctx, strings.Replace(serverURL, "/postgres?", "/"+s.Name+"?", 1)); err != nil {
		s.Close()
		return nil, err
	}
	if _, err := postgres.Migrate(ctx, s.Pool); err != nil {
		s.Close()
		return nil, err
	}
	s.Store = postgres.NewStore(s.Pool, postgres.Options{Logger: logger})
	mkRaw := make([]byte, ledger.MasterKeySize)
	_, _ = rand.Read(mkRaw)
	mk, err := ledger.NewMasterKey(mkRaw)
	if err != nil {
		s.Close()
		return nil, err
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, Origin)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.Signer, _ = note.NewSigner(skey)
	s.Verifier, _ = note.NewVerifier(vkey)
	s.Sealer = ledger.NewSealer(s.Store, ledger.NewKeyring(mk), 0)
	s.Ledger = ledger.New(s.Store, s.Sealer, s.Signer, ledger.Options{Origin: Origin, Logger: logger})
	go s.Ledger.Run(context.WithoutCancel(ctx))
	return s, nil
}

// Close stops the ledger (committing what is queued), closes the database
// and drops it.
func (s *Stack) Close() {
	if s.Ledger != nil {
		s.Ledger.Close()
	}
	if s.Store != nil {
		s.Store.Close()
	}
	if s.Pool != nil {
		s.Pool.Close()
	}
	ctx := context.Background()
	_, _ = s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+s.Name+" WITH (FORCE)")
	s.admin.Close(ctx)
}
