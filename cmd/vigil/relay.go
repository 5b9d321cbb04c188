package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/relay"
)

// RelayConfig is the relay's configuration, from flags and VIGIL_RELAY_*
// variables, bound by bindRelayConfig. The transport of its events is
// Config.Bus (VIGIL_BUS).
type RelayConfig struct {
	Addr               string
	CertFile, KeyFile  string
	Disable            bool
	ID                 string
	HandshakeTimeout   time.Duration
	PeerTimeout        time.Duration
	IdleTimeout        time.Duration
	PollInterval       time.Duration
	DrainGrace         time.Duration
	MaxConns           int
	MaxHandshakesPerIP int
	// ProxyFrom is the comma-separated CIDRs or addresses of the load
	// balancers that send a PROXY protocol header; see proxyFrom.
	ProxyFrom string
	// The gateway registry (docs/relay-protocol.md): the address applets
	// are given (default: the listen address), the region served (default:
	// the deployment's), how often the node heartbeats, and, for serve, how
	// long a silent gateway stays listed.
	PublicAddr string
	Region     string
	// UDPAddr is the UDP rendezvous address (default: the TCP listen
	// address, as UDP; "off" runs none).
	UDPAddr           string
	HeartbeatInterval time.Duration
	GatewayTTL        time.Duration
	// For vigil relay alone.
	BackendURL  string
	APIKey      string
	MetricsAddr string
}

// relaySetting is one relay configuration entry (a flag and its variable).
type relaySetting struct {
	flag, env, def, help string
	str                  *string
	dur                  *time.Duration
	num                  *int
	boolean              *bool
	secret               bool
}

func (c *RelayConfig) settings() []relaySetting {
	return []relaySetting{
		{flag: "relay-addr", env: "VIGIL_RELAY_ADDR", def: "127.0.0.1:8443", help: "address the TLS relay listens on", str: &c.Addr},
		{flag: "relay-cert-file", env: "VIGIL_RELAY_CERT_FILE", def: "", help: "relay TLS certificate (PEM); outside production a self-signed one is generated in the data dir when empty", str: &c.CertFile},
		{flag: "relay-key-file", env: "VIGIL_RELAY_KEY_FILE", def: "", help: "relay TLS private key (PEM)", str: &c.KeyFile},
		{flag: "relay-disable", env: "VIGIL_RELAY_DISABLE", def: "false", help: "do not run the relay inside serve", boolean: &c.Disable},
		{flag: "relay-id", env: "VIGIL_RELAY_ID", def: "", help: "name of this relay node in its events (default: the host name)", str: &c.ID},
		{flag: "relay-handshake-timeout", env: "VIGIL_RELAY_HANDSHAKE_TIMEOUT", def: "10s", help: "bound on the TLS handshake, hello and authorization", dur: &c.HandshakeTimeout},
		{flag: "relay-peer-timeout", env: "VIGIL_RELAY_PEER_TIMEOUT", def: "60s", help: "how long an accepted side waits for its peer", dur: &c.PeerTimeout},
		{flag: "relay-idle-timeout", env: "VIGIL_RELAY_IDLE_TIMEOUT", def: "10m", help: "close a pair after this long without a byte either way (0: never)", dur: &c.IdleTimeout},
		{flag: "relay-poll-interval", env: "VIGIL_RELAY_POLL_INTERVAL", def: "5s", help: "how often the relay asks which of its sessions closed", dur: &c.PollInterval},
		{flag: "relay-drain-grace", env: "VIGIL_RELAY_DRAIN_GRACE", def: "30s", help: "on shutdown, how long active pairs may go on", dur: &c.DrainGrace},
		{flag: "relay-max-conns", env: "VIGIL_RELAY_MAX_CONNS", def: "20000", help: "most concurrent relay connections", num: &c.MaxConns},
		{flag: "relay-max-handshakes-per-ip", env: "VIGIL_RELAY_MAX_HANDSHAKES_PER_IP", def: "32", help: "most connections of one source address in the handshake at once", num: &c.MaxHandshakesPerIP},
		{flag: "relay-proxy-from", env: "VIGIL_RELAY_PROXY_FROM", def: "", help: "comma-separated CIDRs or addresses of load balancers that must send a PROXY protocol header (v1 or v2) naming the client (off when empty)", str: &c.ProxyFrom},
		{flag: "relay-public-addr", env: "VIGIL_RELAY_PUBLIC_ADDR", def: "", help: "address applets are told to dial, registered in the gateway registry (default: the listen address)", str: &c.PublicAddr},
		{flag: "relay-udp-addr", env: "VIGIL_RELAY_UDP_ADDR", def: "", help: "UDP address of the P2P rendezvous (default: the relay's TCP address, as UDP; off: none)", str: &c.UDPAddr},
		{flag: "relay-region", env: "VIGIL_RELAY_REGION", def: "", help: "data-residency region the relay serves, registered in the gateway registry (default: the deployment's)", str: &c.Region},
		{flag: "relay-heartbeat-interval", env: "VIGIL_RELAY_HEARTBEAT_INTERVAL", def: "5s", help: "how often the relay heartbeats to the gateway registry", dur: &c.HeartbeatInterval},
		{flag: "gateway-ttl", env: "VIGIL_GATEWAY_TTL", def: "15s", help: "serve: how long a gateway stays listed after its last heartbeat", dur: &c.GatewayTTL},
		{flag: "relay-backend-url", env: "VIGIL_RELAY_BACKEND_URL", def: "http://127.0.0.1:8080", help: "vigil relay: the HTTP API it asks", str: &c.BackendURL},
		{flag: "relay-api-key", env: "VIGIL_RELAY_API_KEY", def: "", help: "vigil relay: an API key of role relay", str: &c.APIKey, secret: true},
		{flag: "relay-metrics-addr", env: "VIGIL_RELAY_METRICS_ADDR", def: "", help: "vigil relay: serve /metrics on this address (off when empty)", str: &c.MetricsAddr},
	}
}

