package main

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	wmbus "github.com/vigilhq/vigil/adapters/watermill"
	"github.com/vigilhq/vigil/webhooks"
)

// openBus opens the relay events' watermill transport cfg.Bus names, its
// topic and durable consumer named after cfg.BusPrefix.
func openBus(ctx context.Context, cfg *Config, pool *pgxpool.Pool, log *slog.Logger) (eventBus, error) {
	return wmbus.Open(ctx, wmbus.Config{URL: cfg.Bus, Pool: pool, Logger: log, Prefix: cfg.BusPrefix})
}

// busTopic is VIGIL_BUS_TOPIC, by default "<VIGIL_BUS_PREFIX>.events": two
// deployments with their own prefixes publish on topics of their own.
func (c *Config) busTopic() string {
	if c.BusTopic != "" {
		return c.BusTopic
	}
	prefix := c.BusPrefix
	if prefix == "" {
		prefix = wmbus.DefaultPrefix
	}
	return prefix + ".events"
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
// (VIGIL_BUS, topic VIGIL_BUS_TOPIC). It only publishes: the subscribers
// are outside Vigil, and no durable consumer is made for them.
func openEventsBus(ctx context.Context, cfg *Config, pool *pgxpool.Pool, log *slog.Logger) (*wmbus.Bus, error) {
	return wmbus.Open(ctx, wmbus.Config{URL: cfg.Bus, Pool: pool, Logger: log, Prefix: cfg.BusPrefix, Topic: cfg.busTopic()})
}
