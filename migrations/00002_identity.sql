-- +goose Up
-- Identity and request state, kept outside the log: tenants, API keys,
-- technician credentials and login tokens, stored answers to idempotent
-- requests, and the last activity of open sessions for the idle scheduler.
-- Unlike the log these rows change, so vigil_app may update and delete them.

CREATE TABLE tenants (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    region     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- hash is SHA-256 of the key's secret part; the secret is never stored.
CREATE TABLE api_keys (
    id          text        PRIMARY KEY,
    tenant      text        NOT NULL REFERENCES tenants (id),
    role        text        NOT NULL
        CONSTRAINT api_keys_role CHECK (role IN ('admin', 'auditor', 'integration', 'ingest', 'relay')),
    hash        bytea       NOT NULL,
    description text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX api_keys_tenant ON api_keys (tenant);

-- email_index is a keyed blind index of the lower-cased address; the address
-- itself is only in the log, sealed. totp_secret and totp_pending are sealed
-- under the technician's data key. updated_at is when the password was set.
CREATE TABLE technician_credentials (
    tenant        text        NOT NULL,
    technician_id text        NOT NULL,
    email_index   bytea       NOT NULL,
    password_hash text        NOT NULL,
    totp_secret   bytea,
    totp_pending  bytea,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, technician_id),
    CONSTRAINT technician_credentials_email UNIQUE (tenant, email_index)
);

-- Login looks an address up in every tenant.
CREATE INDEX technician_credentials_email_index ON technician_credentials (email_index);

-- hash is SHA-256 of the token's secret part. ended_at is set on logout,
-- on the recorded expiry, or when the technician is disabled.
CREATE TABLE auth_tokens (
    id            text        PRIMARY KEY,
    tenant        text        NOT NULL,
    technician_id text        NOT NULL,
    hash          bytea       NOT NULL,
    scope         text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    ended_at      timestamptz
);

-- ExpiredTokens: live tokens by expiry.
CREATE INDEX auth_tokens_expiry ON auth_tokens (expires_at) WHERE ended_at IS NULL;
-- EndTechnicianTokens: a technician's live tokens.
CREATE INDEX auth_tokens_technician ON auth_tokens (tenant, technician_id) WHERE ended_at IS NULL;

-- One row per (credential, Idempotency-Key): status 0 and body NULL while
-- the first request runs, then its answer.
CREATE TABLE idempotency_keys (
    tenant       text        NOT NULL,
    principal    text        NOT NULL,
    key          text        NOT NULL,
    request_hash bytea       NOT NULL,
    status       integer     NOT NULL DEFAULT 0,
    body         bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, principal, key)
);

-- Purge forgets entries by age.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- idle_after_s is the session inactivity timeout at the last activity, in
-- seconds, 0 for never. idle_at is last_activity plus that timeout (NULL for
-- never), written with the row: timestamptz + interval is not immutable, so
-- it can be neither a generated column nor an index expression, and
-- IdleSessions needs it indexed.
CREATE TABLE open_sessions (
    tenant        text        NOT NULL,
    guid          text        NOT NULL,
    last_activity timestamptz NOT NULL,
    idle_after_s  bigint      NOT NULL CONSTRAINT open_sessions_idle_after CHECK (idle_after_s >= 0),
    idle_at       timestamptz,
    PRIMARY KEY (tenant, guid),
    CONSTRAINT open_sessions_idle_at CHECK ((idle_after_s = 0) = (idle_at IS NULL))
);

CREATE INDEX open_sessions_idle ON open_sessions (idle_at) WHERE idle_at IS NOT NULL;

GRANT SELECT, INSERT, UPDATE, DELETE ON tenants, api_keys, technician_credentials, auth_tokens,
    idempotency_keys, open_sessions TO vigil_app;

-- +goose Down
DROP TABLE open_sessions, idempotency_keys, auth_tokens, technician_credentials, api_keys, tenants;
