package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/relay"
)

// relayFixture is a real service over a fresh database with a tenant, a
// group, two technicians and their tokens.
type relayFixture struct {
	sys          *system
	dbURL        string
	tenant       string
	tech1, tech2 service.Principal
	ingest       service.Principal
	tok1, tok2   string
}

func newRelayFixture(t *testing.T) *relayFixture {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	cfg := &Config{DatabaseURL: db.URL, DataDir: devKeys(t, t.TempDir()), LogOrigin: "vigil.local", Region: "eu", CheckpointInterval: time.Second,
		SchedulerInterval: time.Second, Env: "development", LogLevel: "error"}
	sys, err := open(ctx, cfg, newLogger(io.Discard, "error"), true)
	if err != nil {
		t.Fatal(err)
	}
	go sys.ledger.Run(context.WithoutCancel(ctx))
	t.Cleanup(sys.Close)
	svc := sys.service
	tenant, adminKey, err := svc.CreateTenant(ctx, "Acme", "eu")
	if err != nil {
		t.Fatal(err)
	}
	admin, err := svc.Authenticate(ctx, adminKey)
	if err != nil {
		t.Fatal(err)
	}
	name := "Level 1"
	g, err := svc.CreateGroup(ctx, admin, service.GroupChange{Name: &name}, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	f := &relayFixture{sys: sys, dbURL: db.URL, tenant: tenant.ID}
	_, ingestKey, err := svc.CreateAPIKey(ctx, tenant.ID, service.RoleIngest, "applet")
	if err != nil {
		t.Fatal(err)
	}
	if f.ingest, err = svc.Authenticate(ctx, ingestKey); err != nil {
		t.Fatal(err)
	}
	for i, email := range []string{"one@example.com", "two@example.com"} {
		if _, err := svc.CreateTechnician(ctx, admin, service.NewTechnician{Email: email, Name: "Tech", GroupID: g.ID, Password: "Correct-Horse-9-Battery"}, [16]byte{}); err != nil {
			t.Fatal(err)
		}
		res, err := svc.Login(ctx, service.LoginRequest{Email: email, Password: "Correct-Horse-9-Battery", Tenant: tenant.ID})
		if err != nil {
			t.Fatal(err)
		}
		p, err := svc.Authenticate(ctx, res.Token)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			f.tech1, f.tok1 = p, res.Token
		} else {
			f.tech2, f.tok2 = p, res.Token
		}
	}
	return f
}

