-- +goose Up
-- What bounds password guessing, shared by every node.
--
-- totp_last_step is the time step (Unix time / 30) of the last TOTP code
-- accepted for the technician: a code of that step or an earlier one is a
-- replay and is refused, whichever node sees it.
ALTER TABLE technician_credentials ADD COLUMN totp_last_step bigint;

-- Failed logins per client address (an IPv4 address or an IPv6 /64) per
-- fixed window. address_key is a keyed blind index of the address: the
-- address itself is not stored.
CREATE TABLE login_address_failures (
    address_key  bytea       NOT NULL,
    window_start timestamptz NOT NULL,
    failures     integer     NOT NULL CONSTRAINT login_address_failures_count CHECK (failures >= 0),
    PRIMARY KEY (address_key, window_start)
);

CREATE INDEX login_address_failures_window ON login_address_failures (window_start);

-- The lockout of login names that have none of their own: e-mail addresses
-- of no technician (of the tenant named, '' when none was), so that they
-- lock out after as many failures as an account does. email_index is the
-- same keyed blind index as technician_credentials.email_index.
CREATE TABLE login_account_failures (
    tenant       text        NOT NULL,
    email_index  bytea       NOT NULL,
    failures     integer     NOT NULL CONSTRAINT login_account_failures_count CHECK (failures >= 0),
    locked_until timestamptz,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant, email_index)
);

CREATE INDEX login_account_failures_updated ON login_account_failures (updated_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON login_address_failures, login_account_failures TO vigil_app;

-- +goose Down
DROP TABLE login_account_failures, login_address_failures;
ALTER TABLE technician_credentials DROP COLUMN totp_last_step;
