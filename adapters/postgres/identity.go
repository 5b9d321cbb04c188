package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

// The identity, idempotency and activity stores live in the tables of
// migration 00002. Every method is safe for concurrent use; times are
// stored as timestamptz, to the microsecond, and returned in UTC.
var (
	_ service.IdentityStore    = (*Store)(nil)
	_ service.IdempotencyStore = (*Store)(nil)
	_ service.ActivityStore    = (*Store)(nil)
	_ service.LoginLimiter     = (*Store)(nil)
)

// nullTime maps the zero time, which the service types use for "not set",
// to NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// fromNullTime maps NULL back to the zero time, and anything else to UTC.
func fromNullTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// notFound turns pgx.ErrNoRows into domain.ErrNotFound, naming what was
// missing, and a lost connection into domain.ErrUnavailable.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), domain.ErrNotFound)
	}
	return unavailable(err)
}

// translateIdentity is translate, plus a foreign key violation (a row naming
// a tenant that does not exist) as domain.ErrNotFound.
func translateIdentity(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" { // foreign_key_violation
		return fmt.Errorf("%s: %w", pgErr.ConstraintName, domain.ErrNotFound)
	}
	return translate(err)
}

// execOne runs a statement that must change one row: none is
// domain.ErrNotFound, naming what was missing.
func (s *Store) execOne(ctx context.Context, what, sql string, args ...any) error {
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, translateIdentity(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", what, domain.ErrNotFound)
	}
	return nil
}

// CreateTenant implements service.IdentityStore. A zero CreatedAt is the
// database's current time. domain.ErrConflict when the id is taken.
func (s *Store) CreateTenant(ctx context.Context, t service.TenantRecord) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO tenants (id, name, region, created_at) VALUES ($1, $2, $3, coalesce($4, now()))`,
		t.ID, t.Name, t.Region, nullTime(t.CreatedAt))
	if err != nil {
		return fmt.Errorf("create tenant %s: %w", t.ID, translateIdentity(err))
	}
	return nil
}

// Tenant implements service.IdentityStore; domain.ErrNotFound for an
// unknown id.
func (s *Store) Tenant(ctx context.Context, id string) (service.TenantRecord, error) {
	var t service.TenantRecord
	err := s.pool.QueryRow(ctx, `SELECT id, name, region, created_at FROM tenants WHERE id = $1`, id).
		Scan(&t.ID, &t.Name, &t.Region, &t.CreatedAt)
	if err != nil {
		return service.TenantRecord{}, notFound(err, "tenant %s", id)
	}
	t.CreatedAt = t.CreatedAt.UTC()
	return t, nil
}

const apiKeyColumns = `id, tenant, role, hash, description, created_at, revoked_at`

func scanAPIKey(row pgx.CollectableRow) (service.APIKey, error) {
	var (
		k       service.APIKey
		role    string
		revoked *time.Time
	)
	if err := row.Scan(&k.ID, &k.Tenant, &role, &k.Hash, &k.Description, &k.CreatedAt, &revoked); err != nil {
		return service.APIKey{}, err
	}
	k.Role = service.Role(role)
	k.CreatedAt = k.CreatedAt.UTC()
	k.RevokedAt = fromNullTime(revoked)
	return k, nil
}

// CreateAPIKey implements service.IdentityStore. A zero CreatedAt is the
// database's current time. It returns an error of code invalid for a role
// no API key may have, domain.ErrNotFound when the tenant does not exist,
// and domain.ErrConflict when the id is taken.
func (s *Store) CreateAPIKey(ctx context.Context, k service.APIKey) error {
	if !service.ValidKeyRole(k.Role) {
		return domain.Errorf(domain.CodeInvalid, "create api key %s: no api key may have role %q", k.ID, k.Role)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`) VALUES ($1, $2, $3, $4, $5, coalesce($6, now()), $7)`,
		k.ID, k.Tenant, string(k.Role), k.Hash, k.Description, nullTime(k.CreatedAt), nullTime(k.RevokedAt))
	if err != nil {
		return fmt.Errorf("create api key %s: %w", k.ID, translateIdentity(err))
	}
	return nil
}

// APIKey implements service.IdentityStore. It returns revoked keys too
// (RevokedAt set); domain.ErrNotFound for an unknown id.
func (s *Store) APIKey(ctx context.Context, id string) (service.APIKey, error) {
	rows, _ := s.reads.Query(ctx, sqlAPIKey, id)
	return collectAPIKey(rows, id)
}

// collectAPIKey reads the one row of sqlAPIKey for id: domain.ErrNotFound
// when there is none.
func collectAPIKey(rows pgx.Rows, id string) (service.APIKey, error) {
	k, err := pgx.CollectOneRow(rows, scanAPIKey)
	if err != nil {
		return service.APIKey{}, notFound(err, "api key %s", id)
	}
	return k, nil
}

// RevokeAPIKey implements service.IdentityStore: it sets RevokedAt to at
// unless the key is revoked already, so that the first revocation time
// stays. domain.ErrNotFound for an unknown id.
func (s *Store) RevokeAPIKey(ctx context.Context, id string, at time.Time) error {
	return s.execOne(ctx, "revoke api key "+id,
		`UPDATE api_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1`, id, at)
}

const credentialColumns = `tenant, technician_id, email_index, password_hash, totp_secret, totp_pending, updated_at`

func scanCredential(row pgx.CollectableRow) (service.Credential, error) {
	var c service.Credential
	if err := row.Scan(&c.Tenant, &c.TechnicianID, &c.EmailIndex, &c.PasswordHash, &c.TOTPSecret, &c.TOTPPending, &c.UpdatedAt); err != nil {
		return service.Credential{}, err
	}
	c.UpdatedAt = c.UpdatedAt.UTC()
	return c, nil
}

// CreateCredential implements service.IdentityStore. A zero UpdatedAt is
// the database's current time; nil TOTP secrets are stored as NULL and come
// back nil. domain.ErrConflict when the tenant already has a credential
// with the technician id or the e-mail index.
func (s *Store) CreateCredential(ctx context.Context, c service.Credential) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO technician_credentials (`+credentialColumns+`) VALUES ($1, $2, $3, $4, $5, $6, coalesce($7, now()))`,
		c.Tenant, c.TechnicianID, c.EmailIndex, c.PasswordHash, c.TOTPSecret, c.TOTPPending, nullTime(c.UpdatedAt))
	if err != nil {
		return fmt.Errorf("create credential %s/%s: %w", c.Tenant, c.TechnicianID, translateIdentity(err))
	}
	return nil
}

