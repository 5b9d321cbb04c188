package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	wmbus "github.com/vigilhq/vigil/adapters/watermill"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/relay"
	"github.com/vigilhq/vigil/webhooks"
)

// TestRelayEventsOverTheBus publishes a session's relay events while no
// backend subscribes, duplicates one, then starts the backend's
// subscriber, which refuses one message once (a redelivery): the ledger
// ends with each event exactly once, on both transports.
func TestRelayEventsOverTheBus(t *testing.T) {
	for _, transport := range []string{"postgres", "nats://127.0.0.1:4222"} {
		t.Run(busName(transport), func(t *testing.T) {
			f := newRelayFixture(t)
			guid := f.session(t)
			raw := make([]byte, 4)
			rand.Read(raw)
			topic := "vigil_relay_test_" + hex.EncodeToString(raw)
			if transport != "postgres" {
				deleteStreams(t, topic)
			}
			ctx := context.Background()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			bus, err := wmbus.Open(ctx, wmbus.Config{URL: transport, Pool: f.sys.pool, Logger: log, Topic: topic, RetryDelay: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { bus.Close() })

			now := time.Now()
			ev := func(typ string, mod func(*relay.Event)) relay.Event {
				e := relay.Event{ID: domain.NewEventID().String(), Type: typ, Tenant: f.tenant, Session: guid, RelayID: "r9", At: now}
				mod(&e)
				return e
			}
			events := []relay.Event{
				ev(relay.EventConnected, func(e *relay.Event) { e.Side, e.SourceIP = "customer", "192.0.2.7" }),
				ev(relay.EventConnected, func(e *relay.Event) { e.Side, e.SourceIP = "technician", "192.0.2.8" }),
				ev(relay.EventPaired, func(e *relay.Event) { e.PairingMS = 1234 }),
				ev(relay.EventClosed, func(e *relay.Event) {
					e.BytesFromCustomer, e.BytesFromTechnician, e.DurationMS, e.Reason = 10, 20, 30, "customer_closed"
				}),
			}
			// The backend is down: nobody subscribes yet.
			for _, e := range append(events, events[3]) {
				if err := bus.Publish(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
			if n := len(f.relayEvents(t, guid)); n != 0 {
				t.Fatalf("%d relay events before the backend subscribed", n)
			}
			// The backend returns; it fails the pairing once.
			rel := f.sys.service.Relay(nil)
			var mu sync.Mutex
			failed := false
			handle := func(ctx context.Context, payload []byte) error {
				var e relay.Event
				json.Unmarshal(payload, &e)
				mu.Lock()
				fail := e.Type == relay.EventPaired && !failed
				failed = failed || fail
				mu.Unlock()
				if fail {
					return errors.New("backend hiccup")
				}
				return rel.HandleRelayMessage(ctx, payload)
			}
			sctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- bus.Subscribe(sctx, handle) }()
			defer func() { cancel(); <-done }()
			waitUntil(t, "four relay events", func() bool { return len(f.relayEvents(t, guid)) >= 4 })
			time.Sleep(500 * time.Millisecond) // room for a wrong fifth
			got := f.relayEvents(t, guid)
			if len(got) != 4 {
				t.Fatalf("%d relay events, want 4", len(got))
			}
			for i, e := range got {
				if e.ID.String() != events[i].ID {
					t.Errorf("event %d has id %s, want %s (%s)", i, e.ID, events[i].ID, events[i].Type)
				}
			}
			var paired domain.RelayPaired
			json.Unmarshal(got[2].Data, &paired)
			if paired.PairingMS != 1234 || !failed {
				t.Errorf("paired %+v, failed once %v", paired, failed)
			}
		})
	}
}

// TestStartRelay runs serve's relay wiring on both transports: a session
// relayed through the TLS listener ends with its four relay events in the
// ledger, carried by the bus and appended by the subscriber.
func TestStartRelay(t *testing.T) {
	for _, transport := range []string{"postgres", "nats://127.0.0.1:4222"} {
		t.Run(busName(transport), func(t *testing.T) {
			f := newRelayFixture(t)
			fs := newFlagSet()
			rc := bindRelayConfig(fs, envFunc(map[string]string{"VIGIL_RELAY_ADDR": freeAddr(t), "VIGIL_RELAY_POLL_INTERVAL": "200ms"}))
			if err := fs.Parse(nil); err != nil {
				t.Fatal(err)
			}
			cfg := &Config{DataDir: t.TempDir(), Env: "development", Bus: transport, BusPrefix: testBusPrefix()}
			if transport != "postgres" {
				deleteStreams(t, wmbus.RelayTopic(cfg.BusPrefix))
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			run, err := startRelay(context.Background(), f.sys, cfg, rc, prometheus.NewRegistry(), log)
			if err != nil {
				t.Fatal(err)
			}
			tc, err := simRelayTLS(rc.Addr, "", cfg.DataDir)
			if err != nil {
				t.Fatal(err)
			}
			guid := f.session(t)
			if err := simRelaySession(context.Background(), rc.Addr, tc, guid, f.tok1, 50_000); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "four relay events", func() bool { return len(f.relayEvents(t, guid)) == 4 })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := run.Stop(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// testBusPrefix is a deployment prefix of one test's own, so that tests
// sharing the NATS server never meet.
func testBusPrefix() string {
	raw := make([]byte, 5)
	rand.Read(raw)
	return "vigiltest-" + hex.EncodeToString(raw)
}

// deleteStreams deletes, when the test ends, the JetStream streams of the
// given topics, and only those: the NATS server is shared.
func deleteStreams(t *testing.T, topics ...string) {
	t.Helper()
	t.Cleanup(func() {
		nc, err := nats.Connect(testNATS)
		if err != nil {
			t.Errorf("clean up streams: %v", err)
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Error(err)
			return
		}
		for _, topic := range topics {
			err := js.DeleteStream(context.Background(), wmbus.StreamName(topic))
			if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Errorf("delete the stream of %s: %v", topic, err)
			}
		}
	})
}

// testNATS is the JetStream server of the tests.
const testNATS = "nats://127.0.0.1:4222"

// TestEventsBusDefaultTopic starts serve's events bus on NATS as
// configured by default but for the prefix (the topic "<prefix>.events",
// like the default "vigil.events", which JetStream refused as a stream
// name): it publishes a committed event and leaves no consumer behind.
func TestEventsBusDefaultTopic(t *testing.T) {
	var c Config
	if got := c.busTopic(); got != "vigil.events" {
		t.Errorf("default topic %q, want vigil.events", got)
	}
	prefix := testBusPrefix()
	fs := newFlagSet()
	cfg := bindConfig(fs, envFunc(map[string]string{"VIGIL_BUS": testNATS, "VIGIL_BUS_PREFIX": prefix}))
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	topic := prefix + ".events"
	if got := cfg.busTopic(); got != topic {
		t.Fatalf("topic %q, want %q", got, topic)
	}
	deleteStreams(t, topic)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	bus, err := openEventsBus(ctx, cfg, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	id := domain.NewEventID().String()
	err = eventsBus{bus}.Publish(ctx, topic, webhooks.Message{UUID: id, Payload: []byte(`{}`), Metadata: map[string]string{"type": "session.created"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Close(); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(testNATS)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	st, err := js.Stream(ctx, wmbus.StreamName(topic))
	if err != nil {
		t.Fatal(err)
	}
	info := st.CachedInfo()
	if info.Config.Name != prefix+"_events" || info.State.Msgs != 1 || info.State.Consumers != 0 {
		t.Errorf("stream %s: %d messages, %d consumers; want %s_events, 1, 0", info.Config.Name, info.State.Msgs, info.State.Consumers, prefix)
	}
	msg, err := st.GetLastMsgForSubject(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get("type") != "session.created" || msg.Header.Get(nats.MsgIdHdr) != id {
		t.Errorf("message headers %v", msg.Header)
	}
}
