-- +goose Up
-- The declared duration of a stored recording (recording_stored's
-- duration_ms; null when the uploader declared none), for GraphQL.
ALTER TABLE rpt_recordings ADD COLUMN duration_ms bigint;

-- +goose Down
ALTER TABLE rpt_recordings DROP COLUMN duration_ms;