// bindRelayConfig registers the relay's flags on fs with defaults from
// getenv, like bindConfig.
func bindRelayConfig(fs *flag.FlagSet, getenv func(string) string) *RelayConfig {
	c := &RelayConfig{}
	for _, s := range c.settings() {
		def := s.def
		if v := getenv(s.env); v != "" {
			def = v
		}
		help := s.help + " (" + s.env + ")"
		switch {
		case s.str != nil:
			*s.str = def
			if s.secret {
				fs.Func(s.flag, help, func(v string) error { *s.str = v; return nil })
			} else {
				fs.StringVar(s.str, s.flag, def, help)
			}
		case s.dur != nil:
			d, err := time.ParseDuration(def)
			if err != nil {
				fmt.Fprintf(os.Stderr, "vigil: %s=%q is not a duration; using %s\n", s.env, def, s.def)
				d, _ = time.ParseDuration(s.def)
			}
			fs.DurationVar(s.dur, s.flag, d, help)
		case s.num != nil:
			n, err := strconv.Atoi(def)
			if err != nil {
				fmt.Fprintf(os.Stderr, "vigil: %s=%q is not a number; using %s\n", s.env, def, s.def)
				n, _ = strconv.Atoi(s.def)
			}
			fs.IntVar(s.num, s.flag, n, help)
		case s.boolean != nil:
			b, err := strconv.ParseBool(def)
			if err != nil {
				fmt.Fprintf(os.Stderr, "vigil: %s=%q is not a boolean; using %s\n", s.env, def, s.def)
				b, _ = strconv.ParseBool(s.def)
			}
			fs.BoolVar(s.boolean, s.flag, b, help)
		}
	}
	return c
}

// proxyFrom parses ProxyFrom (VIGIL_RELAY_PROXY_FROM): the load
// balancers whose connections must begin with a PROXY protocol header. It
// returns an error naming the setting and the first entry that is neither
// a CIDR nor an address.
func (c *RelayConfig) proxyFrom() ([]netip.Prefix, error) {
	p, err := parsePrefixes(c.ProxyFrom)
	if err != nil {
		return nil, fmt.Errorf("VIGIL_RELAY_PROXY_FROM (--relay-proxy-from): %w", err)
	}
	return p, nil
}

func (c *RelayConfig) server(log *slog.Logger, tlsCfg relayTLS, backend relay.Backend, pub relay.Publisher) (*relay.Server, error) {
	idle := c.IdleTimeout
	if idle == 0 {
		idle = -1
	}
	proxyFrom, err := c.proxyFrom()
	if err != nil {
		return nil, err
	}
	return relay.New(relay.Config{
		TLS: tlsCfg.cfg, RelayID: c.ID, Backend: backend, Publisher: pub, Logger: log,
		HandshakeTimeout: c.HandshakeTimeout, PeerTimeout: c.PeerTimeout, IdleTimeout: idle,
		PollInterval: c.PollInterval, MaxConns: c.MaxConns, MaxHandshakesPerIP: c.MaxHandshakesPerIP,
		ProxyFrom: proxyFrom,
	})
}

