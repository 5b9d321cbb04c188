-- +goose Up
-- GDPR erasure requests and retention state (package compliance). Like the
-- identity tables these rows change; none holds personal data: subjects are
-- named by their ids ("technician:<id>", "session:<guid>").

-- One row per erasure request; id is the compliance.erasure_requested
-- event's id. A worker claims a due pending row with FOR UPDATE SKIP LOCKED
-- and holds the lock while it erases, so that any number of processes may
-- run workers and a revocation waits for a running erasure, then fails.
CREATE TABLE erasure_requests (
    id               uuid        PRIMARY KEY,
    tenant           text        NOT NULL,
    subject          text        NOT NULL,
    scope            text        NOT NULL CONSTRAINT erasure_requests_scope CHECK (scope IN ('all', 'chat')),
    state            text        NOT NULL CONSTRAINT erasure_requests_state CHECK (state IN ('pending', 'done', 'revoked')),
    requested_by     text        NOT NULL DEFAULT '',
    requested_at     timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    revoked_at       timestamptz,
    done_at          timestamptz,
    attempts         integer     NOT NULL DEFAULT 0,
    last_error       text        NOT NULL DEFAULT '',
    receipt          text        -- the signed erasure receipt, once done
);
CREATE INDEX erasure_requests_due ON erasure_requests (due_at) WHERE state = 'pending';
CREATE INDEX erasure_requests_subject ON erasure_requests (tenant, subject);

-- Progress of a started erasure, written (and committed) apart from the
-- locked request row: a crash rolls the request back to pending but keeps
-- what was counted before anything was destroyed, so that the resumed run
-- reports the same counts. A request with progress can no longer be revoked.
CREATE TABLE erasure_progress (
    id               uuid        PRIMARY KEY, -- the request's id (no foreign key: the request row is locked while this is written)
    started_at       timestamptz NOT NULL,
    events_affected  bigint      NOT NULL,
    projection_rows  bigint      NOT NULL,
    recordings       bigint      NOT NULL,
    webhook_payloads bigint      NOT NULL,
    key_ids          text[]      NOT NULL DEFAULT '{}'
);

-- Retention: one row per session moved out of the reporting tables.
-- state is archived (the bundle is in the blob store) or purged (keys
-- shredded, bundle deleted).
CREATE TABLE retention_sessions (
    tenant       text        NOT NULL,
    guid         text        NOT NULL,
    state        text        NOT NULL CONSTRAINT retention_sessions_state CHECK (state IN ('archived', 'purged')),
    closed_at    timestamptz NOT NULL,
    object       text        NOT NULL DEFAULT '',
    sha256       text        NOT NULL DEFAULT '',
    event_count  bigint      NOT NULL DEFAULT 0,
    archived_at  timestamptz NOT NULL,
    purge_after  timestamptz NOT NULL,
    purged_at    timestamptz,
    PRIMARY KEY (tenant, guid)
);
CREATE INDEX retention_sessions_purge ON retention_sessions (purge_after) WHERE state = 'archived';

GRANT SELECT, INSERT, UPDATE, DELETE ON erasure_requests, erasure_progress, retention_sessions TO vigil_app;

-- +goose Down
DROP TABLE retention_sessions, erasure_progress, erasure_requests;
