package relay_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/relay"
)

// backend is an in-memory relay.Backend: sessions with a holder and a
// closed flag; the tokens are technician ids.
type backend struct {
	mu       sync.Mutex
	sessions map[string]*fakeSession
}

type fakeSession struct {
	holder string
	closed bool
}

func (b *backend) get(guid string) (*fakeSession, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.sessions[guid]
	if !ok {
		return nil, &domain.Error{Code: domain.CodeNotFound, Message: "no session", Err: domain.ErrNotFound}
	}
	if s.closed {
		return nil, &domain.Error{Code: domain.CodeSessionClosed, Message: "closed", Err: domain.ErrSessionClosed}
	}
	return s, nil
}

func (b *backend) AuthorizeCustomer(ctx context.Context, guid string) (relay.Grant, error) {
	if _, err := b.get(guid); err != nil {
		return relay.Grant{}, err
	}
	return relay.Grant{Tenant: "t1"}, nil
}

func (b *backend) AuthorizeTechnician(ctx context.Context, guid, token string) (relay.Grant, error) {
	s, err := b.get(guid)
	if err != nil {
		return relay.Grant{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.holder != token {
		return relay.Grant{}, &domain.Error{Code: domain.CodeForbidden, Message: "not yours", Err: domain.ErrForbidden}
	}
	return relay.Grant{Tenant: "t1", TechnicianID: token}, nil
}

func (b *backend) ClosedSessions(ctx context.Context, refs []relay.SessionRef) ([]relay.SessionRef, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []relay.SessionRef
	for _, r := range refs {
		if s, ok := b.sessions[r.GUID]; !ok || s.closed {
			out = append(out, r)
		}
	}
	return out, nil
}

func (b *backend) close(guid string) {
	b.mu.Lock()
	b.sessions[guid].closed = true
	b.mu.Unlock()
}

// recorder is a relay.Publisher that keeps the events.
type recorder struct {
	mu     sync.Mutex
	events []relay.Event
}

func (r *recorder) Publish(ctx context.Context, e relay.Event) error {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	return nil
}

func (r *recorder) all() []relay.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]relay.Event(nil), r.events...)
}

type harness struct {
	srv     *relay.Server
	addr    string
	client  *tls.Config
	backend *backend
	events  *recorder
}

func newHarness(t *testing.T, tune func(*relay.Config)) *harness {
	t.Helper()
	certPEM, keyPEM, err := relay.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	h := &harness{backend: &backend{sessions: map[string]*fakeSession{}}, events: &recorder{},
		client: &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}}
	cfg := relay.Config{TLS: relay.ServerTLS(cert), RelayID: "r1", Backend: h.backend, Publisher: h.events,
		PollInterval: 50 * time.Millisecond}
	if tune != nil {
		tune(&cfg)
	}
	h.srv, err = relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- h.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return h
}

func (h *harness) session(holder string) [16]byte {
	var g [16]byte
	rand.Read(g[:])
	h.backend.mu.Lock()
	h.backend.sessions[relay.Hello{GUID: g}.GUIDString()] = &fakeSession{holder: holder}
	h.backend.mu.Unlock()
	return g
}

