-- +goose Up
-- Issue 18: the gateway registry, the P2P channel and Rescue Lens.

-- The registry of relay nodes (gateways). Like the identity tables it is
-- state, not history: rows change on every heartbeat; what changes in the
-- registry (a gateway registered, gone quiet, back) is also appended to the
-- log as tenant.gateway_* events. tenant is '' for a deployment gateway
-- (the relay inside serve) that serves every tenant of its region, or the
-- tenant of the relay key that registered it. load is the number of
-- connections the node held at its last heartbeat.
CREATE TABLE gateways (
    id             text        PRIMARY KEY,
    tenant         text        NOT NULL DEFAULT '',
    region         text        NOT NULL,
    public_addr    text        NOT NULL,
    udp_addr       text        NOT NULL DEFAULT '',
    capacity       integer     NOT NULL CHECK (capacity > 0),
    load           integer     NOT NULL DEFAULT 0 CHECK (load >= 0),
    healthy        boolean     NOT NULL DEFAULT true,
    registered_at  timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL,
    down_since     timestamptz
);
CREATE INDEX gateways_region ON gateways (region, healthy);

-- API keys of role media: the Rescue Lens media service's session manager.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role
    CHECK (role IN ('admin', 'auditor', 'integration', 'ingest', 'relay', 'media'));

-- Where a session's bytes went: the gateway the applet chose, the transport
-- that carried the session in the end ('' until reported; relayed, tcp or
-- udp), the milliseconds from the start of the P2P attempt to the
-- authenticated channel, the failure reason when it stayed relayed, and the
-- milliseconds the customer's camera was streamed through Lens.
ALTER TABLE rpt_sessions
    ADD COLUMN gateway_id  text   NOT NULL DEFAULT '',
    ADD COLUMN transport   text   NOT NULL DEFAULT '',
    ADD COLUMN p2p_ms      bigint,
    ADD COLUMN p2p_failure text   NOT NULL DEFAULT '',
    ADD COLUMN lens_ms     bigint NOT NULL DEFAULT 0;

-- One row per Lens conference: who held the session when it was created,
-- when it ran and how long the camera streamed (Lens minutes per session
-- and technician).
CREATE TABLE rpt_lens_conferences (
    tenant          text        NOT NULL,
    guid            text        NOT NULL,
    conference_id   text        NOT NULL,
    technician_id   text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    streaming_since timestamptz,
    stream_ms       bigint      NOT NULL DEFAULT 0,
    participants    integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, guid, conference_id)
);
CREATE INDEX rpt_lens_conferences_technician ON rpt_lens_conferences (tenant, technician_id, created_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON gateways, rpt_lens_conferences TO vigil_app;

-- +goose Down
DROP TABLE rpt_lens_conferences;
ALTER TABLE rpt_sessions DROP COLUMN gateway_id, DROP COLUMN transport, DROP COLUMN p2p_ms,
    DROP COLUMN p2p_failure, DROP COLUMN lens_ms;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_role;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role
    CHECK (role IN ('admin', 'auditor', 'integration', 'ingest', 'relay'));
DROP TABLE gateways;
