-- +goose Up
-- The writer's one-round-trip commit (adapters/postgres Store.Commit): the
-- writer sends its whole transaction in one pipelined batch, computed from
-- the head, tree sizes and stream versions it saw at its last commit, and
-- this function, run under the writer lock before the INSERTs, refuses the
-- batch when any of them moved (another process appended). The writer then
-- rolls back and commits the slow way, reading the state first.
--
-- Stream versions come from the events' (tenant, stream, version) index, so
-- the streams table, one more row to upsert per stream and commit, goes.
-- +goose StatementBegin
CREATE FUNCTION vigil_expect_state(p_head bigint, p_tenants text[], p_sizes bigint[],
        p_stream_tenants text[], p_streams text[], p_versions bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce((SELECT max(position) FROM events), 0) <> p_head THEN
        RAISE EXCEPTION 'vigil: the log head moved since the writer last saw it'
            USING ERRCODE = 'VG001';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_tenants, p_sizes) AS u(tenant, size)
               WHERE coalesce((SELECT l.size FROM tenant_logs l WHERE l.tenant = u.tenant), 0) <> u.size) THEN
        RAISE EXCEPTION 'vigil: a tenant log grew since the writer last saw it'
            USING ERRCODE = 'VG001';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_stream_tenants, p_streams, p_versions) AS u(tenant, stream, version)
               WHERE coalesce((SELECT max(e.version) FROM events e
                               WHERE e.tenant = u.tenant AND e.stream = u.stream), 0) <> u.version) THEN
        RAISE EXCEPTION 'vigil: a stream version moved since the writer last saw it'
            USING ERRCODE = 'VG001';
    END IF;
END
$$;
-- +goose StatementEnd

DROP TABLE streams;

-- +goose Down
CREATE TABLE streams (
    tenant  text   NOT NULL,
    stream  text   NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (tenant, stream)
);
INSERT INTO streams (tenant, stream, version)
    SELECT tenant, stream, max(version) FROM events GROUP BY tenant, stream;
GRANT SELECT, INSERT, UPDATE ON streams TO vigil_app;
DROP FUNCTION vigil_expect_state(bigint, text[], bigint[], text[], text[], bigint[]);