func (h *harness) dial(t *testing.T, side relay.Side, g [16]byte, token string) (*tls.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := relay.Dial(ctx, h.addr, h.client, relay.Hello{Side: side, GUID: g, Token: token})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func (h *harness) pair(t *testing.T) (cust, tech *tls.Conn, g [16]byte) {
	t.Helper()
	g = h.session("tech-1")
	cust, err := h.dial(t, relay.SideCustomer, g, "")
	if err != nil {
		t.Fatal(err)
	}
	tech, err = h.dial(t, relay.SideTechnician, g, "tech-1")
	if err != nil {
		t.Fatal(err)
	}
	return cust, tech, g
}

func refusal(err error) relay.Reason {
	var re *relay.RefusedError
	if errors.As(err, &re) {
		return re.Reason
	}
	return 0xff
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func closedEvent(h *harness, guid string) (relay.Event, bool) {
	for _, e := range h.events.all() {
		if e.Type == relay.EventClosed && e.Session == guid {
			return e, true
		}
	}
	return relay.Event{}, false
}

func TestPairingCopiesExactBytes(t *testing.T) {
	h := newHarness(t, nil)
	cust, tech, g := h.pair(t)
	const n = 3<<20 + 17
	up, down := make([]byte, n), make([]byte, n+1000)
	rand.Read(up)
	rand.Read(down)
	var wg sync.WaitGroup
	var gotUp, gotDown [32]byte
	read := func(c *tls.Conn, size int, sum *[32]byte) {
		defer wg.Done()
		hh := sha256.New()
		if _, err := io.CopyN(hh, c, int64(size)); err != nil {
			t.Errorf("read: %v", err)
		}
		copy(sum[:], hh.Sum(nil))
	}
	wg.Add(4)
	go func() { defer wg.Done(); cust.Write(up) }()
	go func() { defer wg.Done(); tech.Write(down) }()
	go read(tech, len(up), &gotUp)
	go read(cust, len(down), &gotDown)
	wg.Wait()
	if gotUp != sha256.Sum256(up) || gotDown != sha256.Sum256(down) {
		t.Fatal("relayed bytes differ")
	}
	cust.Close()
	// The technician's side is closed by the relay.
	tech.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tech.Read(make([]byte, 1)); err == nil {
		t.Fatal("technician side still open after the customer closed")
	}
	guid := relay.Hello{GUID: g}.GUIDString()
	waitFor(t, "relay_closed", func() bool { _, ok := closedEvent(h, guid); return ok })
	e, _ := closedEvent(h, guid)
	if e.BytesFromCustomer != int64(len(up)) || e.BytesFromTechnician != int64(len(down)) || e.Reason != "customer_closed" {
		t.Errorf("relay_closed = %+v, want %d/%d bytes, customer_closed", e, len(up), len(down))
	}
	var types []string
	for _, e := range h.events.all() {
		if e.Session == guid {
			types = append(types, e.Type+"/"+e.Side)
		}
	}
	want := []string{"relay_connected/customer", "relay_connected/technician", "relay_paired/", "relay_closed/"}
	if len(types) != len(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
	}
	for _, e := range h.events.all() {
		if e.Type == relay.EventConnected && e.SourceIP != "127.0.0.1" {
			t.Errorf("source ip %q", e.SourceIP)
		}
	}
}

func TestRefusals(t *testing.T) {
	h := newHarness(t, nil)
	closed := h.session("tech-1")
	h.backend.close(relay.Hello{GUID: closed}.GUIDString())
	open := h.session("tech-1")
	var unknown [16]byte
	rand.Read(unknown[:])
	cases := []struct {
		name  string
		side  relay.Side
		g     [16]byte
		token string
		want  relay.Reason
	}{
		{"unknown guid", relay.SideCustomer, unknown, "", relay.ReasonUnknownSession},
		{"closed session", relay.SideCustomer, closed, "", relay.ReasonSessionClosed},
		{"closed session technician", relay.SideTechnician, closed, "tech-1", relay.ReasonSessionClosed},
		{"wrong technician", relay.SideTechnician, open, "tech-2", relay.ReasonNotAuthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := h.dial(t, c.side, c.g, c.token)
			if got := refusal(err); got != c.want {
				t.Fatalf("got %v (%v), want %v", got, err, c.want)
			}
		})
	}
	t.Run("side taken", func(t *testing.T) {
		// A side that is waiting is replaced by a reconnect...
		first, err := h.dial(t, relay.SideCustomer, open, "")
		if err != nil {
			t.Fatal(err)
		}
		second, err := h.dial(t, relay.SideCustomer, open, "")
		if err != nil {
			t.Fatalf("reconnecting customer: %v", err)
		}
		first.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := first.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("replaced side still open: %v", err)
		}
		guid := relay.Hello{GUID: open}.GUIDString()
		waitFor(t, "relay_closed replaced", func() bool { e, ok := closedEvent(h, guid); return ok && e.Reason == "replaced" })
		// ...which pairs; a side of a running pair cannot be taken.
		tech, err := h.dial(t, relay.SideTechnician, open, "tech-1")
		if err != nil {
			t.Fatal(err)
		}
		second.Write([]byte("hi"))
		tech.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(tech, make([]byte, 2)); err != nil {
			t.Fatalf("the reconnected side does not relay: %v", err)
		}
		if _, err := h.dial(t, relay.SideCustomer, open, ""); refusal(err) != relay.ReasonSideTaken {
			t.Fatalf("customer of a running pair: %v", err)
		}
	})
	garbage := []struct {
		name string
		b    []byte
		want relay.Reason
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), relay.ReasonBadHello},
		{"version 9", append([]byte("VGRL\x09\x01"), make([]byte, 18)...), relay.ReasonBadVersion},
		{"customer with token", relay.AppendHello(nil, relay.Hello{Side: relay.SideCustomer, Token: "x"})[:0], relay.ReasonBadHello},
	}
	garbage[2].b = append([]byte("VGRL\x01\x01"), append(make([]byte, 16), 0, 1, 'x')...)
	for _, c := range garbage {
		t.Run(c.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", h.addr, h.client)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write(c.b)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			ans, err := io.ReadAll(conn)
			if len(ans) != 1 || relay.Reason(ans[0]) != c.want {
				t.Fatalf("answer %v (%v), want [%d]", ans, err, c.want)
			}
		})
	}
	if got := counter(t, h, "bad_hello"); got < 2 {
		t.Errorf("bad_hello refusals counted %v", got)
	}
}

