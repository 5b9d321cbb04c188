-- +goose Up
-- A technician's single sign-on id, distinct from the e-mail address
-- (issue 17 item 2): an IdP whose NameID is an opaque id (an Entra object
-- id, an Okta user id) maps to the technician through it. Only the keyed
-- blind index of the lower-cased id is stored, as for e-mail addresses;
-- the id itself is sealed in technician.sso_id_set. One technician per id
-- in a tenant; NULL when none is set. Every node reads it here at each SAML
-- login, so a change made on one node holds on all at once.
ALTER TABLE technician_credentials ADD COLUMN sso_index bytea;

CREATE UNIQUE INDEX technician_credentials_sso ON technician_credentials (tenant, sso_index)
    WHERE sso_index IS NOT NULL;

-- +goose Down
DROP INDEX technician_credentials_sso;
ALTER TABLE technician_credentials DROP COLUMN sso_index;
