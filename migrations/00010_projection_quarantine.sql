-- +goose Up
-- Events a projection could not apply and set aside so that it goes on with
-- the rest of the log (projections.Runner): one tenant's unprojectable event
-- must never stop every tenant's reports. A row holds no personal data (the
-- event's sealed fields stay in the log); reason names the kind of problem
-- in words safe for any tenant (projectionStatus shows it), error is the
-- whole error, for operators. A rebuild of the projection clears its rows
-- and tries the events again.
CREATE TABLE projection_quarantine (
    projection     text        NOT NULL,
    position       bigint      NOT NULL,
    event_id       uuid        NOT NULL,
    tenant         text        NOT NULL,
    type           text        NOT NULL,
    reason         text        NOT NULL DEFAULT '',
    error          text        NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, position)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON projection_quarantine TO vigil_app;

-- +goose Down
DROP TABLE projection_quarantine;
