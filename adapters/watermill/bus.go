// Package watermill carries the relay's events over a watermill transport:
// PostgreSQL tables through watermill-sql (the default, in the main
// database) or NATS JetStream through watermill-nats. Both persist the
// messages, so events published while no backend subscribes are delivered
// when one returns. Delivery is at least once; the backend makes it
// effectively once with the event ids.
package watermill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	wm "github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigilhq/vigil/relay"
)

// Topic is the topic of the relay's events (and the JetStream stream's name).
const Topic = "vigil_relay_events"

// ConsumerGroup is the backend's durable subscription.
const ConsumerGroup = "vigil_backend"

// Config selects and tunes the transport.
type Config struct {
	// URL is "postgres" (or empty) for watermill-sql over Pool, or a
	// nats:// URL for JetStream.
	URL string
	// Pool is the main database, required for the PostgreSQL transport.
	Pool *pgxpool.Pool
	// Logger receives the transport's warnings (default slog.Default()).
	Logger *slog.Logger
	// Topic overrides Topic (tests use their own).
	Topic string
	// AckDeadline is how long a handler may take before the message is
	// redelivered (default 30 s).
	AckDeadline time.Duration
	// RetryDelay is how long a refused (nacked) message waits before its
	// redelivery (default 1 s).
	RetryDelay time.Duration
}

// Bus publishes and subscribes to the relay's events. It is safe for
// concurrent use.
type Bus struct {
	topic  string
	pub    message.Publisher
	sub    message.Subscriber
	log    *slog.Logger
	closer []func() error
}

var _ relay.Publisher = (*Bus)(nil)

// Open connects to the transport cfg.URL names and prepares the topic
// (tables or stream and durable consumer). It returns an error for an
// unknown scheme or an unreachable transport.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Topic == "" {
		cfg.Topic = Topic
	}
	if cfg.AckDeadline == 0 {
		cfg.AckDeadline = 30 * time.Second
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = time.Second
	}
	logger := wm.NewSlogLogger(cfg.Logger)
	b := &Bus{topic: cfg.Topic, log: cfg.Logger}
	switch {
	case cfg.URL == "" || cfg.URL == "postgres":
		if cfg.Pool == nil {
			return nil, errors.New("watermill: the postgres bus needs the database")
		}
		db := wmsql.BeginnerFromPgx(cfg.Pool)
		schema := wmsql.DefaultPostgreSQLSchema{SubscribeBatchSize: 100}
		pub, err := wmsql.NewPublisher(db, wmsql.PublisherConfig{SchemaAdapter: schema, AutoInitializeSchema: true}, logger)
		if err != nil {
			return nil, fmt.Errorf("watermill sql publisher: %w", err)
		}
		ack := cfg.AckDeadline
		sub, err := wmsql.NewSubscriber(db, wmsql.SubscriberConfig{
			ConsumerGroup: ConsumerGroup, AckDeadline: &ack, ResendInterval: cfg.RetryDelay,
			PollInterval: 200 * time.Millisecond, SchemaAdapter: schema,
			OffsetsAdapter: wmsql.DefaultPostgreSQLOffsetsAdapter{}, InitializeSchema: true,
		}, logger)
		if err != nil {
			return nil, fmt.Errorf("watermill sql subscriber: %w", err)
		}
		if err := sub.SubscribeInitialize(cfg.Topic); err != nil {
			return nil, fmt.Errorf("watermill sql schema: %w", err)
		}
		b.pub, b.sub = pub, sub
		b.closer = append(b.closer, pub.Close, sub.Close)
	case strings.HasPrefix(cfg.URL, "nats://") || strings.HasPrefix(cfg.URL, "tls://"):
		nc, err := nats.Connect(cfg.URL, nats.Name("vigil"), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("nats: %w", err)
		}
		b.closer = append(b.closer, func() error { nc.Close(); return nil })
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("jetstream: %w", err)
		}
		stream := streamConfig(cfg.Topic)
		st, err := js.CreateOrUpdateStream(ctx, stream)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("jetstream stream %s: %w", cfg.Topic, err)
		}
		consumer := jetstream.ConsumerConfig{
			Name: ConsumerGroup, Durable: ConsumerGroup, AckPolicy: jetstream.AckExplicitPolicy, AckWait: cfg.AckDeadline,
			DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 1, // in order, like the SQL subscriber: a redelivery never overtakes
		}
		if _, err := st.CreateOrUpdateConsumer(ctx, consumer); err != nil {
			nc.Close()
			return nil, fmt.Errorf("jetstream consumer: %w", err)
		}
		pub, err := wmjs.NewPublisher(wmjs.PublisherConfig{Conn: nc, Logger: logger, ConfigureStream: streamConfig})
		if err != nil {
			nc.Close()
			return nil, err
		}
		sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
			Conn: nc, Logger: logger, AckWaitTimeout: cfg.AckDeadline, ConfigureStream: streamConfig,
			ResourceInitializer: wmjs.ExistingConsumer(func(string, string) jetstream.ConsumerConfig { return consumer }, ConsumerGroup),
			NakDelay:            wmjs.NewStaticDelay(cfg.RetryDelay),
		})
		if err != nil {
			nc.Close()
			return nil, err
		}
		b.pub, b.sub = pub, sub
		b.closer = append([]func() error{sub.Close}, b.closer...)
	default:
		return nil, fmt.Errorf("watermill: unknown bus %q (want postgres or nats://host:port)", cfg.URL)
	}
	return b, nil
}

