package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigilhq/vigil/domain"
)

// Config configures a Server. Zero durations and limits take the defaults
// named on each field.
type Config struct {
	// TLS is the server's TLS configuration, normally from ServerTLS.
	TLS *tls.Config
	// RelayID names this relay node in the events (default: the host name).
	RelayID string
	// Backend authorizes sides and reports closed sessions. Required.
	Backend Backend
	// Publisher receives the events; nil publishes nothing.
	Publisher Publisher
	// Logger receives operational messages (default slog.Default()).
	Logger *slog.Logger
	// Metrics, when set, is updated; see NewMetrics.
	Metrics *Metrics

	// HandshakeTimeout bounds the TLS handshake, the hello and the
	// backend's answer (default 10 s).
	HandshakeTimeout time.Duration
	// PeerTimeout is how long an accepted side waits for its peer (default 60 s).
	PeerTimeout time.Duration
	// IdleTimeout closes a pair when no byte moved either way for this
	// long (default 10 min; negative disables).
	IdleTimeout time.Duration
	// PollInterval is how often the relay asks the backend which of its
	// sessions closed (default 5 s).
	PollInterval time.Duration
	// MaxConns bounds concurrent connections (default 20,000).
	MaxConns int
	// MaxHandshakesPerIP bounds the connections of one source address in
	// the handshake at once (default 32).
	MaxHandshakesPerIP int
	// BufferSize is each of the two pooled copy buffers a direction holds
	// while bytes flow (default 32 KiB; a TLS read returns at most one
	// 16 KiB record).
	BufferSize int
	// QuietPeriod is how long a direction goes without bytes before it
	// gives its buffer back and parks its socket (default 2 s).
	QuietPeriod time.Duration
	// NoParking keeps a goroutine blocked on every quiet direction instead
	// of parking it (the only way where epoll is unavailable).
	NoParking bool
	// PublishTimeout bounds one publication (default 10 s).
	PublishTimeout time.Duration

	// ProxyFrom lists the load balancers that announce each client with a
	// PROXY protocol header (v1 or v2) before TLS. A connection whose TCP
	// peer is in ProxyFrom must begin with one, or it is closed; the
	// client's address in it is the connection's source address (for
	// MaxHandshakesPerIP and the relay_connected event). A connection from
	// any other address is never read for a header, so a client cannot
	// name itself. Empty (the default) turns the protocol off.
	ProxyFrom []netip.Prefix
	// ProxyHeaderTimeout bounds reading the header of a connection from
	// ProxyFrom (default 3 s, and never past HandshakeTimeout). Until the
	// header names the client the connection counts against no address's
	// handshake limit, so this bound is kept short; balancers send the
	// header at once.
	ProxyHeaderTimeout time.Duration
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, 10*time.Second)
	def(&c.PeerTimeout, 60*time.Second)
	def(&c.IdleTimeout, 10*time.Minute)
	def(&c.PollInterval, 5*time.Second)
	def(&c.PublishTimeout, 10*time.Second)
	def(&c.QuietPeriod, 2*time.Second)
	def(&c.ProxyHeaderTimeout, 3*time.Second)
	if c.MaxConns <= 0 {
		c.MaxConns = 20000
	}
	if c.MaxHandshakesPerIP <= 0 {
		c.MaxHandshakesPerIP = 32
	}
	if c.BufferSize <= 0 {
		c.BufferSize = 32 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.RelayID == "" {
		c.RelayID, _ = os.Hostname()
		if c.RelayID == "" {
			c.RelayID = "relay"
		}
	}
}

// Server is the relay. Create it with New, run it with Serve, stop it with
// Shutdown. It is safe for concurrent use.
//
// A connection holds a goroutine only while it is in the handshake or its
// bytes flow: a waiting side is a map entry and a timer, and a direction
// that has been quiet for QuietPeriod parks its socket in an epoll set (see
// parker) until it is readable again.
type Server struct {
	cfg    Config
	m      *Metrics
	pool   sync.Pool
	sem    chan struct{}
	pub    *eventQueue
	parker *parker // nil where parking is unavailable

	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	handshakes map[netip.Addr]int
	waiting    map[SessionRef]*waiter
	pairs      map[SessionRef]*pair
	closing    bool
	// For the UDP rendezvous (rendezvous.go): pairs by GUID, and the
	// sessions the relay tore down because they closed, by GUID.
	pairByGUID  map[string]*pair
	closedGUIDs map[string]time.Time

	conns   sync.WaitGroup // open connections
	done    chan struct{}
	stopped chan struct{}
	stop    sync.Once
}

