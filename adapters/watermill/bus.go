// Package watermill carries the relay's events over a watermill transport:
// PostgreSQL tables through watermill-sql (the default, in the main
// database) or NATS JetStream (in watermill-nats' message format). Both
// persist the messages, so events published while no backend subscribes are delivered
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
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/vigilhq/vigil/relay"
)

// DefaultPrefix is the deployment prefix of the bus's fixed names when
// Config.Prefix is empty.
const DefaultPrefix = "vigil"

// RelayTopic returns the topic of the relay's events for a deployment
// prefix: "vigil_relay_events" for DefaultPrefix.
func RelayTopic(prefix string) string { return prefix + "_relay_events" }

// ConsumerGroup returns the name of the backend's durable subscription
// (the watermill-sql consumer group, the JetStream durable consumer) for a
// deployment prefix: "vigil_backend" for DefaultPrefix.
func ConsumerGroup(prefix string) string { return prefix + "_backend" }

// StreamName returns the JetStream stream that holds topic: the topic with
// every character a stream name may not hold (dots, wildcards, spaces,
// path separators, anything outside letters, digits, '-' and '_') turned
// into '_', so "vigil.events" is kept in the stream "vigil_events". The
// topic itself stays the stream's subject.
func StreamName(topic string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, topic)
}

// validPrefix reports whether prefix can begin stream, consumer and table
// names on every transport.
func validPrefix(prefix string) bool {
	return prefix != "" && len(prefix) <= 64 && StreamName(prefix) == prefix
}

// validSubject reports whether topic is a literal NATS subject: tokens of
// printable characters separated by single dots, no wildcards.
func validSubject(topic string) bool {
	if topic == "" || len(topic) > 255 {
		return false
	}
	for _, tok := range strings.Split(topic, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
		for _, r := range tok {
			if r <= ' ' || r == 0x7f || r == '*' || r == '>' {
				return false
			}
		}
	}
	return true
}

// Config selects and tunes the transport.
type Config struct {
	// URL is "postgres" (or empty) for watermill-sql over Pool, or a
	// nats:// URL for JetStream.
	URL string
	// Pool is the main database, required for the PostgreSQL transport.
	Pool *pgxpool.Pool
	// Logger receives the transport's warnings (default slog.Default()).
	Logger *slog.Logger
	// Prefix begins the bus's fixed names: the relay's topic (and its
	// stream) and the durable consumer, so that several deployments can
	// share one NATS server or database. Letters, digits, '-' and '_'
	// (default DefaultPrefix).
	Prefix string
	// Topic overrides RelayTopic(Prefix); on NATS it is the subject and
	// StreamName(Topic) the stream.
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
	topic   string
	group   string
	publish func(ctx context.Context, msgs ...*message.Message) error
	sub     message.Subscriber
	log     *slog.Logger
	closer  []func() error

	// JetStream only: the stream, the durable consumer's settings (the
	// consumer is created by Subscribe, so a bus that only publishes
	// leaves none behind) and the delay before a refused message returns.
	stream   jetstream.Stream
	consumer jetstream.ConsumerConfig
	retry    time.Duration
}

var _ relay.Publisher = (*Bus)(nil)

// quietOnCancel logs at debug level the errors watermill reports for a
// cancelled context: the SQL subscriber's poll, interrupted when serve
// stops, was logged as an ERROR at every shutdown ("could not commit tx
// for querying message … context canceled"). Other errors pass unchanged.
type quietOnCancel struct{ wm.LoggerAdapter }