type relayTLS struct {
	cfg      *tls.Config
	certPath string
}

// loadRelayTLS loads the relay's certificate, or outside production
// generates a self-signed one in the data dir.
func loadRelayTLS(cfg *Config, rc *RelayConfig, log *slog.Logger) (relayTLS, error) {
	host, _, _ := net.SplitHostPort(rc.Addr)
	cert, path, err := relay.LoadCertificate(rc.CertFile, rc.KeyFile, cfg.DataDir, !cfg.Production(), []string{host})
	if err != nil {
		return relayTLS{}, err
	}
	if rc.CertFile == "" {
		log.Warn("relay: using a self-signed certificate (development only)", "cert", path)
		return relayTLS{cfg: relay.ServerTLS(cert), certPath: path}, nil
	}
	// Configured files are watched: a renewed certificate takes effect at
	// the next handshakes, without a restart that would cut every pair.
	rl, err := relay.NewCertReloader(rc.CertFile, rc.KeyFile, 10*time.Second, log)
	if err != nil {
		return relayTLS{}, err
	}
	return relayTLS{cfg: relay.ServerTLSReloading(rl), certPath: path}, nil
}

// inProcessBackend is relay.Backend over the service, for the relay inside
// serve: it serves every tenant.
type inProcessBackend struct {
	rel *service.Relay
	p   service.Principal
}

var _ relay.Backend = inProcessBackend{}

func (b inProcessBackend) AuthorizeCustomer(ctx context.Context, guid string) (relay.Grant, error) {
	g, err := b.rel.AuthorizeCustomer(ctx, b.p, guid)
	return relay.Grant{Tenant: g.Tenant}, err
}

func (b inProcessBackend) AuthorizeTechnician(ctx context.Context, guid, token string) (relay.Grant, error) {
	g, err := b.rel.AuthorizeTechnician(ctx, b.p, guid, token)
	return relay.Grant{Tenant: g.Tenant, TechnicianID: g.TechnicianID}, err
}

func (b inProcessBackend) ClosedSessions(ctx context.Context, refs []relay.SessionRef) ([]relay.SessionRef, error) {
	in := make([]service.RelaySession, len(refs))
	for i, r := range refs {
		in[i] = service.RelaySession{Tenant: r.Tenant, GUID: r.GUID}
	}
	out, err := b.rel.ClosedSessions(ctx, b.p, in)
	refs = refs[:0:0]
	for _, r := range out {
		refs = append(refs, relay.SessionRef{Tenant: r.Tenant, GUID: r.GUID})
	}
	return refs, err
}

// httpBackend is relay.Backend over the HTTP API with a relay key, for
// vigil relay running alone.
type httpBackend struct {
	base   string
	key    string
	client *http.Client
}

var _ relay.Backend = (*httpBackend)(nil)

func (b *httpBackend) call(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(b.base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.key)
	req.Header.Set("Content-Type", "application/json")
	res, err := b.client.Do(req)
	if err != nil {
		return fmt.Errorf("relay backend %s: %w", path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("relay backend %s: %w", path, err)
	}
	if res.StatusCode == http.StatusNoContent && out == nil {
		return nil
	}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return codedError(e.Error.Code, e.Error.Message, res.StatusCode)
	}
	return json.Unmarshal(raw, out)
}

// codedError turns an API error answer back into the domain error the
// relay branches on.
func codedError(code, msg string, status int) error {
	sentinels := map[string]error{
		domain.CodeNotFound: domain.ErrNotFound, domain.CodeSessionClosed: domain.ErrSessionClosed,
		domain.CodeForbidden: domain.ErrForbidden, domain.CodeUnauthenticated: domain.ErrUnauthenticated,
		domain.CodeConflict: domain.ErrConflict,
	}
	if s, ok := sentinels[code]; ok {
		return &domain.Error{Code: code, Message: msg, Err: s}
	}
	return fmt.Errorf("relay backend: status %d %s: %s", status, code, msg)
}

