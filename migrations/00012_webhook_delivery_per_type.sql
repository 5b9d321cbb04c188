-- +goose Up
-- One delivery per (subscription, event, delivered type), not per
-- (subscription, event): a session.closed event is delivered both as
-- session.closed and as its summary session.ended (session.created as
-- session.created and session.started), and a subscription naming both
-- must receive both. The old index made the second insert conflict, and
-- the fan-out's ON CONFLICT DO NOTHING dropped it without a word.
DROP INDEX webhook_deliveries_event;
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (subscription_id, event_id, event_type) WHERE event_id IS NOT NULL;

-- +goose Down
-- Keeps one delivery per (subscription, event) so the old index can return:
-- the summary deliveries (session.started, session.ended) of events also
-- delivered under their own type go.
DELETE FROM webhook_deliveries d USING webhook_deliveries o
    WHERE d.event_id IS NOT NULL AND d.subscription_id = o.subscription_id AND d.event_id = o.event_id
      AND d.event_type IN ('session.started', 'session.ended') AND o.event_type NOT IN ('session.started', 'session.ended');
DROP INDEX webhook_deliveries_event;
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (subscription_id, event_id) WHERE event_id IS NOT NULL;
