package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/api/console/sessionstore"
	"github.com/vigilhq/vigil/domain/service"
)

// The web console's sessions (api/console) live in the table of migration
// 00019; the Admin Center's lists read the identity tables and the log's
// stream names.
var (
	_ sessionstore.Store     = (*Store)(nil)
	_ sessionstore.Directory = (*Store)(nil)
)

// CreateConsoleSession implements sessionstore.Store.
func (s *Store) CreateConsoleSession(ctx context.Context, cs sessionstore.Session) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO console_sessions (id_hash, tenant, role, technician_id, credential, created_at, last_seen_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		cs.IDHash, cs.Tenant, cs.Role, cs.TechnicianID, cs.Credential, cs.CreatedAt, cs.LastSeenAt, cs.ExpiresAt)
	if err != nil {
		return fmt.Errorf("create console session: %w", translate(err))
	}
	return nil
}

// ConsoleSession implements sessionstore.Store.
func (s *Store) ConsoleSession(ctx context.Context, idHash []byte) (sessionstore.Session, error) {
	var cs sessionstore.Session
	err := s.pool.QueryRow(ctx, `SELECT id_hash, tenant, role, technician_id, credential, created_at, last_seen_at, expires_at
		FROM console_sessions WHERE id_hash = $1`, idHash).Scan(
		&cs.IDHash, &cs.Tenant, &cs.Role, &cs.TechnicianID, &cs.Credential, &cs.CreatedAt, &cs.LastSeenAt, &cs.ExpiresAt)
	if err != nil {
		return cs, notFound(err, "console session")
	}
	cs.CreatedAt, cs.LastSeenAt, cs.ExpiresAt = cs.CreatedAt.UTC(), cs.LastSeenAt.UTC(), cs.ExpiresAt.UTC()
	return cs, nil
}

// TouchConsoleSession implements sessionstore.Store.
func (s *Store) TouchConsoleSession(ctx context.Context, idHash []byte, lastSeen, expiresAt time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE console_sessions SET last_seen_at = $2, expires_at = $3 WHERE id_hash = $1`, idHash, lastSeen, expiresAt)
	if err != nil {
		return fmt.Errorf("touch console session: %w", translate(err))
	}
	return nil
}

// DeleteConsoleSession implements sessionstore.Store.
func (s *Store) DeleteConsoleSession(ctx context.Context, idHash []byte) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE id_hash = $1`, idHash); err != nil {
		return fmt.Errorf("delete console session: %w", translate(err))
	}
	return nil
}

// PurgeConsoleSessions implements sessionstore.Store.
func (s *Store) PurgeConsoleSessions(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE expires_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("purge console sessions: %w", translate(err))
	}
	return tag.RowsAffected(), nil
}

// APIKeys implements sessionstore.Directory: the tenant's keys, newest first,
// revoked ones included.
func (s *Store) APIKeys(ctx context.Context, tenant string) ([]service.APIKey, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE tenant = $1 ORDER BY created_at DESC, id`, tenant)
	keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (service.APIKey, error) {
		var k service.APIKey
		var role string
		var revoked *time.Time
		err := row.Scan(&k.ID, &k.Tenant, &role, &k.Hash, &k.Description, &k.CreatedAt, &revoked)
		k.Role, k.RevokedAt = service.Role(role), fromNullTime(revoked)
		k.CreatedAt = k.CreatedAt.UTC()
		k.Hash = nil // never leaves the store
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", translate(err))
	}
	return keys, nil
}

// TechnicianIDs implements sessionstore.Directory.
func (s *Store) TechnicianIDs(ctx context.Context, tenant string) ([]string, error) {
	rows, _ := s.pool.Query(ctx, `SELECT technician_id FROM technician_credentials WHERE tenant = $1 ORDER BY technician_id`, tenant)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list technicians: %w", translate(err))
	}
	return ids, nil
}

// GroupIDs implements sessionstore.Directory: the groups whose stream the log
// holds, read as a range of the (tenant, stream, version) index.
func (s *Store) GroupIDs(ctx context.Context, tenant string) ([]string, error) {
	rows, _ := s.pool.Query(ctx, `SELECT DISTINCT stream FROM events WHERE tenant = $1 AND stream >= 'group-' AND stream < 'group.' AND version = 1`, tenant)
	streams, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list groups: %w", translate(err))
	}
	ids := make([]string, 0, len(streams))
	for _, st := range streams {
		ids = append(ids, strings.TrimPrefix(st, "group-"))
	}
	return ids, nil
}
