package webhooks

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/projections"
)

// DispatcherName is the dispatcher's key in projection_positions.
const DispatcherName = "bus.dispatch"

// DefaultTopic is the watermill topic the dispatcher publishes to.
const DefaultTopic = "vigil.events"

// Dispatcher publishes every committed event's public face (PublicEvent,
// never a sealed field) to a watermill topic. It is a projection: run by a
// projections.Runner, it publishes a batch and then stores the batch's
// last position, so that a restart resumes after the last stored batch.
// A batch published but not yet stored is published again after a crash,
// with the same message ids (the event ids): consumers deduplicate on
// them (NATS JetStream does with Nats-Msg-Id).
//
// The bus is behind the Publisher port rather than watermill's
// message.Publisher: watermill/message cannot be built in this module until
// go.sum lists its dependencies (github.com/pkg/errors); adapters/watermill
// adapts a message.Publisher to it in a few lines (message.NewMessage(m.UUID,
// m.Payload), Metadata copied).
type Dispatcher struct {
	pub   Publisher
	topic string
}

var _ projections.Projection = (*Dispatcher)(nil)

// Message is one bus message: watermill's message.Message without the
// package.
type Message struct {
	// UUID is the message id: the event's id, the same on every redelivery.
	UUID     string
	Payload  []byte
	Metadata map[string]string
}

// Publisher publishes messages to a topic, all or nothing as far as the
// transport allows. It is safe for concurrent use.
type Publisher interface {
	Publish(ctx context.Context, topic string, msgs ...Message) error
}

// NewDispatcher returns a dispatcher publishing to topic (DefaultTopic
// when empty) with pub.
func NewDispatcher(pub Publisher, topic string) *Dispatcher {
	if topic == "" {
		topic = DefaultTopic
	}
	return &Dispatcher{pub: pub, topic: topic}
}

// Name implements projections.Projection.
func (d *Dispatcher) Name() string { return DispatcherName }

// Reset implements projections.Projection: nothing to delete; a rebuild
// publishes everything again with the same ids.
func (d *Dispatcher) Reset(ctx context.Context, tx pgx.Tx) error { return nil }

// Apply implements projections.Projection.
func (d *Dispatcher) Apply(ctx context.Context, tx pgx.Tx, events []domain.Event) error {
	msgs := make([]Message, 0, len(events))
	for _, e := range events {
		body, err := json.Marshal(Public(e))
		if err != nil {
			return err
		}
		msgs = append(msgs, Message{UUID: e.ID.String(), Payload: body, Metadata: map[string]string{
			"type": e.Type, "tenant": e.Tenant, "position": strconv.FormatInt(e.Position, 10)}})
	}
	if err := d.pub.Publish(ctx, d.topic, msgs...); err != nil {
		return fmt.Errorf("publish %d events to %s: %w", len(msgs), d.topic, err)
	}
	return nil
}
