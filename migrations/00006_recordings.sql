-- +goose Up
-- Where each session recording's object is (service.RecordingIndex). A row
-- is written before the upload starts, so that playback finds a recording
-- by its id, erasure finds every object, and a crashed upload leaves a row
-- to clean up. No personal data: ids and an object key.
CREATE TABLE recording_objects (
    tenant       text        NOT NULL,
    recording_id text        NOT NULL,
    guid         text        NOT NULL,
    object_key   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, recording_id)
);
CREATE INDEX recording_objects_session ON recording_objects (tenant, guid);

GRANT SELECT, INSERT, UPDATE, DELETE ON recording_objects TO vigil_app;

-- +goose Down
DROP TABLE recording_objects;