func TestPeerTimeout(t *testing.T) {
	h := newHarness(t, func(c *relay.Config) { c.PeerTimeout = 200 * time.Millisecond })
	g := h.session("tech-1")
	c, err := h.dial(t, relay.SideCustomer, g, "")
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read after peer timeout: %v, want the relay to close", err)
	}
	guid := relay.Hello{GUID: g}.GUIDString()
	waitFor(t, "relay_closed", func() bool { e, ok := closedEvent(h, guid); return ok && e.Reason == "peer_timeout" })
}

func TestHandshakeTimeout(t *testing.T) {
	h := newHarness(t, func(c *relay.Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	raw, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.ReadAll(raw); err != nil && isTimeout(err) {
		t.Fatal("the relay kept a silent connection open")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

func TestIdleTimeout(t *testing.T) {
	h := newHarness(t, func(c *relay.Config) { c.IdleTimeout = 200 * time.Millisecond })
	cust, tech, g := h.pair(t)
	_ = cust
	tech.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tech.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("idle pair still open: %v", err)
	}
	guid := relay.Hello{GUID: g}.GUIDString()
	waitFor(t, "relay_closed", func() bool { e, ok := closedEvent(h, guid); return ok && e.Reason == "idle_timeout" })
}

func TestSessionCloseTearsDown(t *testing.T) {
	h := newHarness(t, nil)
	cust, tech, g := h.pair(t)
	// The pair works...
	cust.Write([]byte("ping"))
	buf := make([]byte, 4)
	tech.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(tech, buf); err != nil || !bytes.Equal(buf, []byte("ping")) {
		t.Fatalf("relay: %q %v", buf, err)
	}
	// ...until the backend closes the session.
	guid := relay.Hello{GUID: g}.GUIDString()
	h.backend.close(guid)
	for _, c := range []*tls.Conn{cust, tech} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err == nil || isTimeout(err) {
			t.Fatalf("side open after the session closed: %v", err)
		}
	}
	waitFor(t, "relay_closed", func() bool { e, ok := closedEvent(h, guid); return ok && e.Reason == "session_closed" })
}

func TestHandshakeLimitPerIP(t *testing.T) {
	h := newHarness(t, func(c *relay.Config) { c.MaxHandshakesPerIP = 2; c.HandshakeTimeout = 2 * time.Second })
	// Two silent connections hold both handshake slots of 127.0.0.1.
	for range 2 {
		raw, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
	}
	// Let the relay start handling both before the TLS dials race them.
	time.Sleep(100 * time.Millisecond)
	waitFor(t, "slots taken", func() bool {
		_, err := h.dial(t, relay.SideCustomer, h.session("x"), "")
		return err != nil && refusal(err) == 0xff
	})
	if counter(t, h, "busy") < 1 {
		t.Error("busy refusal not counted")
	}
}

func TestGracefulShutdownDrains(t *testing.T) {
	h := newHarness(t, nil)
	cust, tech, _ := h.pair(t)
	waiting := h.session("tech-1")
	w, err := h.dial(t, relay.SideCustomer, waiting, "")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	// The waiting side goes at once; the pair still relays during the grace.
	w.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := w.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("waiting side survived shutdown: %v", err)
	}
	cust.Write([]byte("x"))
	tech.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(tech, make([]byte, 1)); err != nil {
		t.Fatalf("pair cut before the grace period: %v", err)
	}
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the grace period to end it", err)
	}
	if _, err := tech.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("pair open after shutdown: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// quiet is a harness whose directions park after 30 ms without bytes.
func quiet(tune func(*relay.Config)) func(*relay.Config) {
	return func(c *relay.Config) {
		c.QuietPeriod = 30 * time.Millisecond
		if tune != nil {
			tune(c)
		}
	}
}

// TestParkedPairWakes checks that directions parked after a quiet period
// carry on exactly when bytes come again, many times over, and that the
// count in relay_closed includes every byte.
func TestParkedPairWakes(t *testing.T) {
	h := newHarness(t, quiet(nil))
	cust, tech, g := h.pair(t)
	var up, down int64
	for round := range 4 {
		time.Sleep(100 * time.Millisecond) // both directions park
		a := make([]byte, 1+round*40000)
		b := make([]byte, 7+round*30000)
		rand.Read(a)
		rand.Read(b)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); cust.Write(a) }()
		go func() { defer wg.Done(); tech.Write(b) }()
		gotA, gotB := make([]byte, len(a)), make([]byte, len(b))
		tech.SetReadDeadline(time.Now().Add(5 * time.Second))
		cust.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(tech, gotA); err != nil || !bytes.Equal(a, gotA) {
			t.Fatalf("round %d customer to technician: %v", round, err)
		}
		if _, err := io.ReadFull(cust, gotB); err != nil || !bytes.Equal(b, gotB) {
			t.Fatalf("round %d technician to customer: %v", round, err)
		}
		wg.Wait()
		up += int64(len(a))
		down += int64(len(b))
	}
	time.Sleep(100 * time.Millisecond)
	tech.Close()
	cust.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := cust.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("customer open after the parked technician side closed: %v", err)
	}
	guid := relay.Hello{GUID: g}.GUIDString()
	waitFor(t, "relay_closed", func() bool { _, ok := closedEvent(h, guid); return ok })
	e, _ := closedEvent(h, guid)
	if e.BytesFromCustomer != up || e.BytesFromTechnician != down || e.Reason != "technician_closed" {
		t.Errorf("relay_closed = %+v, want %d/%d bytes, technician_closed", e, up, down)
	}
}

