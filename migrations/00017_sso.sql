-- +goose Up
-- SAML single sign-on (issue 17).
--
-- The replay cache of SAML assertions, shared by every node: an assertion id
-- is inserted once when its login is accepted; a second insert of the same
-- id (on any node) is a replay and is refused. Rows are kept until the
-- assertion could no longer be accepted anyway (expires_at: its
-- NotOnOrAfter, bounded by the issue delay, plus the clock skew), then
-- purged by the scheduler.
CREATE TABLE saml_assertions (
    tenant       text        NOT NULL,
    assertion_id text        NOT NULL,
    expires_at   timestamptz NOT NULL,
    consumed_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, assertion_id)
);

CREATE INDEX saml_assertions_expiry ON saml_assertions (expires_at);

GRANT SELECT, INSERT, DELETE ON saml_assertions TO vigil_app;

-- The logins report tells password logins from SSO logins. Rows of
-- before this migration are all password logins; a rebuild recomputes them.
ALTER TABLE rpt_logins ADD COLUMN method text NOT NULL DEFAULT 'password';

-- +goose Down
ALTER TABLE rpt_logins DROP COLUMN method;
DROP TABLE saml_assertions;
