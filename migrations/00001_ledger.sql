-- +goose Up
-- The ledger: events, the per-tenant Merkle logs, checkpoints and subject keys.

-- vigil_app is the role the application needs at the least: it may read and
-- append the log, never change it. Operators grant it to the login role that
-- runs vigil (see docs/operations.md). Roles are cluster-wide, so create it
-- only when missing.
-- +goose StatementBegin
DO $$
BEGIN
    -- Checked first: CREATE ROLE needs CREATEROLE even when the role
    -- exists, and an owner without it must still be able to migrate once
    -- an administrator created the role.
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vigil_app') THEN
        CREATE ROLE vigil_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
-- +goose StatementEnd

CREATE TABLE events (
    position    bigint      PRIMARY KEY,
    id          uuid        NOT NULL UNIQUE,
    tenant      text        NOT NULL,
    stream      text        NOT NULL,
    version     bigint      NOT NULL,
    seq         bigint      NOT NULL,
    type        text        NOT NULL,
    schema      integer     NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    actor_kind  text        NOT NULL,
    actor_id    text        NOT NULL,
    -- json, not jsonb: the bytes are hashed into the log and must come back
    -- exactly as written.
    data        json        NOT NULL,
    -- the canonical encoding of the sealed (encrypted) personal fields
    sealed      bytea       NOT NULL,
    leaf_hash   bytea       NOT NULL,
    CONSTRAINT events_stream_version UNIQUE (tenant, stream, version),
    CONSTRAINT events_tenant_seq UNIQUE (tenant, seq)
);

-- The Merkle hashes of golang.org/x/mod/sumdb/tlog, per tenant, by stored
-- hash index.
CREATE TABLE merkle_hashes (
    tenant text   NOT NULL,
    idx    bigint NOT NULL,
    hash   bytea  NOT NULL,
    PRIMARY KEY (tenant, idx)
);

CREATE TABLE tenant_logs (
    tenant text   PRIMARY KEY,
    size   bigint NOT NULL
);

CREATE TABLE streams (
    tenant  text   NOT NULL,
    stream  text   NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (tenant, stream)
);

CREATE TABLE checkpoints (
    tenant     text        NOT NULL,
    size       bigint      NOT NULL,
    root       bytea       NOT NULL,
    note       text        NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, size)
);

-- One data key per subject; wrapped is set to NULL when the key is shredded.
CREATE TABLE subject_keys (
    key_id        text        PRIMARY KEY,
    tenant        text        NOT NULL,
    subject       text        NOT NULL,
    master_key_id text        NOT NULL,
    wrapped       bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    destroyed_at  timestamptz,
    CONSTRAINT subject_keys_subject UNIQUE (tenant, subject)
);

-- +goose StatementBegin
CREATE FUNCTION vigil_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'vigil: % on % is refused: the log is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER events_immutable BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER merkle_hashes_immutable BEFORE UPDATE OR DELETE ON merkle_hashes
    FOR EACH ROW EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER merkle_hashes_no_truncate BEFORE TRUNCATE ON merkle_hashes
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER checkpoints_immutable BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();

-- The application appends and reads the log; it never changes it.
GRANT SELECT, INSERT ON events, merkle_hashes, checkpoints TO vigil_app;
GRANT SELECT, INSERT, UPDATE ON tenant_logs, streams, subject_keys TO vigil_app;

-- +goose Down
DROP TABLE subject_keys, checkpoints, streams, tenant_logs, merkle_hashes, events;
DROP FUNCTION vigil_refuse_change();
