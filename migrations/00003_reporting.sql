-- +goose Up
-- Reporting tables projected from the ledger (package projections). Every
-- table can be rebuilt from position 0; none is the source of truth.
-- Personal values are kept sealed: *_ref columns hold a sealed reference
-- (ledger.EncodeSealedRef: the event id and the sealed field), opened at read
-- time, so that an erased subject reads as [erased] at once.

CREATE TABLE projection_positions (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE rpt_sessions (
    tenant             text        NOT NULL,
    guid               text        NOT NULL,
    status             text        NOT NULL, -- waiting, queued, active, closed
    queue              text        NOT NULL,
    channel            text        NOT NULL DEFAULT '',
    group_id           text        NOT NULL,
    technician_id      text        NOT NULL DEFAULT '', -- the technician holding it last
    owner_id           text        NOT NULL DEFAULT '', -- private queue owner
    platform           text        NOT NULL DEFAULT '',
    tracking_id        text        NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL,
    connected_at       timestamptz,
    picked_up_at       timestamptz,
    closed_at          timestamptz,
    waiting_s          double precision, -- customer connected → picked up
    pickup_s           double precision, -- created → picked up
    active_s           double precision, -- picked up → closed
    total_s            double precision, -- created → closed
    transfers          integer     NOT NULL DEFAULT 0,
    tools              text[]      NOT NULL DEFAULT '{}', -- privileged actions used, sorted
    closed_by          text        NOT NULL DEFAULT '',
    close_reason       text        NOT NULL DEFAULT '',
    recorded           boolean     NOT NULL DEFAULT false,
    customer_name_ref  bytea,
    customer_email_ref bytea,
    custom_fields_ref  bytea,
    customer_email_idx bytea,      -- keyed blind index of the lower-cased address
    created_position   bigint      NOT NULL,
    last_position      bigint      NOT NULL,
    PRIMARY KEY (tenant, guid)
);
CREATE INDEX rpt_sessions_created ON rpt_sessions (tenant, created_at DESC, guid);
CREATE INDEX rpt_sessions_technician ON rpt_sessions (tenant, technician_id, created_at DESC);
CREATE INDEX rpt_sessions_group ON rpt_sessions (tenant, group_id, created_at DESC);
CREATE INDEX rpt_sessions_email ON rpt_sessions (tenant, customer_email_idx) WHERE customer_email_idx IS NOT NULL;

-- One row per event of the log-like reports, keyed by the event's position.
CREATE TABLE rpt_chat (
    tenant      text        NOT NULL,
    position    bigint      PRIMARY KEY,
    guid        text        NOT NULL,
    event_id    uuid        NOT NULL,
    occurred_at timestamptz NOT NULL,
    sender      text        NOT NULL, -- technician or customer
    sender_id   text        NOT NULL DEFAULT '',
    text_ref    bytea
);
CREATE INDEX rpt_chat_session ON rpt_chat (tenant, guid, position);
CREATE INDEX rpt_chat_time ON rpt_chat (tenant, occurred_at, position);

CREATE TABLE rpt_notes (
    tenant        text        NOT NULL,
    position      bigint      PRIMARY KEY,
    guid          text        NOT NULL,
    event_id      uuid        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    technician_id text        NOT NULL,
    text_ref      bytea
);
CREATE INDEX rpt_notes_session ON rpt_notes (tenant, guid, position);

CREATE TABLE rpt_file_transfers (
    tenant           text        NOT NULL,
    position         bigint      PRIMARY KEY,
    guid             text        NOT NULL,
    event_id         uuid        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    direction        text        NOT NULL, -- sent (to the customer) or received
    technician_id    text        NOT NULL,
    consent_event_id uuid,
    name_ref         bytea,
    size             bigint      NOT NULL,
    md5              text        NOT NULL,
    sha256           text        NOT NULL
);
CREATE INDEX rpt_file_transfers_session ON rpt_file_transfers (tenant, guid, position);
CREATE INDEX rpt_file_transfers_time ON rpt_file_transfers (tenant, occurred_at, position);

-- Consents asked, given and refused, and every refused action.
CREATE TABLE rpt_consents (
    tenant           text        NOT NULL,
    position         bigint      PRIMARY KEY,
    guid             text        NOT NULL,
    event_id         uuid        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    kind             text        NOT NULL, -- requested, granted, denied, action_denied
    action           text        NOT NULL,
    technician_id    text        NOT NULL DEFAULT '',
    reason           text        NOT NULL DEFAULT '',
    request_event_id uuid
);
CREATE INDEX rpt_consents_session ON rpt_consents (tenant, guid, position);
CREATE INDEX rpt_consents_time ON rpt_consents (tenant, occurred_at, position);

-- Privileged actions with the consent each relied on.
CREATE TABLE rpt_actions (
    tenant           text        NOT NULL,
    position         bigint      PRIMARY KEY,
    guid             text        NOT NULL,
    event_id         uuid        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    type             text        NOT NULL,
    action           text        NOT NULL,
    technician_id    text        NOT NULL,
    consent_event_id uuid
);
CREATE INDEX rpt_actions_session ON rpt_actions (tenant, guid, position);

-- Logins, failures, lockouts, unlocks and logouts.
CREATE TABLE rpt_logins (
    tenant        text        NOT NULL,
    position      bigint      PRIMARY KEY,
    technician_id text        NOT NULL DEFAULT '', -- '' for an unknown user
    event_id      uuid        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    outcome       text        NOT NULL, -- succeeded, failed, locked_out, unlocked, logged_out
    reason        text        NOT NULL DEFAULT '',
    ip_ref        bytea
);
CREATE INDEX rpt_logins_time ON rpt_logins (tenant, occurred_at, position);
CREATE INDEX rpt_logins_technician ON rpt_logins (tenant, technician_id, position);

-- Per technician and UTC day.
CREATE TABLE rpt_technician_daily (
    tenant         text             NOT NULL,
    technician_id  text             NOT NULL,
    day            date             NOT NULL,
    sessions       integer          NOT NULL DEFAULT 0, -- picked up (or received by transfer) that day
    pickup_s_sum   double precision NOT NULL DEFAULT 0,
    pickup_n       integer          NOT NULL DEFAULT 0,
    duration_s_sum double precision NOT NULL DEFAULT 0, -- sessions closed that day
    duration_n     integer          NOT NULL DEFAULT 0,
    transfers      integer          NOT NULL DEFAULT 0, -- handed to someone else
    PRIMARY KEY (tenant, technician_id, day)
);

CREATE TABLE rpt_recordings (
    tenant        text        NOT NULL,
    guid          text        NOT NULL,
    recording_id  text        NOT NULL,
    technician_id text        NOT NULL DEFAULT '',
    state         text        NOT NULL, -- recording, stopped, stored, failed
    started_at    timestamptz,
    stopped_at    timestamptz,
    stored_at     timestamptz,
    object_key    text        NOT NULL DEFAULT '',
    content_type  text        NOT NULL DEFAULT '',
    size          bigint,
    md5           text        NOT NULL DEFAULT '',
    sha256        text        NOT NULL DEFAULT '',
    failure       text        NOT NULL DEFAULT '',
    views         integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, guid, recording_id)
);

-- The GDPR subject index: every position whose event carries personal data
-- of a subject, and the reporting rows that hold it.
CREATE TABLE rpt_subject_index (
    tenant   text   NOT NULL,
    subject  text   NOT NULL,
    position bigint NOT NULL,
    tbl      text   NOT NULL, -- the reporting table holding the sealed value ('' for the log only)
    PRIMARY KEY (tenant, subject, position, tbl)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON projection_positions, rpt_sessions, rpt_chat, rpt_notes,
    rpt_file_transfers, rpt_consents, rpt_actions, rpt_logins, rpt_technician_daily, rpt_recordings,
    rpt_subject_index TO vigil_app;

-- +goose Down
DROP TABLE rpt_subject_index, rpt_recordings, rpt_technician_daily, rpt_logins, rpt_actions,
    rpt_consents, rpt_file_transfers, rpt_notes, rpt_chat, rpt_sessions, projection_positions;