func (b *httpBackend) AuthorizeCustomer(ctx context.Context, guid string) (relay.Grant, error) {
	var g service.RelayGrant
	err := b.call(ctx, "/v1/relay/authorize", map[string]string{"side": "customer", "session": guid}, &g)
	return relay.Grant{Tenant: g.Tenant}, err
}

func (b *httpBackend) AuthorizeTechnician(ctx context.Context, guid, token string) (relay.Grant, error) {
	var g service.RelayGrant
	err := b.call(ctx, "/v1/relay/authorize", map[string]string{"side": "technician", "session": guid, "token": token}, &g)
	return relay.Grant{Tenant: g.Tenant, TechnicianID: g.TechnicianID}, err
}

func (b *httpBackend) ClosedSessions(ctx context.Context, refs []relay.SessionRef) ([]relay.SessionRef, error) {
	var out struct {
		Closed []relay.SessionRef `json:"closed"`
	}
	err := b.call(ctx, "/v1/relay/closed", map[string]any{"sessions": refs}, &out)
	return out.Closed, err
}

// gatewayInfo is what the relay node id, listening on listen (TCP) and
// udp (the rendezvous, "" when none), registers: the public host with
// the UDP port when a public address is configured.
func (c *RelayConfig) gatewayInfo(id, listen, udp string) relay.GatewayInfo {
	addr := c.PublicAddr
	if addr == "" {
		addr = listen
	}
	if udp != "" && c.PublicAddr != "" {
		host, _, _ := net.SplitHostPort(c.PublicAddr)
		_, port, _ := net.SplitHostPort(udp)
		udp = net.JoinHostPort(host, port)
	}
	return relay.GatewayInfo{ID: id, Region: c.Region, PublicAddr: addr, UDPAddr: udp, Capacity: c.MaxConns}
}

// startRendezvous serves the UDP rendezvous of srv beside its TCP
// listener ln, and returns its address, or "" when it is off or its port
// cannot be had (logged: the relay still relays; P2P then stays TCP or
// relayed).
func (c *RelayConfig) startRendezvous(srv *relay.Server, ln net.Listener, log *slog.Logger) string {
	addr := c.UDPAddr
	if addr == "off" {
		return ""
	}
	if addr == "" {
		addr = ln.Addr().String()
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		log.Warn("relay: no UDP rendezvous", "addr", addr, "err", err)
		return ""
	}
	go func() {
		if err := srv.ServeUDP(pc, relay.RendezvousConfig{}); err != nil {
			log.Error("relay: UDP rendezvous stopped", "err", err)
		}
	}()
	return pc.LocalAddr().String()
}

// serviceRegistrar is relay.Registrar over the service, for the relay
// inside serve: a deployment gateway, serving every tenant of the region.
type serviceRegistrar struct {
	gws *service.Gateways
	p   service.Principal
}

func (r serviceRegistrar) Heartbeat(ctx context.Context, info relay.GatewayInfo) error {
	return r.gws.Heartbeat(ctx, r.p, service.GatewayHeartbeat(info))
}

// Heartbeat implements relay.Registrar over the HTTP API, for vigil relay
// alone: the gateway serves the relay key's tenant.
func (b *httpBackend) Heartbeat(ctx context.Context, info relay.GatewayInfo) error {
	return b.call(ctx, "/v1/gateways/heartbeat", info, nil)
}

// relayRunning is a started relay (and, inside serve, the bus subscriber).
type relayRunning struct {
	srv    *relay.Server
	grace  time.Duration
	served chan error
	cancel context.CancelFunc
	subs   chan struct{}
	bus    eventBus
	// gateways is the registry, served by the API and watched by serve.
	gateways *service.Gateways
}

