package main

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	wmbus "github.com/vigilhq/vigil/adapters/watermill"
	"github.com/vigilhq/vigil/webhooks"
)

// openBus opens the watermill transport url names.
func openBus(ctx context.Context, url string, pool *pgxpool.Pool, log *slog.Logger) (eventBus, error) {
	return wmbus.Open(ctx, wmbus.Config{URL: url, Pool: pool, Logger: log})
}

// eventsBus publishes the webhooks dispatcher's messages on a watermill bus.
type eventsBus struct{ bus *wmbus.Bus }

// Publish implements webhooks.Publisher; the topic is the bus's own.
func (e eventsBus) Publish(ctx context.Context, _ string, msgs ...webhooks.Message) error {
	ids := make([]string, len(msgs))
	payloads := make([][]byte, len(msgs))
	meta := make([]map[string]string, len(msgs))
	for i, m := range msgs {
		ids[i], payloads[i], meta[i] = m.UUID, m.Payload, m.Metadata
	}
	return e.bus.PublishRaw(ctx, ids, payloads, meta)
}

// openEventsBus opens the bus committed events are published on
// (VIGIL_BUS, topic VIGIL_BUS_TOPIC).
func openEventsBus(ctx context.Context, cfg *Config, pool *pgxpool.Pool, log *slog.Logger) (*wmbus.Bus, error) {
	return wmbus.Open(ctx, wmbus.Config{URL: cfg.Bus, Pool: pool, Logger: log, Topic: cfg.BusTopic})
}
