-- +goose Up
-- CRM webhooks (package webhooks). Subscriptions hold their signing secrets
-- sealed (ledger.Sealer.SealSecret under the tenant's non-personal
-- "webhook-secrets" subject); deliveries hold the payload, sealed under the
-- data subject of the event's stream when it carries personal data, and the
-- list of every subject whose data it carries, so that erasure can purge it.

CREATE TABLE webhook_subscriptions (
    id              uuid        PRIMARY KEY,
    tenant          text        NOT NULL,
    url             text        NOT NULL,
    event_types     text[]      NOT NULL,
    group_id        text        NOT NULL DEFAULT '',
    exclude_chat    boolean     NOT NULL DEFAULT false,
    description     text        NOT NULL DEFAULT '',
    secret          bytea       NOT NULL,
    previous_secret bytea,
    previous_until  timestamptz,
    state           text        NOT NULL CONSTRAINT webhook_subscriptions_state CHECK (state IN ('active', 'disabled', 'deleted')),
    disabled_reason text        NOT NULL DEFAULT '',
    from_position   bigint      NOT NULL, -- events after this position are delivered
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX webhook_subscriptions_tenant ON webhook_subscriptions (tenant) WHERE state <> 'deleted';

-- One row per (subscription, event): its id is the webhook-id of every
-- attempt. Workers take due rows with FOR UPDATE SKIP LOCKED and lease them
-- by moving next_attempt_at forward.
CREATE TABLE webhook_deliveries (
    id              uuid        PRIMARY KEY,
    tenant          text        NOT NULL,
    subscription_id uuid        NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_id        uuid,                 -- NULL for test events
    event_type      text        NOT NULL,
    position        bigint      NOT NULL DEFAULT 0,
    payload         bytea,                -- NULL once expired or purged
    seal_subject    text        NOT NULL DEFAULT '', -- '' when the payload is not sealed
    subjects        text[]      NOT NULL DEFAULT '{}',
    state           text        NOT NULL CONSTRAINT webhook_deliveries_state CHECK (state IN ('pending', 'delivered', 'dead', 'purged')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    expires_at      timestamptz NOT NULL,
    last_status     integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    last_latency_ms integer     NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (subscription_id, event_id) WHERE event_id IS NOT NULL;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_list ON webhook_deliveries (subscription_id, created_at DESC);
CREATE INDEX webhook_deliveries_subjects ON webhook_deliveries USING gin (subjects) WHERE payload IS NOT NULL;
CREATE INDEX webhook_deliveries_expiry ON webhook_deliveries (expires_at) WHERE payload IS NOT NULL;

-- The delivery log: one row per attempt.
CREATE TABLE webhook_attempts (
    delivery_id uuid        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    at          timestamptz NOT NULL,
    status_code integer     NOT NULL DEFAULT 0,
    latency_ms  integer     NOT NULL DEFAULT 0,
    error       text        NOT NULL DEFAULT '',
    PRIMARY KEY (delivery_id, attempt)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_subscriptions, webhook_deliveries, webhook_attempts TO vigil_app;

-- +goose Down
DROP TABLE webhook_attempts, webhook_deliveries, webhook_subscriptions;