func TestParkedPairIdleTimeout(t *testing.T) {
	h := newHarness(t, quiet(func(c *relay.Config) { c.IdleTimeout = 300 * time.Millisecond }))
	cust, tech, g := h.pair(t)
	cust.Write([]byte("x"))
	tech.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(tech, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := tech.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("idle parked pair still open: %v", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond { // not at the 30 ms quiet period
		t.Errorf("closed after %v, before the idle timeout", d)
	}
	guid := relay.Hello{GUID: g}.GUIDString()
	waitFor(t, "relay_closed", func() bool { e, ok := closedEvent(h, guid); return ok && e.Reason == "idle_timeout" })
}

func TestParkedPairSessionCloseAndShutdown(t *testing.T) {
	h := newHarness(t, quiet(nil))
	cust, tech, g := h.pair(t)
	cust2, tech2, _ := h.pair(t)
	time.Sleep(100 * time.Millisecond)
	guid := relay.Hello{GUID: g}.GUIDString()
	h.backend.close(guid)
	for _, c := range []*tls.Conn{cust, tech} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("parked side open after the session closed: %v", err)
		}
	}
	waitFor(t, "relay_closed", func() bool { e, ok := closedEvent(h, guid); return ok && e.Reason == "session_closed" })
	// Shutdown cuts the other parked pair when its grace ends.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	for _, c := range []*tls.Conn{cust2, tech2} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("parked side open after shutdown: %v", err)
		}
	}
}

// TestManyParkedPairs parks a few hundred pairs and wakes them all at once.
func TestManyParkedPairs(t *testing.T) {
	h := newHarness(t, quiet(nil))
	const n = 200
	custs, techs := make([]*tls.Conn, n), make([]*tls.Conn, n)
	for i := range n {
		custs[i], techs[i], _ = h.pair(t)
	}
	time.Sleep(150 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte(fmt.Sprintf("pair %d", i))
			custs[i].Write(msg)
			got := make([]byte, len(msg))
			techs[i].SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(techs[i], got); err != nil || !bytes.Equal(got, msg) {
				t.Errorf("pair %d: %q %v", i, got, err)
			}
		}()
	}
	wg.Wait()
}