// DeleteCredential implements service.IdentityStore. It leaves the
// technician's tokens alone (EndTechnicianTokens ends them).
// domain.ErrNotFound when there is no such credential.
func (s *Store) DeleteCredential(ctx context.Context, tenant, technicianID string) error {
	return s.execOne(ctx, fmt.Sprintf("delete credential %s/%s", tenant, technicianID),
		`DELETE FROM technician_credentials WHERE tenant = $1 AND technician_id = $2`, tenant, technicianID)
}

// Credential implements service.IdentityStore; domain.ErrNotFound when
// there is no such credential.
func (s *Store) Credential(ctx context.Context, tenant, technicianID string) (service.Credential, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+credentialColumns+` FROM technician_credentials WHERE tenant = $1 AND technician_id = $2`,
		tenant, technicianID)
	c, err := pgx.CollectOneRow(rows, scanCredential)
	if err != nil {
		return service.Credential{}, notFound(err, "credential %s/%s", tenant, technicianID)
	}
	return c, nil
}

// SetSSOIndex implements service.IdentityStore: nil clears it.
// domain.ErrConflict when another technician of the tenant has the index,
// domain.ErrNotFound when there is no such credential.
func (s *Store) SetSSOIndex(ctx context.Context, tenant, technicianID string, ssoIndex []byte) error {
	return s.execOne(ctx, fmt.Sprintf("set the SSO id of %s/%s", tenant, technicianID),
		`UPDATE technician_credentials SET sso_index = $3 WHERE tenant = $1 AND technician_id = $2`, tenant, technicianID, ssoIndex)
}