func (l quietOnCancel) Error(msg string, err error, fields wm.LogFields) {
	if errors.Is(err, context.Canceled) {
		l.LoggerAdapter.Debug(msg, fields.Add(wm.LogFields{"err": err}))
		return
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

func (l quietOnCancel) With(fields wm.LogFields) wm.LoggerAdapter {
	return quietOnCancel{l.LoggerAdapter.With(fields)}
}

// Open connects to the transport cfg.URL names and prepares the topic
// (tables, or the JetStream stream). It returns an error for an unknown
// scheme, an invalid prefix or topic, or an unreachable transport. The
// durable consumer is made by Subscribe, not by Open.
func Open(ctx context.Context, cfg Config) (*Bus, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if !validPrefix(cfg.Prefix) {
		return nil, fmt.Errorf("watermill: bus prefix %q: want letters, digits, '-' or '_'", cfg.Prefix)
	}
	if cfg.Topic == "" {
		cfg.Topic = RelayTopic(cfg.Prefix)
	}
	if cfg.AckDeadline == 0 {
		cfg.AckDeadline = 30 * time.Second
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = time.Second
	}
	logger := quietOnCancel{wm.NewSlogLogger(cfg.Logger)}
	group := ConsumerGroup(cfg.Prefix)
	b := &Bus{topic: cfg.Topic, group: group, log: cfg.Logger}
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
			ConsumerGroup: group, AckDeadline: &ack, ResendInterval: cfg.RetryDelay,
			PollInterval: 200 * time.Millisecond, SchemaAdapter: schema,
			OffsetsAdapter: wmsql.DefaultPostgreSQLOffsetsAdapter{}, InitializeSchema: true,
		}, logger)
		if err != nil {
			return nil, fmt.Errorf("watermill sql subscriber: %w", err)
		}
		if err := sub.SubscribeInitialize(cfg.Topic); err != nil {
			return nil, fmt.Errorf("watermill sql schema: %w", err)
		}
		b.publish = func(_ context.Context, msgs ...*message.Message) error { return pub.Publish(b.topic, msgs...) }
		b.sub = sub
		b.closer = append(b.closer, pub.Close, sub.Close)
	case strings.HasPrefix(cfg.URL, "nats://") || strings.HasPrefix(cfg.URL, "tls://"):
		if !validSubject(cfg.Topic) {
			return nil, fmt.Errorf("watermill: topic %q is not a NATS subject (dot-separated tokens, no spaces or wildcards)", cfg.Topic)
		}
		nc, err := nats.Connect(cfg.URL, nats.Name("vigil"), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("nats: %w", err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("jetstream: %w", err)
		}
		sc := streamConfig(cfg.Topic)
		st, err := js.CreateOrUpdateStream(ctx, sc)
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("jetstream stream %s (topic %s): %w", sc.Name, cfg.Topic, err)
		}
		b.stream = st
		b.consumer = jetstream.ConsumerConfig{
			Name: group, Durable: group, AckPolicy: jetstream.AckExplicitPolicy, AckWait: cfg.AckDeadline,
			DeliverPolicy: jetstream.DeliverAllPolicy, MaxAckPending: 1, // in order, like the SQL subscriber: a redelivery never overtakes
		}
		// The watermill publisher would publish on the stream's name as
		// subject; publishing here keeps the topic the subject, with the
		// same headers its subscriber reads.
		marshal := &wmnats.NATSMarshaler{}
		b.publish = func(ctx context.Context, msgs ...*message.Message) error {
			for _, m := range msgs {
				nm, err := marshal.Marshal(b.topic, m)
				if err != nil {
					return err
				}
				if _, err := js.PublishMsg(ctx, nm, jetstream.WithExpectStream(sc.Name)); err != nil {
					return fmt.Errorf("publish %s: %w", b.topic, err)
				}
			}
			return nil
		}
		b.retry = cfg.RetryDelay
		b.closer = append(b.closer, func() error { nc.Close(); return nil })
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
		Name: StreamName(topic), Subjects: []string{topic}, Storage: jetstream.FileStorage,
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
	return b.publish(ctx, msg)
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
	return b.publish(ctx, msgs...)
}

// Subscribe delivers the topic's messages to handle until ctx ends, in
// order, from the durable consumer group (ConsumerGroup of the prefix, which
// on NATS it creates and leaves in place for the next subscriber): a nil
// answer acknowledges the message, an error has it redelivered after the
// retry delay. It returns nil when ctx ends, or the subscription error.
func (b *Bus) Subscribe(ctx context.Context, handle func(ctx context.Context, payload []byte) error) error {
	if b.stream != nil {
		return b.subscribeJetStream(ctx, handle)
	}
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

// subscribeJetStream is Subscribe on NATS. It pulls from the durable
// consumer itself rather than through watermill's subscriber, which may
// drop the acknowledgement of a handled message when ctx ends at that
// moment (the message then returns only after the ack deadline): here a
// handled message is acknowledged before Subscribe returns, and one
// pulled but not handled is handed back at once.
func (b *Bus) subscribeJetStream(ctx context.Context, handle func(ctx context.Context, payload []byte) error) error {
	c, err := b.stream.CreateOrUpdateConsumer(ctx, b.consumer)
	if err != nil {
		return fmt.Errorf("jetstream consumer %s: %w", b.consumer.Name, err)
	}
	it, err := c.Messages()
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", b.topic, err)
	}
	defer it.Stop()
	defer context.AfterFunc(ctx, it.Drain)()
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", b.topic, err)
		}
		id := msg.Headers().Get(wmnats.WatermillUUIDHdr)
		if ctx.Err() != nil {
			_ = msg.Nak() // pulled after the end: the next subscriber's
			continue
		}
		if err := handle(ctx, msg.Data()); err != nil {
			b.log.Warn("relay event: will retry", "id", id, "err", err)
			if err := msg.NakWithDelay(b.retry); err != nil {
				b.log.Warn("relay event: nak", "id", id, "err", err)
			}
			continue
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err = msg.DoubleAck(actx)
		cancel()
		if err != nil {
			b.log.Warn("relay event: ack lost, it will be redelivered", "id", id, "err", err)
		}
	}
}

// Close closes the transport's connections.
func (b *Bus) Close() error {
	var errs []error
	for _, c := range b.closer {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}