type waiter struct {
	side  Side
	conn  *tls.Conn
	since time.Time
	timer *time.Timer // the peer timeout
}

type pair struct {
	ref        SessionRef
	customer   *tls.Conn
	technician *tls.Conn
	start      time.Time
	closeOnce  sync.Once
	reason     atomic.Value // string
	last       atomic.Int64 // unix nanos of the last byte either way
	dirs       [2]direction // from the customer, from the technician
	ended      atomic.Int32 // directions that ended
}

// direction is one way of a pair. Its fields other than mu, parked and
// timer belong to the one goroutine that pumps it at a time.
type direction struct {
	p        *pair
	src, dst *tls.Conn
	from     string
	counter  adder
	n        int64 // bytes written to dst

	mu     sync.Mutex
	parked *parkEntry
	timer  *time.Timer // idle timeout while parked
}

// New returns a server for cfg. It returns an error without a TLS
// configuration or a backend, or for an invalid prefix in ProxyFrom.
func New(cfg Config) (*Server, error) {
	if cfg.TLS == nil || cfg.Backend == nil {
		return nil, errors.New("relay: a TLS configuration and a backend are required")
	}
	from := make([]netip.Prefix, 0, len(cfg.ProxyFrom))
	for _, p := range cfg.ProxyFrom {
		if !p.IsValid() {
			return nil, fmt.Errorf("relay: invalid ProxyFrom prefix %v", p)
		}
		// Peers are compared unmapped (remoteAddr): an IPv4-mapped prefix
		// names IPv4 peers.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		from = append(from, p.Masked())
	}
	cfg.ProxyFrom = from
	cfg.setDefaults()
	s := &Server{
		cfg: cfg, m: cfg.Metrics, sem: make(chan struct{}, cfg.MaxConns),
		listeners: map[net.Listener]struct{}{}, handshakes: map[netip.Addr]int{},
		waiting: map[SessionRef]*waiter{}, pairs: map[SessionRef]*pair{},
		pairByGUID: map[string]*pair{}, closedGUIDs: map[string]time.Time{},
		done: make(chan struct{}), stopped: make(chan struct{}),
	}
	if s.m == nil {
		s.m = NewMetrics()
	}
	size := cfg.BufferSize
	s.pool.New = func() any { b := make([]byte, size); return &b }
	if !cfg.NoParking {
		p, err := newParker()
		if err != nil {
			cfg.Logger.Info("relay: quiet connections keep their goroutine", "why", err)
		} else {
			s.parker = p
		}
	}
	s.pub = newEventQueue(cfg.Publisher, cfg.Logger, cfg.PublishTimeout)
	go s.poll()
	return s, nil
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.m }

// ListenAndServe listens on addr (TCP) and serves until Shutdown.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// Serve accepts TCP connections on ln, performs the TLS handshake itself
// and serves them until Shutdown; it then returns nil. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		select {
		case s.sem <- struct{}{}:
		default:
			s.m.refused(ReasonBusy)
			c.Close()
			continue
		}
		s.conns.Add(1)
		go s.handle(c)
	}
}

// release frees the slot of a connection that is closed for good.
func (s *Server) release() {
	<-s.sem
	s.conns.Done()
}