// CredentialBySSO implements service.IdentityStore; domain.ErrNotFound
// when no technician of the tenant has the index.
func (s *Store) CredentialBySSO(ctx context.Context, tenant string, ssoIndex []byte) (service.Credential, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+credentialColumns+` FROM technician_credentials WHERE tenant = $1 AND sso_index = $2`,
		tenant, ssoIndex)
	c, err := pgx.CollectOneRow(rows, scanCredential)
	if err != nil {
		return service.Credential{}, notFound(err, "credential of an SSO id in %s", tenant)
	}
	return c, nil
}

// CredentialsByEmail implements service.IdentityStore. It returns the
// credentials ordered by tenant, and none (no error) for an unknown index.
func (s *Store) CredentialsByEmail(ctx context.Context, emailIndex []byte) ([]service.Credential, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+credentialColumns+` FROM technician_credentials WHERE email_index = $1
		ORDER BY tenant, technician_id`, emailIndex)
	cs, err := pgx.CollectRows(rows, scanCredential)
	if err != nil {
		return nil, fmt.Errorf("credentials by e-mail: %w", err)
	}
	return cs, nil
}

// UpdatePassword implements service.IdentityStore: it replaces the
// password hash and sets UpdatedAt to at. domain.ErrNotFound when there is
// no such credential.
func (s *Store) UpdatePassword(ctx context.Context, tenant, technicianID, hash string, at time.Time) error {
	return s.execOne(ctx, fmt.Sprintf("update password of %s/%s", tenant, technicianID),
		`UPDATE technician_credentials SET password_hash = $3, updated_at = $4 WHERE tenant = $1 AND technician_id = $2`,
		tenant, technicianID, hash, at)
}

// SetTOTP implements service.IdentityStore; nil clears a secret. It leaves
// UpdatedAt, the time of the password, alone. domain.ErrNotFound when there
// is no such credential.
func (s *Store) SetTOTP(ctx context.Context, tenant, technicianID string, secret, pending []byte) error {
	return s.execOne(ctx, fmt.Sprintf("set totp of %s/%s", tenant, technicianID),
		`UPDATE technician_credentials SET totp_secret = $3, totp_pending = $4 WHERE tenant = $1 AND technician_id = $2`,
		tenant, technicianID, secret, pending)
}

// UseTOTPStep implements service.IdentityStore: one conditional UPDATE,
// so that of concurrent uses of one step, on any node, exactly one wins.
func (s *Store) UseTOTPStep(ctx context.Context, tenant, technicianID string, step int64) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE technician_credentials SET totp_last_step = $3
		WHERE tenant = $1 AND technician_id = $2 AND (totp_last_step IS NULL OR totp_last_step < $3)`,
		tenant, technicianID, step)
	if err != nil {
		return false, fmt.Errorf("use totp step of %s/%s: %w", tenant, technicianID, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	if _, err := s.Credential(ctx, tenant, technicianID); err != nil {
		return false, fmt.Errorf("use totp step: %w", err)
	}
	return false, nil
}

// ReserveLoginFailure implements service.LoginLimiter with one statement:
// the row's lock orders concurrent reservations, and the conditional
// update refuses the one past the limit.
func (s *Store) ReserveLoginFailure(ctx context.Context, addressKey []byte, window time.Time, limit int) (bool, error) {
	if limit < 1 {
		return false, nil
	}
	rows, _ := s.pool.Query(ctx, `INSERT INTO login_address_failures AS f (address_key, window_start, failures)
		VALUES ($1, $2, 1)
		ON CONFLICT (address_key, window_start) DO UPDATE SET failures = f.failures + 1 WHERE f.failures < $3
		RETURNING failures`, addressKey, window, limit)
	n, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return false, fmt.Errorf("reserve login failure: %w", err)
	}
	return len(n) == 1, nil
}

// ForgiveLoginFailure implements service.LoginLimiter. Forgiving what is
// not counted (a purged window) does nothing.
func (s *Store) ForgiveLoginFailure(ctx context.Context, addressKey []byte, window time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE login_address_failures SET failures = failures - 1
		WHERE address_key = $1 AND window_start = $2 AND failures > 0`, addressKey, window)
	if err != nil {
		return fmt.Errorf("forgive login failure: %w", err)
	}
	return nil
}

