package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

const keyColumns = `key_id, tenant, subject, master_key_id, wrapped, created_at, destroyed_at`

func scanKey(row pgx.Row) (ledger.WrappedKey, error) {
	var k ledger.WrappedKey
	var subject string
	var destroyed *time.Time
	if err := row.Scan(&k.KeyID, &k.Tenant, &subject, &k.MasterKeyID, &k.Wrapped, &k.CreatedAt, &destroyed); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return k, domain.ErrNotFound
		}
		return k, unavailable(err)
	}
	k.Subject = domain.Subject(subject)
	if destroyed != nil {
		k.DestroyedAt = *destroyed
		k.Wrapped = nil
	}
	return k, nil
}

// SubjectKey implements ledger.KeyStore.
func (s *Store) SubjectKey(ctx context.Context, tenant string, subject domain.Subject) (ledger.WrappedKey, error) {
	return scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM subject_keys WHERE tenant = $1 AND subject = $2`, tenant, string(subject)))
}

// SubjectKeyByID implements ledger.KeyStore.
func (s *Store) SubjectKeyByID(ctx context.Context, keyID string) (ledger.WrappedKey, error) {
	return scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM subject_keys WHERE key_id = $1`, keyID))
}

// CreateSubjectKey implements ledger.KeyStore in one statement: insert
// unless the subject has a key, and return the stored key either way.
func (s *Store) CreateSubjectKey(ctx context.Context, k ledger.WrappedKey) (ledger.WrappedKey, error) {
	w, err := scanKey(s.pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO subject_keys (key_id, tenant, subject, master_key_id, wrapped) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant, subject) DO NOTHING
			RETURNING `+keyColumns+`)
		SELECT `+keyColumns+` FROM ins
		UNION ALL
		SELECT `+keyColumns+` FROM subject_keys WHERE tenant = $2 AND subject = $3 AND NOT EXISTS (SELECT 1 FROM ins)`,
		k.KeyID, k.Tenant, string(k.Subject), k.MasterKeyID, k.Wrapped))
	if errors.Is(err, domain.ErrNotFound) {
		// A concurrent insert committed after this statement's snapshot:
		// it is there now.
		return s.SubjectKey(ctx, k.Tenant, k.Subject)
	}
	if err != nil {
		return ledger.WrappedKey{}, fmt.Errorf("create subject key: %w", translate(err))
	}
	return w, nil
}

// DestroySubjectKey implements ledger.KeyStore. It notifies every listening
// process so that their caches drop the key at once.
func (s *Store) DestroySubjectKey(ctx context.Context, tenant string, subject domain.Subject) (string, error) {
	var id string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE subject_keys SET wrapped = NULL, destroyed_at = coalesce(destroyed_at, now())
			WHERE tenant = $1 AND subject = $2 RETURNING key_id`, tenant, string(subject)).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return domain.ErrNotFound
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, keysChannel, id)
		return err
	})
	if err != nil {
		return "", err
	}
	return id, nil
}

// RewrapSubjectKeys implements ledger.KeyStore.
func (s *Store) RewrapSubjectKeys(ctx context.Context, fn func(ledger.WrappedKey) (ledger.WrappedKey, error)) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+keyColumns+` FROM subject_keys WHERE wrapped IS NOT NULL ORDER BY key_id FOR UPDATE`)
		if err != nil {
			return err
		}
		var keys []ledger.WrappedKey
		for rows.Next() {
			k, err := scanKey(rows)
			if err != nil {
				rows.Close()
				return err
			}
			keys = append(keys, k)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		b := &pgx.Batch{}
		for _, k := range keys {
			w, err := fn(k)
			if err != nil {
				return err
			}
			b.Queue(`UPDATE subject_keys SET wrapped = $2, master_key_id = $3 WHERE key_id = $1`, w.KeyID, w.Wrapped, w.MasterKeyID)
			n++
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, fmt.Errorf("rewrap subject keys: %w", err)
	}
	return n, nil
}
