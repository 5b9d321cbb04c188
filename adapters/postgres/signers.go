package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/ledger"
)

var _ ledger.SignerPins = (*Store)(nil)

// PinnedKeys implements ledger.SignerPins from the checkpoint_signers
// table, which refuses updates and deletes like the log tables. The pins
// live in PostgreSQL whatever the log store, like the subject keys.
func (s *Store) PinnedKeys(ctx context.Context) ([]ledger.PinnedKey, error) {
	rows, err := s.pool.Query(ctx, `SELECT verifier_key, how, added_by, added_at FROM checkpoint_signers ORDER BY added_at, verifier_key`)
	if err != nil {
		return nil, fmt.Errorf("pinned keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ledger.PinnedKey, error) {
		var k ledger.PinnedKey
		err := row.Scan(&k.VerifierKey, &k.How, &k.AddedBy, &k.AddedAt)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("pinned keys: %w", err)
	}
	return keys, nil
}

// PinFirstKey implements ledger.SignerPins: a unique index admits one first
// key, so of processes racing to pin theirs exactly one wins.
func (s *Store) PinFirstKey(ctx context.Context, k ledger.PinnedKey) ([]ledger.PinnedKey, error) {
	if k.How != ledger.PinFirst && k.How != ledger.PinAdopted {
		return nil, fmt.Errorf("pin first key: how %q", k.How)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO checkpoint_signers (verifier_key, how, added_by) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, k.VerifierKey, k.How, k.AddedBy); err != nil {
		return nil, fmt.Errorf("pin first key: %w", err)
	}
	return s.PinnedKeys(ctx)
}

// PinKey implements ledger.SignerPins.
func (s *Store) PinKey(ctx context.Context, k ledger.PinnedKey) error {
	if k.How != ledger.PinRotation {
		return fmt.Errorf("pin key: how %q", k.How)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO checkpoint_signers (verifier_key, how, added_by) VALUES ($1, $2, $3)
		ON CONFLICT (verifier_key) DO NOTHING`, k.VerifierKey, k.How, k.AddedBy); err != nil {
		return fmt.Errorf("pin key: %w", err)
	}
	return nil
}
