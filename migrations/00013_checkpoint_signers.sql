-- +goose Up
-- The checkpoint verifier keys the log accepts. A process whose signing key
-- is not listed here refuses to sign: a CLI run from another folder, with
-- freshly generated keys, would otherwise fork the log's signatures for good.
-- The first key is pinned when the first checkpoint is signed (how = 'first'),
-- or, for a log that had checkpoints before this table existed, the key that
-- verifies the latest checkpoint of every tenant (how = 'adopted'); any other
-- only through `vigil keys rotate-signing` (how = 'rotation'), which first
-- records the new key in every tenant's log under the old key's signature.
CREATE TABLE checkpoint_signers (
    verifier_key text PRIMARY KEY,
    how          text NOT NULL CHECK (how IN ('first', 'adopted', 'rotation')),
    added_by     text NOT NULL DEFAULT '',
    added_at     timestamptz NOT NULL DEFAULT now()
);
-- One first key, however many processes race to pin it.
CREATE UNIQUE INDEX checkpoint_signers_one_first ON checkpoint_signers ((true)) WHERE how IN ('first', 'adopted');

CREATE TRIGGER checkpoint_signers_immutable BEFORE UPDATE OR DELETE ON checkpoint_signers
    FOR EACH ROW EXECUTE FUNCTION vigil_refuse_change();
CREATE TRIGGER checkpoint_signers_no_truncate BEFORE TRUNCATE ON checkpoint_signers
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_refuse_change();

GRANT SELECT, INSERT ON checkpoint_signers TO vigil_app;

-- +goose Down
DROP TABLE checkpoint_signers;