func remoteAddr(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// fromBalancer reports whether peer is in ProxyFrom.
func (s *Server) fromBalancer(peer netip.Addr) bool {
	for _, p := range s.cfg.ProxyFrom {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// readProxyHeader reads the PROXY protocol header of a connection from a
// balancer in ProxyFrom, by the earlier of deadline and the header
// timeout, and returns the client's address it names, or the balancer's
// own (peer) for a LOCAL or UNKNOWN header. Without a valid header it
// closes the connection, counts the refusal and returns false.
func (s *Server) readProxyHeader(raw net.Conn, peer netip.Addr, deadline time.Time) (netip.Addr, bool) {
	if dl := time.Now().Add(s.cfg.ProxyHeaderTimeout); dl.Before(deadline) {
		deadline = dl
	}
	raw.SetReadDeadline(deadline)
	h, err := ReadProxyHeader(raw)
	if err != nil {
		if errors.Is(err, ErrBadProxyHeader) {
			// Likely a balancer that does not send the header (or sends
			// another version than it should): say so.
			s.cfg.Logger.Warn("relay: no valid PROXY protocol header from a balancer in ProxyFrom", "peer", peer, "err", err)
		} else {
			s.cfg.Logger.Debug("relay: reading the PROXY protocol header", "peer", peer, "err", err)
		}
		s.m.refusedBefore(RefusalBadProxyHeader)
		raw.Close()
		s.release()
		return netip.Addr{}, false
	}
	if h.Local {
		return peer, true
	}
	return h.Source.Addr().Unmap(), true
}

// handle runs one connection through the PROXY protocol header (from a
// balancer in ProxyFrom), the TLS handshake, the hello and the backend's
// answer; it then leaves it waiting or starts its pair.
func (s *Server) handle(raw net.Conn) {
	deadline := time.Now().Add(s.cfg.HandshakeTimeout)
	ip := remoteAddr(raw)
	if s.fromBalancer(ip) {
		// The per-address handshake limit below keys by the client the
		// header names, known only once it is read.
		var ok bool
		if ip, ok = s.readProxyHeader(raw, ip, deadline); !ok {
			return
		}
	}
	s.mu.Lock()
	if s.handshakes[ip] >= s.cfg.MaxHandshakesPerIP {
		s.mu.Unlock()
		s.m.refused(ReasonBusy)
		raw.Close()
		s.release()
		return
	}
	s.handshakes[ip]++
	s.mu.Unlock()
	inHandshake := true
	endHandshake := func() {
		if inHandshake {
			inHandshake = false
			s.mu.Lock()
			if s.handshakes[ip]--; s.handshakes[ip] <= 0 {
				delete(s.handshakes, ip)
			}
			s.mu.Unlock()
		}
	}
	defer endHandshake()

	conn := tls.Server(raw, s.cfg.TLS)
	conn.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		s.m.refused(ReasonBadHello)
		raw.Close()
		s.release()
		return
	}
	hello, err := ReadHello(conn)
	if err != nil {
		r := ReasonBadHello
		if errors.Is(err, ErrBadVersion) {
			r = ReasonBadVersion
		}
		s.refuse(conn, r)
		return
	}
	var grant Grant
	guid := hello.GUIDString()
	if hello.Side == SideCustomer {
		grant, err = s.cfg.Backend.AuthorizeCustomer(ctx, guid)
	} else {
		grant, err = s.cfg.Backend.AuthorizeTechnician(ctx, guid, hello.Token)
	}
	if err != nil {
		r := reasonFor(err)
		if r == ReasonUnavailable {
			s.cfg.Logger.Warn("relay: asking the backend", "session", guid, "err", err)
		}
		s.refuse(conn, r)
		return
	}
	ref := SessionRef{Tenant: grant.Tenant, GUID: guid}
	now := time.Now()

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		s.refuse(conn, ReasonShuttingDown)
		return
	}
	if _, busy := s.pairs[ref]; busy {
		s.mu.Unlock()
		s.refuse(conn, ReasonSideTaken)
		return
	}
	other, ok := s.waiting[ref]
	var replaced *waiter
	if ok && other.side == hello.Side {
		// A reconnect: the new connection takes the seat of the waiting
		// one, which may be a dead socket nobody will use again.
		replaced, other, ok = other, nil, false
		delete(s.waiting, ref)
		replaced.timer.Stop()
		s.m.Waiting.Dec()
		s.pub.add(Event{Type: EventClosed, Tenant: ref.Tenant, Session: guid, RelayID: s.cfg.RelayID, At: now,
			DurationMS: now.Sub(replaced.since).Milliseconds(), Reason: "replaced"})
	}
	var p *pair
	var w *waiter
	if ok {
		delete(s.waiting, ref)
		other.timer.Stop() // if it fired meanwhile, unwait finds the waiter gone
		p = s.newPair(ref, now, hello.Side, conn, other.conn)
		s.pairs[ref] = p
		s.pairByGUID[ref.GUID] = p
		s.m.Waiting.Dec()
		s.m.Pairs.Inc()
	} else {
		w = &waiter{side: hello.Side, conn: conn, since: now}
		w.timer = time.AfterFunc(s.cfg.PeerTimeout, func() { s.unwait(ref, w, "peer_timeout") })
		s.waiting[ref] = w
		s.m.Waiting.Inc()
	}
	// Events are queued in causal order under the lock: this side's
	// relay_connected always precedes the pair's relay_paired.
	s.pub.add(Event{Type: EventConnected, Tenant: ref.Tenant, Session: guid, RelayID: s.cfg.RelayID, At: now,
		Side: hello.Side.String(), SourceIP: ip.String()})
	if p != nil {
		wait := now.Sub(other.since)
		s.m.PairingLatency.Observe(wait.Seconds())
		s.pub.add(Event{Type: EventPaired, Tenant: ref.Tenant, Session: guid, RelayID: s.cfg.RelayID, At: now,
			PairingMS: wait.Milliseconds()})
	}
	s.mu.Unlock()
	endHandshake()
	if replaced != nil {
		replaced.conn.Close()
		s.release()
	}

	conn.SetDeadline(time.Time{})
	if _, err := conn.Write([]byte{byte(ReasonOK)}); err != nil {
		if p != nil {
			s.finish(p, hello.Side.String()+"_closed")
		} else {
			s.unwait(ref, w, hello.Side.String()+"_closed")
			return
		}
	}
	if p != nil {
		go s.pump(&p.dirs[0])
		s.pump(&p.dirs[1])
	}
}

func (s *Server) newPair(ref SessionRef, now time.Time, side Side, conn, other *tls.Conn) *pair {
	p := &pair{ref: ref, start: now}
	p.last.Store(now.UnixNano())
	if side == SideCustomer {
		p.customer, p.technician = conn, other
	} else {
		p.customer, p.technician = other, conn
	}
	p.dirs[0] = direction{p: p, src: p.customer, dst: p.technician, from: "customer", counter: s.m.BytesFromCustomer}
	p.dirs[1] = direction{p: p, src: p.technician, dst: p.customer, from: "technician", counter: s.m.BytesFromTechnician}
	return p
}

// refuse answers a refused hello and closes the connection.
func (s *Server) refuse(conn *tls.Conn, r Reason) {
	s.m.refused(r)
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	conn.Write([]byte{byte(r)})
	conn.Close()
	s.release()
}

func reasonFor(err error) Reason {
	switch {
	case errors.Is(err, domain.ErrSessionClosed):
		return ReasonSessionClosed
	case errors.Is(err, domain.ErrNotFound):
		return ReasonUnknownSession
	case errors.Is(err, domain.ErrForbidden), errors.Is(err, domain.ErrUnauthenticated):
		return ReasonNotAuthorized
	case errors.Is(err, domain.ErrConflict):
		return ReasonNotWaiting
	}
	return ReasonUnavailable
}

func closeReason(r Reason) string {
	if r == ReasonShuttingDown {
		return "shutdown"
	}
	return r.String()
}

// unwait removes a waiting side (unless a peer or a reconnect took it
// meanwhile), records its end and closes it.
func (s *Server) unwait(ref SessionRef, w *waiter, reason string) {
	s.mu.Lock()
	if s.waiting[ref] != w {
		s.mu.Unlock()
		return
	}
	delete(s.waiting, ref)
	w.timer.Stop()
	s.m.Waiting.Dec()
	now := time.Now()
	s.pub.add(Event{Type: EventClosed, Tenant: ref.Tenant, Session: ref.GUID, RelayID: s.cfg.RelayID, At: now,
		DurationMS: now.Sub(w.since).Milliseconds(), Reason: reason})
	s.mu.Unlock()
	w.conn.Close()
	s.release()
}

// finish records the first reason the pair ends for, closes both sides and
// wakes its parked directions, which then end.
func (s *Server) finish(p *pair, reason string) {
	p.closeOnce.Do(func() {
		p.reason.Store(reason)
		p.customer.Close()
		p.technician.Close()
		for i := range p.dirs {
			d := &p.dirs[i]
			d.mu.Lock()
			e := d.parked
			d.mu.Unlock()
			if e != nil {
				s.parker.unpark(e)
			}
		}
	})
}

// ended records the end of one direction; the second records the pair's
// close and frees both connections.
func (s *Server) ended(p *pair) {
	if p.ended.Add(1) != 2 {
		return
	}
	now := time.Now()
	s.mu.Lock()
	delete(s.pairs, p.ref)
	if s.pairByGUID[p.ref.GUID] == p {
		delete(s.pairByGUID, p.ref.GUID)
	}
	s.m.Pairs.Dec()
	reason, _ := p.reason.Load().(string)
	s.pub.add(Event{Type: EventClosed, Tenant: p.ref.Tenant, Session: p.ref.GUID, RelayID: s.cfg.RelayID, At: now,
		BytesFromCustomer: p.dirs[0].n, BytesFromTechnician: p.dirs[1].n,
		DurationMS: now.Sub(p.start).Milliseconds(), Reason: reason})
	s.mu.Unlock()
	s.release()
	s.release()
}

type adder interface{ Add(float64) }

// smallBuf is what a direction reads into until a read fills it: pooled
// large buffers are only held while bytes flow in bursts, so that pairs that
// trickle or have just formed cost little memory.
const smallBuf = 512

// burstBuffers is how many pooled buffers a busy direction cycles between
// its reader and its writer.
const burstBuffers = 2

// pump moves bytes from d.src to d.dst until the source ends or fails, then
// finishes the pair. It reads into a small buffer and writes at once; when
// a read fills the small buffer the direction is busy, and pump starts a
// writer goroutine: from then on pump reads (and decrypts) the next record
// into one pooled buffer while the writer encrypts and writes the previous
// one from another, so that a busy direction keeps two cores working and
// nothing is allocated per chunk. When the direction has been quiet for the
// quiet period it stops the writer, gives the buffers back and parks: the
// goroutine ends, and the parker starts pump again once the source is
// readable, the pair ends, or the idle timeout is due.
func (s *Server) pump(d *direction) {
	p := d.p
	idle := s.cfg.IdleTimeout
	lastByte := func() time.Time { return time.Unix(0, p.last.Load()) }
	if idle > 0 && time.Since(lastByte()) >= idle {
		s.finish(p, "idle_timeout")
	}
	var small [smallBuf]byte
	var w *writer
	for {
		buf := small[:]
		var cur *[]byte
		if w != nil {
			cur = <-w.free
			buf = *cur
		}
		deadline := time.Now().Add(s.cfg.QuietPeriod)
		if idle > 0 {
			if dl := lastByte().Add(idle); dl.Before(deadline) {
				deadline = dl
			}
		}
		d.src.SetReadDeadline(deadline)
		nr, rerr := d.src.Read(buf)
		if nr > 0 {
			p.last.Store(time.Now().UnixNano())
			if w != nil {
				w.full <- chunk{cur, nr}
				cur = nil
			} else {
				nw, werr := d.dst.Write(buf[:nr])
				d.n += int64(nw)
				d.counter.Add(float64(nw))
				if werr != nil {
					s.finish(p, otherSide(d.from)+"_closed")
					break
				}
				if nr == len(buf) {
					w = s.startWriter(d) // a burst
				}
			}
		}
		if cur != nil {
			w.free <- cur
		}
		if rerr == nil {
			continue
		}
		if w != nil {
			werr := s.stopWriter(d, w)
			w = nil
			if werr != nil {
				break // the writer finished the pair
			}
		}
		var ne net.Error
		if errors.As(rerr, &ne) && ne.Timeout() {
			if idle > 0 && time.Since(lastByte()) >= idle {
				s.finish(p, "idle_timeout")
				break
			}
			if s.park(d) {
				return
			}
			continue // no parking: block again on the small buffer
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, net.ErrClosed) {
			s.finish(p, d.from+"_closed")
		} else {
			s.finish(p, d.from+"_error")
		}
		break
	}
	s.ended(p)
}

// writer is the second goroutine of a busy direction.
type writer struct {
	full chan chunk    // read, to write
	free chan *[]byte  // written, to read into
	done chan struct{} // closed when the writer ended
	n    int64         // bytes written
	err  error         // the first write error
}

type chunk struct {
	bp *[]byte
	n  int
}

func (s *Server) startWriter(d *direction) *writer {
	w := &writer{full: make(chan chunk, burstBuffers), free: make(chan *[]byte, burstBuffers), done: make(chan struct{})}
	for range burstBuffers {
		w.free <- s.pool.Get().(*[]byte)
	}
	go func() {
		defer close(w.done)
		for c := range w.full {
			if w.err == nil {
				nw, err := d.dst.Write((*c.bp)[:c.n])
				w.n += int64(nw)
				d.counter.Add(float64(nw))
				if err != nil {
					w.err = err
					s.finish(d.p, otherSide(d.from)+"_closed")
				}
			}
			w.free <- c.bp
		}
	}()
	return w
}

// stopWriter lets the writer write what it holds, adds its count to the
// direction's, returns the buffers to the pool and reports its error.
func (s *Server) stopWriter(d *direction, w *writer) error {
	close(w.full)
	<-w.done
	close(w.free)
	for bp := range w.free {
		s.pool.Put(bp)
	}
	d.n += w.n
	return w.err
}

// park hands a quiet direction to the parker; it reports false when the
// caller must go on reading itself.
func (s *Server) park(d *direction) bool {
	if s.parker == nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := s.parker.park(d.src.NetConn(), func() {
		d.mu.Lock()
		d.parked = nil
		if d.timer != nil {
			d.timer.Stop()
			d.timer = nil
		}
		d.mu.Unlock()
		s.pump(d)
	})
	if e == nil {
		return false
	}
	d.parked = e
	if idle := s.cfg.IdleTimeout; idle > 0 {
		due := time.Until(time.Unix(0, d.p.last.Load()).Add(idle))
		d.timer = time.AfterFunc(max(due, 0), func() { s.parker.unpark(e) })
	}
	return true
}

func otherSide(s string) string {
	if s == "customer" {
		return "technician"
	}
	return "customer"
}

// poll asks the backend which sessions closed and tears their sides down.
func (s *Server) poll() {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		refs := make([]SessionRef, 0, len(s.pairs)+len(s.waiting))
		for r := range s.pairs {
			refs = append(refs, r)
		}
		for r := range s.waiting {
			refs = append(refs, r)
		}
		s.mu.Unlock()
		if len(refs) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PollInterval)
		closed, err := s.cfg.Backend.ClosedSessions(ctx, refs)
		cancel()
		if err != nil {
			s.cfg.Logger.Warn("relay: asking the backend for closed sessions", "err", err)
			continue
		}
		for _, r := range closed {
			s.endSession(r, ReasonSessionClosed)
		}
	}
}