// session creates a session held by tech1.
func (f *relayFixture) session(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	s, err := f.sys.service.CreateSession(ctx, f.tech1, service.NewSession{Queue: domain.QueueShared}, [16]byte{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.sys.service.SessionCommand(ctx, f.ingest, s.ID, service.ConnectCustomerCmd{Type: "connect_customer", Platform: "windows"}, [16]byte{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sys.service.SessionCommand(ctx, f.tech1, s.ID, service.BareCmd{Type: "pick_up"}, [16]byte{}); err != nil {
		t.Fatal(err)
	}
	return s.ID
}

func (f *relayFixture) close(t *testing.T, guid string) {
	t.Helper()
	if _, err := f.sys.service.SessionCommand(context.Background(), f.tech1, guid, service.CloseCmd{Type: "close"}, [16]byte{}); err != nil {
		t.Fatal(err)
	}
}

// relayEvents returns the relay events of the session's stream.
func (f *relayFixture) relayEvents(t *testing.T, guid string) []domain.Event {
	t.Helper()
	evs, err := f.sys.ledger.ReadStream(context.Background(), f.tenant, domain.SessionStream(guid), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []domain.Event
	for _, e := range evs {
		switch e.Type {
		case "session.relay_connected", "session.relay_paired", "session.relay_closed":
			out = append(out, e)
		}
	}
	return out
}

// redeliverer is a relay.Publisher standing in for the bus: it hands each
// event to the backend's handler twice, as a bus redelivering would.
type redeliverer struct {
	rel *service.Relay
	mu  sync.Mutex
	n   int
}

func (r *redeliverer) Publish(ctx context.Context, e relay.Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
	for range 2 {
		if err := r.rel.HandleRelayMessage(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

func startTestRelay(t *testing.T, f *relayFixture, pub relay.Publisher) (addr string, client *tls.Config) {
	t.Helper()
	certPEM, keyPEM, err := relay.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := tls.X509KeyPair(certPEM, keyPEM)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	rel := f.sys.service.Relay(locateSession(f.sys.pool, f.sys.logStore))
	srv, err := relay.New(relay.Config{TLS: relay.ServerTLS(cert), RelayID: "r1", Publisher: pub, PollInterval: 100 * time.Millisecond,
		Backend: inProcessBackend{rel: rel, p: service.Principal{Role: service.RoleRelay, CredentialID: "relay:test"}}})
	if err != nil {
		t.Fatal(err)
	}
	return serveRelay(t, srv), &tls.Config{RootCAs: roots, ServerName: "localhost"}
}

func guidBytes(t *testing.T, guid string) [16]byte {
	t.Helper()
	b, err := hex.DecodeString(guid)
	if err != nil || len(b) != 16 {
		t.Fatalf("guid %q", guid)
	}
	return [16]byte(b)
}

func dialRelay(t *testing.T, addr string, cfg *tls.Config, side relay.Side, guid, token string) (*tls.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := relay.Dial(ctx, addr, cfg, relay.Hello{Side: side, GUID: guidBytes(t, guid), Token: token})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func reasonOf(err error) relay.Reason {
	var re *relay.RefusedError
	if errors.As(err, &re) {
		return re.Reason
	}
	return 0xff
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestRelayWithService runs the relay over TLS against the real service:
// the backend's rules decide, and the events land in the ledger once each
// although every one is delivered twice.
func TestRelayWithService(t *testing.T) {
	f := newRelayFixture(t)
	pub := &redeliverer{rel: f.sys.service.Relay(nil)}
	addr, client := startTestRelay(t, f, pub)

	t.Run("refusals", func(t *testing.T) {
		closed := f.session(t)
		f.close(t, closed)
		open := f.session(t)
		unknown := hex.EncodeToString(make([]byte, 16))
		for _, c := range []struct {
			name        string
			side        relay.Side
			guid, token string
			want        relay.Reason
		}{
			{"unknown guid", relay.SideCustomer, unknown, "", relay.ReasonUnknownSession},
			{"closed session", relay.SideCustomer, closed, "", relay.ReasonSessionClosed},
			{"closed session technician", relay.SideTechnician, closed, f.tok1, relay.ReasonSessionClosed},
			{"wrong technician", relay.SideTechnician, open, f.tok2, relay.ReasonNotAuthorized},
			{"bad token", relay.SideTechnician, open, "vgt_nope.nope", relay.ReasonNotAuthorized},
		} {
			t.Run(c.name, func(t *testing.T) {
				if _, err := dialRelay(t, addr, client, c.side, c.guid, c.token); reasonOf(err) != c.want {
					t.Fatalf("got %v, want %v", err, c.want)
				}
			})
		}
	})

	t.Run("simulate's relay session", func(t *testing.T) {
		guid := f.session(t)
		if err := simRelaySession(context.Background(), addr, client, guid, f.tok1, 100_000); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "relay_closed", func() bool { return len(f.relayEvents(t, guid)) == 4 })
	})

	t.Run("pair, bytes and events once", func(t *testing.T) {
		guid := f.session(t)
		cust, err := dialRelay(t, addr, client, relay.SideCustomer, guid, "")
		if err != nil {
			t.Fatal(err)
		}
		tech, err := dialRelay(t, addr, client, relay.SideTechnician, guid, f.tok1)
		if err != nil {
			t.Fatal(err)
		}
		up, down := make([]byte, 1<<20+3), make([]byte, 777_777)
		rand.Read(up)
		rand.Read(down)
		var wg sync.WaitGroup
		var gotUp, gotDown [32]byte
		read := func(c *tls.Conn, n int, sum *[32]byte) {
			defer wg.Done()
			h := sha256.New()
			if _, err := io.CopyN(h, c, int64(n)); err != nil {
				t.Error(err)
			}
			copy(sum[:], h.Sum(nil))
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
		// relay_connected and relay_paired must be recorded before the
		// close: the domain refuses them after it (docs/relay-protocol.md).
		waitUntil(t, "connected and paired in the ledger", func() bool { return len(f.relayEvents(t, guid)) == 3 })
		// The session closing in the backend tears the pair down.
		f.close(t, guid)
		tech.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := tech.Read(make([]byte, 1)); err == nil {
			t.Fatal("pair still open after the session closed")
		}
		waitUntil(t, "relay_closed in the ledger", func() bool { return len(f.relayEvents(t, guid)) == 4 })
		evs := f.relayEvents(t, guid)
		want := []string{"session.relay_connected", "session.relay_connected", "session.relay_paired", "session.relay_closed"}
		for i, e := range evs {
			if e.Type != want[i] {
				t.Fatalf("event %d is %s, want %s", i, e.Type, want[i])
			}
		}
		var closed domain.RelayClosed
		if err := json.Unmarshal(evs[3].Data, &closed); err != nil {
			t.Fatal(err)
		}
		if closed.BytesFromCustomer != int64(len(up)) || closed.BytesFromTechnician != int64(len(down)) || closed.Reason != "session_closed" {
			t.Errorf("relay_closed %+v", closed)
		}
		if evs[0].Actor.Kind != domain.ActorRelay || evs[0].Actor.ID != "r1" {
			t.Errorf("actor %+v", evs[0].Actor)
		}
		// Redelivered once more, much later: still nothing new.
		time.Sleep(200 * time.Millisecond)
		if n := len(f.relayEvents(t, guid)); n != 4 {
			t.Fatalf("%d relay events after redelivery, want 4", n)
		}
	})
}

// TestRelayCommandFlags binds the relay's flags beside the common ones (no
// clash) and refuses to start without a relay key.
func TestRelayCommandFlags(t *testing.T) {
	var out, errOut strings.Builder
	err := runRelay(context.Background(), []string{"--relay-addr", "127.0.0.1:0", "--relay-peer-timeout", "5s"}, envFunc(nil), &out, &errOut)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(ee.msg, "VIGIL_RELAY_API_KEY") {
		t.Fatalf("runRelay without a key = %v", err)
	}
	fs := newFlagSet()
	rc := bindRelayConfig(fs, envFunc(map[string]string{"VIGIL_RELAY_MAX_CONNS": "7", "VIGIL_RELAY_IDLE_TIMEOUT": "3m"}))
	if err := fs.Parse([]string{"--relay-max-handshakes-per-ip", "4"}); err != nil {
		t.Fatal(err)
	}
	if rc.MaxConns != 7 || rc.IdleTimeout != 3*time.Minute || rc.MaxHandshakesPerIP != 4 || rc.Addr != "127.0.0.1:8443" || rc.PeerTimeout != time.Minute {
		t.Fatalf("relay config %+v", rc)
	}
}

// TestRelayProxyFromSetting parses VIGIL_RELAY_PROXY_FROM and its flag:
// comma-separated CIDRs or addresses, empty by default, refused with the
// setting's name when malformed.
func TestRelayProxyFromSetting(t *testing.T) {
	for _, c := range []struct {
		name    string
		env     map[string]string
		args    []string
		want    []netip.Prefix
		wantErr string
	}{
		{name: "default off"},
		{name: "list", env: map[string]string{"VIGIL_RELAY_PROXY_FROM": " 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,,10.1.2.3/16"},
			want: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
				netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("10.1.0.0/16")}},
		{name: "ipv6 address", args: []string{"--relay-proxy-from", "2001:db8::1"}, want: []netip.Prefix{netip.MustParsePrefix("2001:db8::1/128")}},
		{name: "flag over environment", env: map[string]string{"VIGIL_RELAY_PROXY_FROM": "10.0.0.0/8"},
			args: []string{"--relay-proxy-from", "198.51.100.0/24"}, want: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}},
		{name: "bits out of range", env: map[string]string{"VIGIL_RELAY_PROXY_FROM": "10.0.0.0/8,10.0.0.0/33"}, wantErr: `"10.0.0.0/33"`},
		{name: "host name", args: []string{"--relay-proxy-from", "lb.internal"}, wantErr: `"lb.internal"`},
		{name: "address and port", env: map[string]string{"VIGIL_RELAY_PROXY_FROM": "10.0.0.1:8443"}, wantErr: `"10.0.0.1:8443"`},
		{name: "space separated", env: map[string]string{"VIGIL_RELAY_PROXY_FROM": "10.0.0.1 10.0.0.2"}, wantErr: `"10.0.0.1 10.0.0.2"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			fs := newFlagSet()
			rc := bindRelayConfig(fs, envFunc(c.env))
			if err := fs.Parse(c.args); err != nil {
				t.Fatal(err)
			}
			got, err := rc.proxyFrom()
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), "VIGIL_RELAY_PROXY_FROM") || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one naming VIGIL_RELAY_PROXY_FROM and %s", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(c.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("prefixes (-want +got):\n%s", diff)
			}
		})
	}
	// vigil relay refuses to start with a malformed list, before anything else.
	err := runRelay(context.Background(), nil, envFunc(map[string]string{"VIGIL_RELAY_API_KEY": "vk_x", "VIGIL_RELAY_PROXY_FROM": "nope"}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "VIGIL_RELAY_PROXY_FROM") {
		t.Fatalf("runRelay with a malformed VIGIL_RELAY_PROXY_FROM = %v", err)
	}
}

// eventLog is a relay.Publisher that keeps the events.
type eventLog struct {
	mu     sync.Mutex
	events []relay.Event
}

func (l *eventLog) Publish(ctx context.Context, e relay.Event) error {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	return nil
}

func (l *eventLog) sourceIP(guid string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Type == relay.EventConnected && e.Session == guid {
			return e.SourceIP, true
		}
	}
	return "", false
}

// TestRelayBehindBalancer runs the relay built from the settings, with
// VIGIL_RELAY_PROXY_FROM naming the loopback balancer, against the real
// service: the header's client is the event's source_ip, and a connection
// of the balancer without a header is closed.
func TestRelayBehindBalancer(t *testing.T) {
	f := newRelayFixture(t)
	fs := newFlagSet()
	rc := bindRelayConfig(fs, envFunc(map[string]string{"VIGIL_RELAY_PROXY_FROM": "127.0.0.1"}))
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := relay.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := tls.X509KeyPair(certPEM, keyPEM)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	client := &tls.Config{RootCAs: roots, ServerName: "localhost"}
	pub := &eventLog{}
	rel := f.sys.service.Relay(locateSession(f.sys.pool, f.sys.logStore))
	backend := inProcessBackend{rel: rel, p: service.Principal{Role: service.RoleRelay, CredentialID: "relay:test"}}
	srv, err := rc.server(newLogger(io.Discard, "error"), relayTLS{cfg: relay.ServerTLS(cert)}, backend, pub)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveRelay(t, srv)

	guid := f.session(t)
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Write([]byte("PROXY TCP4 203.0.113.7 127.0.0.1 51234 8443\r\n")); err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(raw, client)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(relay.AppendHello(nil, relay.Hello{Side: relay.SideCustomer, GUID: guidBytes(t, guid)})); err != nil {
		t.Fatal(err)
	}
	var ans [1]byte
	if _, err := io.ReadFull(conn, ans[:]); err != nil || relay.Reason(ans[0]) != relay.ReasonOK {
		t.Fatalf("answer %v, %v", ans, err)
	}
	waitUntil(t, "relay_connected", func() bool { _, ok := pub.sourceIP(guid); return ok })
	if ip, _ := pub.sourceIP(guid); ip != "203.0.113.7" {
		t.Errorf("source_ip %q, want the header's 203.0.113.7", ip)
	}
	if _, err := dialRelay(t, addr, client, relay.SideCustomer, f.session(t), ""); err == nil || reasonOf(err) != 0xff {
		t.Fatalf("the balancer without a header: %v, want the connection closed", err)
	}
}

// serveRelay serves srv on a loopback port until the test ends and returns
// the address.
func serveRelay(t *testing.T, srv *relay.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr().String()
}