// Stop drains the relay for the grace period (or until ctx ends), stops
// the subscriber and closes the bus. Safe on a nil *relayRunning.
func (r *relayRunning) Stop(ctx context.Context) error {
	if r == nil {
		return nil
	}
	var err error
	if r.srv != nil {
		dctx, cancel := context.WithTimeout(ctx, r.grace)
		defer cancel()
		err = r.srv.Shutdown(dctx)
		if errors.Is(err, context.DeadlineExceeded) {
			err = nil // pairs cut after the grace period: expected
		}
		if serr := <-r.served; serr != nil && err == nil {
			err = serr
		}
	}
	r.cancel()
	if r.subs != nil {
		<-r.subs
	}
	if cerr := r.bus.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// startRelay starts, for serve, the relay (unless rc.Disable) and the bus
// subscriber that appends the relay events of any relay to the log
// (always, so that events of relays running alone are recorded). It
// registers the relay metrics on reg. Stop the result with Stop.
func startRelay(ctx context.Context, sys *system, cfg *Config, rc *RelayConfig, reg prometheus.Registerer, log *slog.Logger) (*relayRunning, error) {
	var ln net.Listener
	started := false
	if !rc.Disable {
		if _, err := rc.proxyFrom(); err != nil {
			return nil, err
		}
		// Listen first: a busy relay port stops serve before anything is
		// started and stopped again (whose cancelled subscription logged
		// a spurious ERROR before the real message).
		var err error
		if ln, err = net.Listen("tcp", rc.Addr); err != nil {
			return nil, fmt.Errorf("relay listen: %w (the relay port is VIGIL_RELAY_ADDR; VIGIL_RELAY_DISABLE=true runs serve without it)", err)
		}
		defer func() {
			if !started {
				ln.Close()
			}
		}()
	}
	bus, err := openBus(ctx, cfg, sys.pool, log)
	if err != nil {
		return nil, err
	}
	locate := locateSession(sys.pool, sys.logStore)
	rel := sys.service.Relay(locate)
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	gws := sys.service.Gateways(sys.store, locate, rc.GatewayTTL)
	run := &relayRunning{grace: rc.DrainGrace, cancel: cancel, bus: bus, subs: make(chan struct{}), gateways: gws}
	go func() {
		defer close(run.subs)
		// The watchdog runs beside the subscriber and stops with it.
		go gws.RunWatchdog(sctx, 0)
		for sctx.Err() == nil {
			// A subscription ended by stopping (stopEarly after a failed
			// start, such as a busy relay port) is no error.
			if err := bus.Subscribe(sctx, rel.HandleRelayMessage); err != nil && sctx.Err() == nil {
				log.Error("relay events: subscription", "err", err)
			}
			select {
			case <-sctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	if rc.Disable {
		return run, nil
	}
	tc, err := loadRelayTLS(cfg, rc, log)
	if err != nil {
		run.stopEarly()
		return nil, err
	}
	id := rc.ID
	if id == "" {
		id, _ = os.Hostname()
	}
	backend := inProcessBackend{rel: rel, p: service.Principal{Role: service.RoleRelay, CredentialID: "relay:" + id}}
	srv, err := rc.server(log, tc, backend, bus)
	if err != nil {
		run.stopEarly()
		return nil, err
	}
	if err := srv.Metrics().Register(reg); err != nil {
		run.stopEarly()
		return nil, err
	}
	started = true
	run.srv, run.served = srv, make(chan error, 1)
	go func() { run.served <- srv.Serve(ln) }()
	udp := rc.startRendezvous(srv, ln, log)
	go srv.RunHeartbeats(sctx, serviceRegistrar{gws: gws, p: backend.p}, rc.gatewayInfo(id, ln.Addr().String(), udp), rc.HeartbeatInterval)
	log.Info("relay listening", "addr", ln.Addr().String(), "bus", busName(cfg.Bus))
	return run, nil
}

func (r *relayRunning) stopEarly() {
	r.cancel()
	<-r.subs
	r.bus.Close()
}

func busName(u string) string {
	if strings.HasPrefix(u, "nats") || strings.HasPrefix(u, "tls") {
		return "nats"
	}
	return "postgres"
}

// runRelay is `vigil relay`: the relay alone, asking the backend over HTTP
// with a relay API key and publishing its events on the bus.
func runRelay(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := bindConfig(fs, env)
	rc := bindRelayConfig(fs, env)
	setUsage(fs, "vigil relay [flags]", "The TLS gateway relay alone: it asks the backend (VIGIL_RELAY_BACKEND_URL) with a relay\nAPI key (VIGIL_RELAY_API_KEY) and publishes its events on the bus (docs/relay-protocol.md).")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	lvl, err := parseLevel(cfg.LogLevel)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	if rc.APIKey == "" {
		return exitError{code: 2, msg: "vigil relay needs VIGIL_RELAY_API_KEY (an API key of role relay)"}
	}
	if _, err := rc.proxyFrom(); err != nil {
		return err
	}
	var pool *pgxpool.Pool
	if busName(cfg.Bus) == "postgres" {
		if pool, err = pgxpool.New(ctx, cfg.DatabaseURL); err != nil {
			return fmt.Errorf("bus database: %w", err)
		}
		defer pool.Close()
	}
	bus, err := openBus(ctx, cfg, pool, log)
	if err != nil {
		return err
	}
	defer bus.Close()
	tc, err := loadRelayTLS(cfg, rc, log)
	if err != nil {
		return err
	}
	backend := &httpBackend{base: rc.BackendURL, key: rc.APIKey, client: &http.Client{Timeout: 10 * time.Second}}
	srv, err := rc.server(log, tc, backend, bus)
	if err != nil {
		return err
	}
	if rc.MetricsAddr != "" {
		reg := prometheus.NewRegistry()
		if err := srv.Metrics().Register(reg); err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsAuth(cfg.MetricsToken, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
		mln, err := net.Listen("tcp", rc.MetricsAddr)
		if err != nil {
			return err
		}
		go func() { _ = http.Serve(mln, mux) }()
	}
	ln, err := net.Listen("tcp", rc.Addr)
	if err != nil {
		return fmt.Errorf("relay listen: %w", err)
	}
	fmt.Fprintf(stdout, "relay listening on %s (certificate %s)\n", ln.Addr(), tc.certPath)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	id := rc.ID
	if id == "" {
		id, _ = os.Hostname()
	}
	hbCtx, stopHeartbeats := context.WithCancel(ctx)
	defer stopHeartbeats()
	udp := rc.startRendezvous(srv, ln, log)
	go srv.RunHeartbeats(hbCtx, backend, rc.gatewayInfo(id, ln.Addr().String(), udp), rc.HeartbeatInterval)
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), rc.DrainGrace)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return <-served
}

// eventBus is the relay events' transport: adapters/watermill's Bus.
type eventBus interface {
	relay.Publisher
	Subscribe(ctx context.Context, handle func(ctx context.Context, payload []byte) error) error
	Close() error
}

// simRelayTLS is vigil simulate's trust for the relay: the CA file, or the
// certificate a development server generated in its data dir.
func simRelayTLS(addr, caFile, dataDir string) (*tls.Config, error) {
	if caFile == "" {
		if dataDir == "" {
			dataDir = "./var"
		}
		caFile = filepath.Join(dataDir, relay.GeneratedCertFile)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w (name one with --ca)", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%q: want HOST:PORT", addr)
	}
	return &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}, nil
}

// simRelaySession pairs an applet and a console for session guid through
// the relay, pushes n random bytes each way, checks that each side got
// exactly what the other sent, runs after (the P2P attempt of simulate),
// if any, while both connections are up, and hangs up.
func simRelaySession(ctx context.Context, addr string, tc *tls.Config, guid, token string, n int, after ...func(cust, tech *tls.Conn) error) error {
	raw, err := hex.DecodeString(guid)
	if err != nil || len(raw) != 16 {
		return fmt.Errorf("session id %q", guid)
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cust, err := relay.Dial(dctx, addr, tc, relay.Hello{Side: relay.SideCustomer, GUID: [16]byte(raw)})
	if err != nil {
		return fmt.Errorf("applet: %w", err)
	}
	defer cust.Close()
	tech, err := relay.Dial(dctx, addr, tc, relay.Hello{Side: relay.SideTechnician, GUID: [16]byte(raw), Token: token})
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	defer tech.Close()
	deadline, _ := dctx.Deadline()
	cust.SetDeadline(deadline)
	tech.SetDeadline(deadline)
	up, down := make([]byte, n), make([]byte, n/2+1)
	crand.Read(up)
	crand.Read(down)
	errs := make(chan error, 4)
	send := func(c *tls.Conn, b []byte) { _, err := c.Write(b); errs <- err }
	recv := func(c *tls.Conn, want []byte) {
		h := sha256.New()
		if _, err := io.CopyN(h, c, int64(len(want))); err != nil {
			errs <- err
			return
		}
		if [32]byte(h.Sum(nil)) != sha256.Sum256(want) {
			errs <- errors.New("relayed bytes differ")
			return
		}
		errs <- nil
	}
	go send(cust, up)
	go send(tech, down)
	go recv(tech, up)
	go recv(cust, down)
	for range 4 {
		if err := <-errs; err != nil {
			return err
		}
	}
	for _, f := range after {
		if err := f(cust, tech); err != nil {
			return err
		}
	}
	return nil
}