// CountAccountFailure implements service.LoginLimiter in one transaction
// that locks the name's row, so that concurrent failures all count.
func (s *Store) CountAccountFailure(ctx context.Context, tenant string, emailIndex []byte, now time.Time, threshold int, lockFor time.Duration) (bool, error) {
	locked := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO login_account_failures (tenant, email_index, failures, updated_at)
			VALUES ($1, $2, 0, $3) ON CONFLICT (tenant, email_index) DO NOTHING`, tenant, emailIndex, now); err != nil {
			return err
		}
		var (
			failures int
			until    *time.Time
		)
		if err := tx.QueryRow(ctx, `SELECT failures, locked_until FROM login_account_failures
			WHERE tenant = $1 AND email_index = $2 FOR UPDATE`, tenant, emailIndex).Scan(&failures, &until); err != nil {
			return err
		}
		if until != nil && now.Before(*until) {
			locked = true
			return nil
		}
		if until != nil {
			// The lockout expired: counting starts again.
			failures, until = 0, nil
		}
		failures++
		if failures >= threshold {
			u := now.Add(lockFor)
			until = &u
		}
		_, err := tx.Exec(ctx, `UPDATE login_account_failures SET failures = $3, locked_until = $4, updated_at = $5
			WHERE tenant = $1 AND email_index = $2`, tenant, emailIndex, failures, until, now)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("count login failure: %w", err)
	}
	return locked, nil
}

// PurgeLoginFailures implements service.LoginLimiter.
func (s *Store) PurgeLoginFailures(ctx context.Context, cutoff time.Time) (int, error) {
	a, err := s.pool.Exec(ctx, `DELETE FROM login_address_failures WHERE window_start < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("purge login failures: %w", err)
	}
	b, err := s.pool.Exec(ctx, `DELETE FROM login_account_failures
		WHERE updated_at < $1 AND (locked_until IS NULL OR locked_until < $1)`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("purge login failures: %w", err)
	}
	return int(a.RowsAffected() + b.RowsAffected()), nil
}

const tokenColumns = `id, tenant, technician_id, hash, scope, created_at, last_seen_at, expires_at, ended_at`

func scanToken(row pgx.CollectableRow) (service.Token, error) {
	var (
		t     service.Token
		ended *time.Time
	)
	if err := row.Scan(&t.ID, &t.Tenant, &t.TechnicianID, &t.Hash, &t.Scope, &t.CreatedAt, &t.LastSeenAt, &t.ExpiresAt, &ended); err != nil {
		return service.Token{}, err
	}
	t.CreatedAt = t.CreatedAt.UTC()
	t.LastSeenAt = t.LastSeenAt.UTC()
	t.ExpiresAt = t.ExpiresAt.UTC()
	t.EndedAt = fromNullTime(ended)
	return t, nil
}

