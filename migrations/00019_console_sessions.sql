-- +goose Up
-- The web console's sign-in sessions (api/console), kept in PostgreSQL so
-- that any node behind the load balancer serves any session.
--
-- id_hash is SHA-256 of the cookie's identifying half; the cookie itself
-- is never stored. credential is the bearer credential the person signed in
-- with (an API key, or a technician token from the login), sealed with
-- AES-256-GCM under a key derived from the cookie's secret half: the row
-- alone opens nothing, and every request re-authenticates that credential,
-- so a revoked key, a disabled technician or an ended token ends the
-- console session at once on every node.
CREATE TABLE console_sessions (
    id_hash       bytea       PRIMARY KEY,
    tenant        text        NOT NULL,
    role          text        NOT NULL,
    technician_id text        NOT NULL DEFAULT '',
    credential    bytea       NOT NULL,
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);

CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON console_sessions TO vigil_app;

-- +goose Down
DROP TABLE console_sessions;
