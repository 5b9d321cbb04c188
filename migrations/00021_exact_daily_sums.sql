-- +goose Up
-- The daily sums of pickup and session seconds were double precision, and
-- a float sum depends on the order of its additions: the live projection
-- adds a batch's sum to the row, a rebuild cuts the log into other
-- batches, so the two differed in their last bits and `vigil rebuild
-- --check` found the table unequal to a rebuild. The projection now sums
-- whole microseconds and stores exact decimals. Existing sums are rounded
-- to the microsecond, which every exact sum of event times is; a `vigil
-- rebuild` recomputes them from the log.
ALTER TABLE rpt_technician_daily
    ALTER COLUMN pickup_s_sum TYPE numeric USING round(pickup_s_sum::numeric, 6),
    ALTER COLUMN duration_s_sum TYPE numeric USING round(duration_s_sum::numeric, 6);

-- +goose Down
ALTER TABLE rpt_technician_daily
    ALTER COLUMN pickup_s_sum TYPE double precision,
    ALTER COLUMN duration_s_sum TYPE double precision;