// CreateToken implements service.IdentityStore. A zero CreatedAt is the
// database's current time. domain.ErrConflict when the id is taken.
func (s *Store) CreateToken(ctx context.Context, t service.Token) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO auth_tokens (`+tokenColumns+`) VALUES ($1, $2, $3, $4, $5, coalesce($6, now()), $7, $8, $9)`,
		t.ID, t.Tenant, t.TechnicianID, t.Hash, t.Scope, nullTime(t.CreatedAt), t.LastSeenAt, t.ExpiresAt, nullTime(t.EndedAt))
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, translateIdentity(err))
	}
	return nil
}

// Token implements service.IdentityStore. It returns ended and expired
// tokens too; domain.ErrNotFound for an unknown id.
func (s *Store) Token(ctx context.Context, id string) (service.Token, error) {
	rows, _ := s.reads.Query(ctx, sqlToken, id)
	return collectToken(rows, id)
}

// collectToken reads the one row of sqlToken for id: domain.ErrNotFound
// when there is none.
func collectToken(rows pgx.Rows, id string) (service.Token, error) {
	t, err := pgx.CollectOneRow(rows, scanToken)
	if err != nil {
		return service.Token{}, notFound(err, "token %s", id)
	}
	return t, nil
}

// TouchToken implements service.IdentityStore: it sets LastSeenAt and
// ExpiresAt of a token that is not ended. An ended token stays as it is,
// without error: a use authenticated just before a concurrent logout must
// neither fail nor extend the ended token. domain.ErrNotFound for an
// unknown id.
func (s *Store) TouchToken(ctx context.Context, id string, lastSeen, expiresAt time.Time) error {
	return s.execOne(ctx, "touch token "+id, `UPDATE auth_tokens
		SET last_seen_at = CASE WHEN ended_at IS NULL THEN $2 ELSE last_seen_at END,
			expires_at = CASE WHEN ended_at IS NULL THEN $3 ELSE expires_at END
		WHERE id = $1`, id, lastSeen, expiresAt)
}

// SetTokenScope implements service.IdentityStore; domain.ErrNotFound for an
// unknown id.
func (s *Store) SetTokenScope(ctx context.Context, id, scope string) error {
	return s.execOne(ctx, "set scope of token "+id, `UPDATE auth_tokens SET scope = $2 WHERE id = $1`, id, scope)
}

// EndToken implements service.IdentityStore: it sets EndedAt to at unless
// the token is ended already. It reports true when this call ended the
// token (it was live until now), and false, changing nothing, when it had
// been ended before; of several concurrent calls exactly one reports true.
// domain.ErrNotFound for an unknown id.
func (s *Store) EndToken(ctx context.Context, id string, at time.Time) (bool, error) {
	// Tokens are never deleted, so an id the update misses either never
	// existed or is ended: the second query cannot race a deletion.
	tag, err := s.pool.Exec(ctx, `UPDATE auth_tokens SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL`, id, at)
	if err != nil {
		return false, fmt.Errorf("end token %s: %w", id, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM auth_tokens WHERE id = $1)`, id).Scan(&exists); err != nil {
		return false, fmt.Errorf("end token %s: %w", id, err)
	}
	if !exists {
		return false, fmt.Errorf("end token %s: %w", id, domain.ErrNotFound)
	}
	return false, nil
}

// ExpiredTokens implements service.IdentityStore: up to limit tokens not
// ended whose ExpiresAt is before now, earliest ExpiresAt first (then by
// id). A limit below 1 returns none.
func (s *Store) ExpiredTokens(ctx context.Context, now time.Time, limit int) ([]service.Token, error) {
	if limit < 1 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM auth_tokens
		WHERE ended_at IS NULL AND expires_at < $1 ORDER BY expires_at, id LIMIT $2`, now, limit)
	ts, err := pgx.CollectRows(rows, scanToken)
	if err != nil {
		return nil, fmt.Errorf("expired tokens: %w", err)
	}
	return ts, nil
}

// EndTechnicianTokens implements service.IdentityStore: it sets EndedAt to
// at on every token of the technician not ended yet, expired or not, and
// returns how many that was. An unknown technician has none: 0, no error.
func (s *Store) EndTechnicianTokens(ctx context.Context, tenant, technicianID string, at time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE auth_tokens SET ended_at = $3
		WHERE tenant = $1 AND technician_id = $2 AND ended_at IS NULL`, tenant, technicianID, at)
	if err != nil {
		return 0, fmt.Errorf("end tokens of %s/%s: %w", tenant, technicianID, err)
	}
	return int(tag.RowsAffected()), nil
}

// claimAttempts bounds how often Claim retries when the entry it collided
// with is released or purged before it could read it.
const claimAttempts = 5

// StaleClaimAfter is how long a claimed Idempotency-Key may stay running
// (status 0) before a repeat of the same request takes it over and runs
// again. No request runs that long; a claim that old lost its answer: the
// process died mid-request, or the database lost the answer (idempotency
// rows are committed without waiting for the WAL flush, see relaxedExec).
// The repeat appends nothing twice: its events carry the ids derived from
// the key, which the ledger answers with the stored events.
const StaleClaimAfter = 10 * time.Minute

