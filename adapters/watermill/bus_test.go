package watermill_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	wmbus "github.com/vigilhq/vigil/adapters/watermill"
	"github.com/vigilhq/vigil/relay"
)

// natsURL is the JetStream server the tests run against.
const natsURL = "nats://127.0.0.1:4222"

// jetStream connects to the test server for inspection and clean-up.
func jetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatalf("NATS at %s: %v", natsURL, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// uniquePrefix returns a deployment prefix no other test run uses, and
// deletes, when the test ends, the streams of the topics given to the
// returned function (only those: the server is shared).
func uniquePrefix(t *testing.T, js jetstream.JetStream) (string, func(topic string)) {
	t.Helper()
	raw := make([]byte, 5)
	rand.Read(raw)
	prefix := "vigiltest-" + hex.EncodeToString(raw)
	return prefix, func(topic string) {
		t.Cleanup(func() {
			err := js.DeleteStream(context.Background(), wmbus.StreamName(topic))
			if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Errorf("delete stream of %s: %v", topic, err)
			}
		})
	}
}

func open(t *testing.T, cfg wmbus.Config) *wmbus.Bus {
	t.Helper()
	cfg.URL = natsURL
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.RetryDelay = 100 * time.Millisecond
	b, err := wmbus.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// receive subscribes to b until n messages arrived and returns their ids,
// in order of delivery.
func receive(t *testing.T, b *wmbus.Bus, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan string, 64)
	done := make(chan error, 1)
	go func() {
		done <- b.Subscribe(ctx, func(_ context.Context, payload []byte) error {
			var e relay.Event
			if err := json.Unmarshal(payload, &e); err != nil {
				return err
			}
			got <- e.ID
			return nil
		})
	}()
	var ids []string
	for len(ids) < n {
		select {
		case id := <-got:
			ids = append(ids, id)
		case <-ctx.Done():
			t.Fatalf("received %v, want %d messages", ids, n)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return ids
}

func event(id string) relay.Event {
	return relay.Event{ID: id, Type: relay.EventPaired, Tenant: "t", Session: "s", RelayID: "r", At: time.Now()}
}

func consumers(t *testing.T, js jetstream.JetStream, topic string) []string {
	t.Helper()
	st, err := js.Stream(context.Background(), wmbus.StreamName(topic))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	l := st.ConsumerNames(context.Background())
	for n := range l.Name() {
		names = append(names, n)
	}
	if err := l.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func TestStreamName(t *testing.T) {
	for topic, want := range map[string]string{
		"vigil.events":       "vigil_events",
		"vigil_relay_events": "vigil_relay_events",
		"a.b c/d\\e*f>g-h":   "a_b_c_d_e_f_g-h",
		"été":                "_t_",
	} {
		if got := wmbus.StreamName(topic); got != want {
			t.Errorf("StreamName(%q) = %q, want %q", topic, got, want)
		}
	}
}

// TestNATSDottedTopic opens the bus on a topic shaped like the default
// events topic ("<prefix>.events"): JetStream refuses dots in stream
// names, so the stream must be named apart from its subject.
func TestNATSDottedTopic(t *testing.T) {
	js := jetStream(t)
	prefix, cleanup := uniquePrefix(t, js)
	topic := prefix + ".events"
	cleanup(topic)
	b := open(t, wmbus.Config{Prefix: prefix, Topic: topic})
	defer b.Close()
	if err := b.Publish(context.Background(), event("e1")); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"e1"}, receive(t, b, 1)); diff != "" {
		t.Error(diff)
	}
	info, err := js.Stream(context.Background(), wmbus.StreamName(topic))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.Subjects; !slices.Equal(got, []string{topic}) {
		t.Errorf("stream subjects %v, want [%s]", got, topic)
	}
}

// TestNATSPrefixesApart runs two deployments on one server: each sees
// only its own messages, delivered in order.
func TestNATSPrefixesApart(t *testing.T) {
	js := jetStream(t)
	pa, cleanA := uniquePrefix(t, js)
	pb, cleanB := uniquePrefix(t, js)
	cleanA(wmbus.RelayTopic(pa))
	cleanB(wmbus.RelayTopic(pb))
	a := open(t, wmbus.Config{Prefix: pa})
	defer a.Close()
	b := open(t, wmbus.Config{Prefix: pb})
	defer b.Close()
	ctx := context.Background()
	for _, p := range []struct {
		bus *wmbus.Bus
		id  string
	}{{a, "a1"}, {b, "b1"}, {a, "a2"}, {b, "b2"}} {
		if err := p.bus.Publish(ctx, event(p.id)); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]string{"a1", "a2"}, receive(t, a, 2)); diff != "" {
		t.Errorf("deployment A (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b1", "b2"}, receive(t, b, 2)); diff != "" {
		t.Errorf("deployment B (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{wmbus.ConsumerGroup(pa)}, consumers(t, js, wmbus.RelayTopic(pa))); diff != "" {
		t.Errorf("consumers of A (-want +got):\n%s", diff)
	}
}

// TestNATSConsumersAfterShutdown: a bus that only publishes (the events
// bus, a relay running alone) leaves no durable consumer behind; one that
// subscribed leaves exactly the backend's, which still holds what was
// published while no backend ran.
func TestNATSConsumersAfterShutdown(t *testing.T) {
	js := jetStream(t)
	prefix, cleanup := uniquePrefix(t, js)
	topic := wmbus.RelayTopic(prefix)
	cleanup(topic)
	ctx := context.Background()

	pub := open(t, wmbus.Config{Prefix: prefix})
	if err := pub.Publish(ctx, event("p1")); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{}, consumers(t, js, topic)); diff != "" {
		t.Errorf("consumers after a publishing bus closed (-want +got):\n%s", diff)
	}

	sub := open(t, wmbus.Config{Prefix: prefix})
	if diff := cmp.Diff([]string{"p1"}, receive(t, sub, 1)); diff != "" {
		t.Error(diff)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{wmbus.ConsumerGroup(prefix)}, consumers(t, js, topic)); diff != "" {
		t.Errorf("consumers after a subscribing bus closed (-want +got):\n%s", diff)
	}

	// Published while no backend runs: the durable consumer keeps it.
	pub = open(t, wmbus.Config{Prefix: prefix})
	if err := pub.Publish(ctx, event("p2")); err != nil {
		t.Fatal(err)
	}
	pub.Close()
	sub = open(t, wmbus.Config{Prefix: prefix})
	defer sub.Close()
	if diff := cmp.Diff([]string{"p2"}, receive(t, sub, 1)); diff != "" {
		t.Error(diff)
	}
}

func TestOpenRefusesBadNames(t *testing.T) {
	for name, cfg := range map[string]wmbus.Config{
		"prefix with a dot":  {Prefix: "a.b"},
		"prefix with space":  {Prefix: "a b"},
		"wildcard topic":     {Prefix: "x", Topic: "x.*"},
		"empty topic token":  {Prefix: "x", Topic: "x..events"},
		"topic with a space": {Prefix: "x", Topic: "x events"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg.URL = natsURL
			if b, err := wmbus.Open(context.Background(), cfg); err == nil {
				b.Close()
				t.Fatal("Open accepted it")
			}
		})
	}
}