// endSession tears down whatever the relay holds of session r.
func (s *Server) endSession(r SessionRef, why Reason) {
	s.mu.Lock()
	if why == ReasonSessionClosed {
		s.markClosed(r.GUID)
	}
	p := s.pairs[r]
	w := s.waiting[r]
	s.mu.Unlock()
	if p != nil {
		s.finish(p, closeReason(why))
	}
	if w != nil {
		s.unwait(r, w, closeReason(why))
	}
}

// Shutdown stops accepting, ends the waiting sides, lets the active pairs
// drain until ctx ends, then closes them, and publishes what is queued
// (bounded by the publish timeout). It returns ctx's error when pairs had
// to be cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop.Do(func() {
		s.mu.Lock()
		s.closing = true
		close(s.done)
		for ln := range s.listeners {
			ln.Close()
		}
		waiting := make([]SessionRef, 0, len(s.waiting))
		for r := range s.waiting {
			waiting = append(waiting, r)
		}
		s.mu.Unlock()
		for _, r := range waiting {
			s.endSession(r, ReasonShuttingDown)
		}
	})
	drained := make(chan struct{})
	go func() { s.conns.Wait(); close(drained) }()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		var ps []*pair
		for _, p := range s.pairs {
			ps = append(ps, p)
		}
		s.mu.Unlock()
		for _, p := range ps {
			s.finish(p, "shutdown")
		}
		<-drained
	}
	if s.parker != nil {
		s.parker.close()
	}
	s.pub.close()
	return err
}