// streamConfig keeps the relay's events on disk for a week, whether or not
// the backend has read them (limits retention: a backend down for days
// still finds them).
func streamConfig(topic string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: topic, Subjects: []string{topic}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, MaxAge: 7 * 24 * time.Hour, Duplicates: 2 * time.Minute,
	}
}

// Publish implements relay.Publisher: the event's JSON form, with its id
// as the message id (JetStream also deduplicates on it for two minutes).
func (b *Bus) Publish(ctx context.Context, e relay.Event) error {
	payload, err := json.Marshal(e)
	if err != nil {
		return err
	}
	msg := message.NewMessage(e.ID, payload)
	msg.Metadata.Set("Nats-Msg-Id", e.ID)
	msg.SetContext(ctx)
	return b.pub.Publish(b.topic, msg)
}

// PublishRaw publishes messages with the given ids, payloads and metadata
// on the bus's topic: the event dispatcher's stream of committed events.
// The id is also the JetStream de-duplication id, so a redelivered event is
// stored once.
func (b *Bus) PublishRaw(ctx context.Context, ids []string, payloads [][]byte, metadata []map[string]string) error {
	msgs := make([]*message.Message, len(ids))
	for i, id := range ids {
		m := message.NewMessage(id, payloads[i])
		for k, v := range metadata[i] {
			m.Metadata.Set(k, v)
		}
		m.Metadata.Set("Nats-Msg-Id", id)
		m.SetContext(ctx)
		msgs[i] = m
	}
	return b.pub.Publish(b.topic, msgs...)
}

// Subscribe delivers the topic's messages to handle until ctx ends, in
// order, from the durable consumer group: a nil answer acknowledges the
// message, an error has it redelivered after the retry delay. It returns
// nil when ctx ends, or the subscription error.
func (b *Bus) Subscribe(ctx context.Context, handle func(ctx context.Context, payload []byte) error) error {
	msgs, err := b.sub.Subscribe(ctx, b.topic)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", b.topic, err)
	}
	for msg := range msgs {
		if err := handle(ctx, msg.Payload); err != nil {
			b.log.Warn("relay event: will retry", "id", msg.UUID, "err", err)
			msg.Nack()
			continue
		}
		msg.Ack()
	}
	return nil
}

// Close closes the transport's connections.
func (b *Bus) Close() error {
	var errs []error
	for _, c := range b.closer {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}
