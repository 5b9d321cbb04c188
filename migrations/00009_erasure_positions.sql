-- +goose Up
-- The log positions an erasure purged the projection rows of, kept so that
-- a rebuild of the projections, which projects the erased subjects' events
-- again, can purge the same rows again (compliance.PurgeAfterRebuild): the
-- subject index no longer names them once the erasure purged it.
ALTER TABLE erasure_progress ADD COLUMN positions bigint[] NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE erasure_progress DROP COLUMN positions;
