package webhooks_test

// The dispatcher over the real watermill transports: watermill-sql on
// PostgreSQL and NATS JetStream (127.0.0.1:4222, started by .ci/run).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	wm "github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/projections"
	"github.com/vigilhq/vigil/webhooks"
)

// wmPublisher adapts a watermill message.Publisher to webhooks.Publisher,
// as adapters/watermill does: the message id is the event id, and
// Nats-Msg-Id carries it too so that JetStream deduplicates a redelivery.
// failOnce makes the first Publish fail after the messages went out: a
// crash between the publish and the stored position.
type wmPublisher struct {
	pub      message.Publisher
	mu       sync.Mutex
	failOnce bool
	failed   int // messages of the failed publish
}

func (p *wmPublisher) Publish(ctx context.Context, topic string, msgs ...webhooks.Message) error {
	out := make([]*message.Message, 0, len(msgs))
	for _, m := range msgs {
		wmsg := message.NewMessage(m.UUID, m.Payload)
		for k, v := range m.Metadata {
			wmsg.Metadata.Set(k, v)
		}
		wmsg.Metadata.Set("Nats-Msg-Id", m.UUID)
		wmsg.SetContext(ctx)
		out = append(out, wmsg)
	}
	if err := p.pub.Publish(topic, out...); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failOnce {
		p.failOnce, p.failed = false, len(msgs)
		return fmt.Errorf("the process died before storing its position")
	}
	return nil
}

var _ webhooks.Publisher = (*wmPublisher)(nil)

func uniqueTopic(t *testing.T) string {
	raw := make([]byte, 4)
	_, _ = rand.Read(raw)
	return "vigil_test_events_" + hex.EncodeToString(raw)
}