// relaxedExec runs one statement in a transaction of its own committed
// with synchronous_commit off: it returns once the commit record is
// written, without waiting for the WAL flush (nor, on a cluster, for the
// synchronous standbys). For the idempotency rows only, which are a cache
// of answers and a guard against running a request twice at once, never
// evidence: a server crash can lose the last few hundred milliseconds of
// them, never an event. The request's append commits synchronously after
// its claim, and its flush covers the claim (the WAL is one sequence).
// Measured: two WAL flushes fewer per command (docs/performance.md).
func (s *Store) relaxedExec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	b := &pgx.Batch{}
	// One batch is one implicit transaction: the setting is local to it.
	b.Queue(relaxedSettings)
	b.Queue(sql, args...)
	br := s.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	var tag pgconn.CommandTag
	if err == nil {
		tag, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// relaxedQuery is relaxedExec for a statement with rows, read by scan.
func (s *Store) relaxedQuery(ctx context.Context, scan func(pgx.Rows) error, sql string, args ...any) error {
	b := &pgx.Batch{}
	b.Queue(relaxedSettings)
	b.Queue(sql, args...)
	br := s.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			err = scan(rows)
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// The coalesced claims and answers (claimBatch, completeBatch), run with
// cached generic plans (see relaxedExec).
const (
	sqlClaimBatch = `INSERT INTO idempotency_keys (tenant, principal, key, request_hash, created_at)
		SELECT t, p, k, h, coalesce(c, now())
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[]) AS u(t, p, k, h, c)
		ON CONFLICT (tenant, principal, key) DO NOTHING
		RETURNING tenant, principal, key`
	sqlCompleteBatch = `UPDATE idempotency_keys AS i SET status = u.s, body = u.b
		FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bytea[]) AS u(t, p, k, s, b)
		WHERE i.tenant = u.t AND i.principal = u.p AND i.key = u.k
		RETURNING i.tenant, i.principal, i.key`
)

// relaxedSettings is the first statement of relaxedExec's and
// relaxedQuery's batches: settings local to its implicit transaction. The
// commit does not wait for the WAL flush, and the statement gets a cached
// generic plan priced to keep its index (see hotReads): every statement
// given to them reads idempotency_keys by its primary key, and planning
// each for its arguments cost more than running it.
const relaxedSettings = `SELECT set_config('synchronous_commit', 'off', true),
	set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_seqscan', 'off', true)`

// Claim implements service.IdempotencyStore. It inserts the entry unless
// one exists and then reads the existing one; the primary key makes it
// race-free: of concurrent Claims of one key exactly one returns
// (StoredResponse{}, true). The others return the stored entry, with
// Status 0 and a nil Body while the first request runs. A zero now is the
// database's current time. A running entry of the same request older than
// StaleClaimAfter is taken over: (StoredResponse{}, true) again.
//
// Concurrent claims go in one INSERT (claimBatch); a key found taken is
// read by itself.
func (s *Store) Claim(ctx context.Context, k service.IdempotencyKey, requestHash []byte, now time.Time) (service.StoredResponse, bool, error) {
	won, err := s.claims.do(ctx, claimItem{k: k, hash: requestHash, now: now})
	if err != nil {
		return service.StoredResponse{}, false, fmt.Errorf("claim idempotency key: %w", translate(err))
	}
	if won {
		return service.StoredResponse{}, true, nil
	}
	for range claimAttempts {
		var r service.StoredResponse
		err = s.pool.QueryRow(ctx, `SELECT request_hash, status, body FROM idempotency_keys
			WHERE tenant = $1 AND principal = $2 AND key = $3`, k.Tenant, k.Principal, k.Key).Scan(&r.RequestHash, &r.Status, &r.Body)
		if errors.Is(err, pgx.ErrNoRows) {
			// Released or purged since the insert: claim it again.
			tag, err := s.relaxedExec(ctx, `INSERT INTO idempotency_keys (tenant, principal, key, request_hash, created_at)
				VALUES ($1, $2, $3, $4, coalesce($5, now())) ON CONFLICT (tenant, principal, key) DO NOTHING`,
				k.Tenant, k.Principal, k.Key, requestHash, nullTime(now))
			if err != nil {
				return service.StoredResponse{}, false, fmt.Errorf("claim idempotency key: %w", translate(err))
			}
			if tag.RowsAffected() == 1 {
				return service.StoredResponse{}, true, nil
			}
			continue
		}
		if err != nil {
			return service.StoredResponse{}, false, fmt.Errorf("claim idempotency key: %w", err)
		}
		if r.Status == 0 && bytes.Equal(r.RequestHash, requestHash) {
			tag, err := s.relaxedExec(ctx, `UPDATE idempotency_keys SET created_at = coalesce($5, now())
				WHERE tenant = $1 AND principal = $2 AND key = $3 AND status = 0 AND request_hash = $4
				  AND created_at < coalesce($5, now()) - make_interval(secs => $6)`,
				k.Tenant, k.Principal, k.Key, requestHash, nullTime(now), StaleClaimAfter.Seconds())
			if err != nil {
				return service.StoredResponse{}, false, fmt.Errorf("claim idempotency key: take over a stale claim: %w", translate(err))
			}
			if tag.RowsAffected() == 1 {
				return service.StoredResponse{}, true, nil
			}
		}
		return r, false, nil
	}
	return service.StoredResponse{}, false, fmt.Errorf("claim idempotency key: entry vanished %d times in a row", claimAttempts)
}

type claimItem struct {
	k    service.IdempotencyKey
	hash []byte
	now  time.Time
}

// claimBatch inserts the claims of items in one statement and tells which
// were inserted. A key repeated within items is inserted once, for its
// first item.
func (s *Store) claimBatch(ctx context.Context, items []claimItem) ([]bool, error) {
	var tenants, principals, keys []string
	var hashes [][]byte
	var nows []*time.Time
	first := map[service.IdempotencyKey]int{}
	for i, it := range items {
		if _, dup := first[it.k]; dup {
			continue
		}
		first[it.k] = i
		tenants, principals, keys = append(tenants, it.k.Tenant), append(principals, it.k.Principal), append(keys, it.k.Key)
		hashes = append(hashes, it.hash)
		nows = append(nows, nullTime(it.now))
	}
	won := make([]bool, len(items))
	err := s.relaxedQuery(ctx, markKeys(first, won), sqlClaimBatch, tenants, principals, keys, hashes, nows)
	if err != nil {
		return nil, err
	}
	return won, nil
}

// markKeys returns a scan of rows of (tenant, principal, key) that sets
// marks[i] for the item i that first names each key returned.
func markKeys(first map[service.IdempotencyKey]int, marks []bool) func(pgx.Rows) error {
	return func(rows pgx.Rows) error {
		for rows.Next() {
			var k service.IdempotencyKey
			if err := rows.Scan(&k.Tenant, &k.Principal, &k.Key); err != nil {
				return err
			}
			if i, ok := first[k]; ok {
				marks[i] = true
			}
		}
		return rows.Err()
	}
}

// Complete implements service.IdempotencyStore. status must be positive
// (0 means running); a nil body is stored as NULL and comes back nil.
// domain.ErrNotFound when the key is not claimed (released or purged).
// Concurrent answers go in one UPDATE (completeBatch).
func (s *Store) Complete(ctx context.Context, k service.IdempotencyKey, status int, body []byte) error {
	if status <= 0 {
		return domain.Errorf(domain.CodeInvalid, "complete idempotency key: status %d", status)
	}
	found, err := s.completes.do(ctx, completeItem{k: k, status: status, body: body})
	if err != nil {
		return fmt.Errorf("complete idempotency key: %w", translateIdentity(err))
	}
	if !found {
		return fmt.Errorf("complete idempotency key: %w", domain.ErrNotFound)
	}
	return nil
}

type completeItem struct {
	k      service.IdempotencyKey
	status int
	body   []byte
}

// completeBatch stores the answers of items in one statement and tells
// which keys were found. A key repeated within items is updated by itself
// after the batch, in order.
func (s *Store) completeBatch(ctx context.Context, items []completeItem) ([]bool, error) {
	var tenants, principals, keys []string
	var statuses []int32
	var bodies [][]byte
	first := map[service.IdempotencyKey]int{}
	var dups []int
	for i, it := range items {
		if _, dup := first[it.k]; dup {
			dups = append(dups, i)
			continue
		}
		first[it.k] = i
		tenants, principals, keys = append(tenants, it.k.Tenant), append(principals, it.k.Principal), append(keys, it.k.Key)
		statuses, bodies = append(statuses, int32(it.status)), append(bodies, it.body)
	}
	found := make([]bool, len(items))
	err := s.relaxedQuery(ctx, markKeys(first, found), sqlCompleteBatch, tenants, principals, keys, statuses, bodies)
	if err != nil {
		return nil, err
	}
	for _, i := range dups {
		it := items[i]
		tag, err := s.relaxedExec(ctx,
			`UPDATE idempotency_keys SET status = $4, body = $5 WHERE tenant = $1 AND principal = $2 AND key = $3`,
			it.k.Tenant, it.k.Principal, it.k.Key, it.status, it.body)
		if err != nil {
			return nil, err
		}
		found[i] = tag.RowsAffected() == 1
	}
	return found, nil
}

// Release implements service.IdempotencyStore. It forgets the entry only
// while it is running (Status 0): a completed answer stays. Releasing an
// unknown or completed key does nothing and is no error, so that failure
// paths may call it unconditionally.
func (s *Store) Release(ctx context.Context, k service.IdempotencyKey) error {
	_, err := s.relaxedExec(ctx, `DELETE FROM idempotency_keys WHERE tenant = $1 AND principal = $2 AND key = $3 AND status = 0`,
		k.Tenant, k.Principal, k.Key)
	if err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}

// Purge implements service.IdempotencyStore: it deletes the entries,
// running or completed, created before cutoff.
func (s *Store) Purge(ctx context.Context, cutoff time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE created_at < $1`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("purge idempotency keys: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// idleSeconds stores a timeout in whole seconds, rounding up so that a
// positive timeout never becomes 0 (never); a negative one is 0.
func idleSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	n := int64(d / time.Second)
	if d%time.Second != 0 {
		n++
	}
	return n
}

// TouchSession implements service.ActivityStore: it inserts or replaces
// the session's row, even with an older LastActivity, for the scheduler
// corrects the tracker from the log, which is the truth. IdleAfter is kept
// in whole seconds, rounded up; a negative one is 0.
func (s *Store) TouchSession(ctx context.Context, o service.OpenSession) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO open_sessions (tenant, guid, last_activity, idle_after_s, idle_at)
		VALUES ($1, $2, $3, $4, CASE WHEN $4::bigint > 0 THEN $3::timestamptz + $4::bigint * interval '1 second' END)
		ON CONFLICT (tenant, guid) DO UPDATE
		SET last_activity = EXCLUDED.last_activity, idle_after_s = EXCLUDED.idle_after_s, idle_at = EXCLUDED.idle_at`,
		o.Tenant, o.GUID, o.LastActivity, idleSeconds(o.IdleAfter))
	if err != nil {
		return fmt.Errorf("touch session %s/%s: %w", o.Tenant, o.GUID, translate(err))
	}
	return nil
}

// EndSession implements service.ActivityStore. Ending a session it does
// not track is no error.
func (s *Store) EndSession(ctx context.Context, tenant, guid string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM open_sessions WHERE tenant = $1 AND guid = $2`, tenant, guid); err != nil {
		return fmt.Errorf("end session %s/%s: %w", tenant, guid, err)
	}
	return nil
}

// IdleSessions implements service.ActivityStore: up to limit sessions with
// a timeout whose last activity plus timeout is before now, the one idle
// longest (earliest such time) first, then by tenant and guid. A limit below
// 1 returns none.
func (s *Store) IdleSessions(ctx context.Context, now time.Time, limit int) ([]service.OpenSession, error) {
	if limit < 1 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT tenant, guid, last_activity, idle_after_s FROM open_sessions
		WHERE idle_at < $1 ORDER BY idle_at, tenant, guid LIMIT $2`, now, limit)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (service.OpenSession, error) {
		var (
			o    service.OpenSession
			secs int64
		)
		if err := row.Scan(&o.Tenant, &o.GUID, &o.LastActivity, &secs); err != nil {
			return service.OpenSession{}, err
		}
		o.LastActivity = o.LastActivity.UTC()
		o.IdleAfter = time.Duration(secs) * time.Second
		return o, nil
	})
	if err != nil {
		return nil, fmt.Errorf("idle sessions: %w", err)
	}
	return out, nil
}