// eventQueue publishes events in order per session, off the connections'
// paths: a few workers, each owning the sessions that hash to it.
type eventQueue struct {
	pub     Publisher
	log     *slog.Logger
	timeout time.Duration
	shards  []chan Event
	wg      sync.WaitGroup
	once    sync.Once
}

func newEventQueue(pub Publisher, log *slog.Logger, timeout time.Duration) *eventQueue {
	q := &eventQueue{pub: pub, log: log, timeout: timeout}
	if pub == nil {
		return q
	}
	q.shards = make([]chan Event, 8)
	for i := range q.shards {
		ch := make(chan Event, 4096)
		q.shards[i] = ch
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			for e := range ch {
				q.publish(e)
			}
		}()
	}
	return q
}

func (q *eventQueue) add(e Event) {
	if q.pub == nil {
		return
	}
	e.ID = domain.NewEventID().String()
	h := fnv.New32a()
	h.Write([]byte(e.Session))
	q.shards[h.Sum32()%uint32(len(q.shards))] <- e
}

func (q *eventQueue) publish(e Event) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
		err := q.pub.Publish(ctx, e)
		cancel()
		if err == nil {
			return
		}
		if attempt >= 4 {
			q.log.Error("relay: event lost after retries", "type", e.Type, "session", e.Session, "id", e.ID, "err", err)
			return
		}
		q.log.Warn("relay: publishing an event", "type", e.Type, "session", e.Session, "err", err)
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
}

func (q *eventQueue) close() {
	q.once.Do(func() {
		for _, ch := range q.shards {
			close(ch)
		}
		q.wg.Wait()
	})
}
