-- +goose Up
-- Indexes for the reporting API's reads (package api/graphql): a technician
-- sees the sessions he holds or owns, so owner_id needs its own index next to
-- rpt_sessions_technician for the OR to stay an index read; lockouts are a
-- rare outcome among logins and are listed by time.
CREATE INDEX rpt_sessions_owner ON rpt_sessions (tenant, owner_id, created_at DESC) WHERE owner_id <> '';
CREATE INDEX rpt_logins_lockouts ON rpt_logins (tenant, occurred_at, position) WHERE outcome = 'locked_out';

-- +goose Down
DROP INDEX rpt_logins_lockouts;
DROP INDEX rpt_sessions_owner;