// dispatchScenario commits events with personal data, dispatches them
// through pub with one crash after a publish, restarts the dispatcher
// twice, and checks what sub received on topic. exactlyOnce says whether
// the transport deduplicates by message id.
func dispatchScenario(t *testing.T, e *env, topic string, pub message.Publisher, sub message.Subscriber, exactlyOnce bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	const sessions = 12
	for i := range sessions {
		g := fmt.Sprintf("bus%02d", i)
		s := domain.SessionStream(g)
		e.append(s, domain.SessionCreated{GUID: g, PIN: "123456", Queue: "q", GroupID: "g", CustomerName: "Private Person",
			CustomerEmail: "private@example.org", CustomFields: map[string]string{"case": "C-secret"}})
		e.append(s, domain.ChatMessage{From: "customer", Text: "a sealed chat line"})
	}
	st := e.ledger.Store()
	bus := &wmPublisher{pub: pub, failOnce: true}
	runner := func() *projections.Runner {
		return projections.NewRunner(e.db.Pool, st, projections.Options{Batch: 5}, webhooks.NewDispatcher(bus, topic))
	}
	if err := runner().CatchUp(ctx); err == nil {
		t.Fatal("the injected crash did not surface")
	}
	// A new process resumes at the stored position; then another one finds
	// nothing left to publish.
	for range 2 {
		if err := runner().CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := st.ReadAll(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if bus.failed != 5 {
		t.Fatalf("the crashed publish carried %d messages, want a batch of 5", bus.failed)
	}
	want := len(evs) + bus.failed
	if exactlyOnce {
		want = len(evs)
	}
	byID := map[string][]webhooks.PublicEvent{}
	got := 0
	timeout := time.After(30 * time.Second)
	for got < want {
		select {
		case m := <-msgs:
			got++
			var pe webhooks.PublicEvent
			if err := json.Unmarshal(m.Payload, &pe); err != nil {
				t.Fatalf("message %s: %v", m.Payload, err)
			}
			for _, secret := range []string{"Private Person", "private@example.org", "C-secret", "a sealed chat line"} {
				if strings.Contains(string(m.Payload), secret) {
					t.Errorf("a sealed value was published: %s", m.Payload)
				}
			}
			if pe.ID != m.UUID {
				t.Errorf("message id %s carries event %s", m.UUID, pe.ID)
			}
			if m.Metadata.Get("type") != pe.Type || m.Metadata.Get("tenant") != tenant {
				t.Errorf("metadata %v for %s", m.Metadata, pe.Type)
			}
			byID[m.UUID] = append(byID[m.UUID], pe)
			m.Ack()
		case <-timeout:
			t.Fatalf("received %d of %d messages", got, want)
		}
	}
	// Nothing more arrives: restarts republished nothing else.
	select {
	case m := <-msgs:
		t.Errorf("an extra message %s: %s", m.UUID, m.Payload)
		m.Ack()
	case <-time.After(2 * time.Second):
	}
	dups := 0
	for _, ev := range evs {
		got := byID[ev.ID.String()]
		if len(got) == 0 {
			t.Errorf("event %d %s (%s) never arrived", ev.Position, ev.Type, ev.ID)
			continue
		}
		for _, pe := range got {
			if pe.Position != ev.Position || pe.Type != ev.Type || pe.Stream != ev.Stream {
				t.Errorf("message %s: %+v, want event %d %s", ev.ID, pe, ev.Position, ev.Type)
			}
		}
		dups += len(got) - 1
	}
	if len(byID) != len(evs) {
		t.Errorf("%d distinct message ids for %d committed events", len(byID), len(evs))
	}
	if exactlyOnce && dups != 0 {
		t.Errorf("%d duplicates through a deduplicating transport", dups)
	}
	if !exactlyOnce && dups != bus.failed {
		t.Errorf("%d duplicates, want only the crashed batch of %d again", dups, bus.failed)
	}
}

func TestDispatcherOnPostgreSQL(t *testing.T) {
	e := newEnv(t)
	topic := uniqueTopic(t)
	logger := wm.NopLogger{}
	db := wmsql.BeginnerFromPgx(e.db.Pool)
	schema := wmsql.DefaultPostgreSQLSchema{}
	pub, err := wmsql.NewPublisher(db, wmsql.PublisherConfig{SchemaAdapter: schema, AutoInitializeSchema: true}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	sub, err := wmsql.NewSubscriber(db, wmsql.SubscriberConfig{ConsumerGroup: "siem", SchemaAdapter: schema,
		OffsetsAdapter: wmsql.DefaultPostgreSQLOffsetsAdapter{}, InitializeSchema: true, PollInterval: 50 * time.Millisecond}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	if err := sub.SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	// watermill-sql keeps every message, duplicates included: the
	// consumer deduplicates on the id.
	dispatchScenario(t, e, topic, pub, sub, false)
}

func natsURL() string {
	if u := os.Getenv("VIGIL_TEST_NATS_URL"); u != "" {
		return u
	}
	return "nats://127.0.0.1:4222"
}

func TestDispatcherOnNATSJetStream(t *testing.T) {
	url := natsURL()
	host := strings.TrimPrefix(url, "nats://")
	if c, err := net.DialTimeout("tcp", host, 2*time.Second); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("NATS is not reachable at %s: %v (CI must run it)", url, err)
		}
		t.Skipf("NATS is not reachable at %s (%v): start nats-server -js, or set VIGIL_TEST_NATS_URL", url, err)
	} else {
		c.Close()
	}
	nc, err := nats.Connect(url, nats.Name("vigil-test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	topic := uniqueTopic(t)
	streamConfig := func(topic string) jetstream.StreamConfig {
		return jetstream.StreamConfig{Name: topic, Subjects: []string{topic}, Storage: jetstream.MemoryStorage,
			Duplicates: 2 * time.Minute, MaxAge: 10 * time.Minute}
	}
	ctx := context.Background()
	stream, err := js.CreateOrUpdateStream(ctx, streamConfig(topic))
	if err != nil {
		if os.Getenv("CI") != "true" && strings.Contains(err.Error(), "not enabled") {
			t.Skipf("JetStream is not enabled on %s: %v", url, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), topic) })
	consumer := jetstream.ConsumerConfig{Name: "siem", Durable: "siem", AckPolicy: jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy, AckWait: 30 * time.Second}
	if _, err := stream.CreateOrUpdateConsumer(ctx, consumer); err != nil {
		t.Fatal(err)
	}
	logger := wm.NopLogger{}
	pub, err := wmjs.NewPublisher(wmjs.PublisherConfig{URL: url, Logger: logger, ConfigureStream: streamConfig})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{Conn: nc, Logger: logger, ConfigureStream: streamConfig,
		ResourceInitializer: wmjs.ExistingConsumer(func(string, string) jetstream.ConsumerConfig { return consumer }, "siem")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	// JetStream drops the crashed batch's second publish: same Nats-Msg-Id
	// within the duplicates window.
	dispatchScenario(t, e, topic, pub, sub, true)
}
