package relay

import (
	"context"
	"crypto/tls"
	"errors"
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
	// BufferSize is the pooled copy buffer of a direction while bytes flow
	// (default 32 KiB; a TLS read returns at most one 16 KiB record).
	BufferSize int
	// PublishTimeout bounds one publication (default 10 s).
	PublishTimeout time.Duration
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
type Server struct {
	cfg  Config
	m    *Metrics
	pool sync.Pool
	sem  chan struct{}
	pub  *eventQueue

	mu         sync.Mutex
	listeners  map[net.Listener]struct{}
	handshakes map[netip.Addr]int
	waiting    map[SessionRef]*waiter
	pairs      map[SessionRef]*pair
	closing    bool

	conns   sync.WaitGroup
	done    chan struct{}
	stopped chan struct{}
	stop    sync.Once
}

type waiter struct {
	side   Side
	conn   *tls.Conn
	since  time.Time
	peer   chan *pair // receives the pair when the other side arrives
	cancel chan Reason
}

type pair struct {
	ref        SessionRef
	customer   *tls.Conn
	technician *tls.Conn
	start      time.Time
	closeOnce  sync.Once
	reason     atomic.Value // string
	last       atomic.Int64 // unix nanos of the last byte either way
}

// New returns a server for cfg. It returns an error without a TLS
// configuration or a backend.
func New(cfg Config) (*Server, error) {
	if cfg.TLS == nil || cfg.Backend == nil {
		return nil, errors.New("relay: a TLS configuration and a backend are required")
	}
	cfg.setDefaults()
	s := &Server{
		cfg: cfg, m: cfg.Metrics, sem: make(chan struct{}, cfg.MaxConns),
		listeners: map[net.Listener]struct{}{}, handshakes: map[netip.Addr]int{},
		waiting: map[SessionRef]*waiter{}, pairs: map[SessionRef]*pair{},
		done: make(chan struct{}), stopped: make(chan struct{}),
	}
	if s.m == nil {
		s.m = NewMetrics()
	}
	size := cfg.BufferSize
	s.pool.New = func() any { b := make([]byte, size); return &b }
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
		go func() {
			defer s.conns.Done()
			defer func() { <-s.sem }()
			s.handle(c)
		}()
	}
}

func remoteAddr(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// handle runs one connection from accept to close.
func (s *Server) handle(raw net.Conn) {
	ip := remoteAddr(raw)
	s.mu.Lock()
	if s.handshakes[ip] >= s.cfg.MaxHandshakesPerIP {
		s.mu.Unlock()
		s.m.refused(ReasonBusy)
		raw.Close()
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
	deadline := time.Now().Add(s.cfg.HandshakeTimeout)
	conn.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		s.m.refused(ReasonBadHello)
		raw.Close()
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
	w := &waiter{side: hello.Side, conn: conn, since: now, peer: make(chan *pair, 1), cancel: make(chan Reason, 1)}

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
	if ok && other.side == hello.Side {
		s.mu.Unlock()
		s.refuse(conn, ReasonSideTaken)
		return
	}
	var p *pair
	if ok {
		delete(s.waiting, ref)
		p = &pair{ref: ref, start: now}
		p.last.Store(now.UnixNano())
		if hello.Side == SideCustomer {
			p.customer, p.technician = conn, other.conn
		} else {
			p.customer, p.technician = other.conn, conn
		}
		s.pairs[ref] = p
		s.m.Waiting.Dec()
		s.m.Pairs.Inc()
	} else {
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

	conn.SetDeadline(time.Time{})
	if _, err := conn.Write([]byte{byte(ReasonOK)}); err != nil {
		if p != nil {
			p.finish(hello.Side.String() + "_closed")
			s.runPair(p, other)
			return
		}
		s.unwait(ref, w, hello.Side.String()+"_closed")
		return
	}
	if p != nil {
		other.peer <- p
		s.runPair(p, nil)
		return
	}
	s.wait(ref, w)
}

// refuse answers a refused hello and closes the connection.
func (s *Server) refuse(conn *tls.Conn, r Reason) {
	s.m.refused(r)
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	conn.Write([]byte{byte(r)})
	conn.Close()
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

// wait holds an accepted side until its peer arrives, the peer timeout,
// the session closing or shutdown.
func (s *Server) wait(ref SessionRef, w *waiter) {
	t := time.NewTimer(s.cfg.PeerTimeout)
	defer t.Stop()
	select {
	case <-w.peer:
		// The peer's goroutine runs the pair.
		return
	case <-t.C:
		s.unwait(ref, w, "peer_timeout")
	case r := <-w.cancel:
		s.unwait(ref, w, closeReason(r))
	}
}

func closeReason(r Reason) string {
	if r == ReasonShuttingDown {
		return "shutdown"
	}
	return r.String()
}

// unwait removes a waiting side (unless a peer took it meanwhile) and
// records its end.
func (s *Server) unwait(ref SessionRef, w *waiter, reason string) {
	s.mu.Lock()
	if s.waiting[ref] != w {
		s.mu.Unlock()
		// Paired meanwhile: the pair is running in the peer's goroutine.
		return
	}
	delete(s.waiting, ref)
	s.m.Waiting.Dec()
	now := time.Now()
	s.pub.add(Event{Type: EventClosed, Tenant: ref.Tenant, Session: ref.GUID, RelayID: s.cfg.RelayID, At: now,
		DurationMS: now.Sub(w.since).Milliseconds(), Reason: reason})
	s.mu.Unlock()
	w.conn.Close()
}

// finish records the first reason the pair ends for and closes both sides.
func (p *pair) finish(reason string) {
	p.closeOnce.Do(func() {
		p.reason.Store(reason)
		p.customer.Close()
		p.technician.Close()
	})
}

// runPair copies both ways until one side ends, then records the close.
func (s *Server) runPair(p *pair, _ *waiter) {
	var fromCustomer, fromTechnician int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fromCustomer = s.copy(p, p.technician, p.customer, "customer", s.m.BytesFromCustomer)
	}()
	fromTechnician = s.copy(p, p.customer, p.technician, "technician", s.m.BytesFromTechnician)
	wg.Wait()
	now := time.Now()
	s.mu.Lock()
	delete(s.pairs, p.ref)
	s.m.Pairs.Dec()
	reason, _ := p.reason.Load().(string)
	s.pub.add(Event{Type: EventClosed, Tenant: p.ref.Tenant, Session: p.ref.GUID, RelayID: s.cfg.RelayID, At: now,
		BytesFromCustomer: fromCustomer, BytesFromTechnician: fromTechnician,
		DurationMS: now.Sub(p.start).Milliseconds(), Reason: reason})
	s.mu.Unlock()
}

type adder interface{ Add(float64) }

// smallBuf is what an idle direction reads into: a pooled large buffer is
// only held while bytes flow, so that idle pairs cost little memory.
const smallBuf = 512

// release is how long a direction keeps its large buffer without traffic.
const release = 2 * time.Second

// copy moves bytes from src to dst until src ends or fails, then finishes
// the pair. It returns the bytes written to dst. While idle it blocks on a
// small per-direction buffer; once bytes flow it reads into a pooled
// large buffer (no allocation per chunk) until the direction is quiet for
// the release period.
func (s *Server) copy(p *pair, dst, src *tls.Conn, from string, counter adder) int64 {
	var small [smallBuf]byte
	var bp *[]byte
	defer func() {
		if bp != nil {
			s.pool.Put(bp)
		}
	}()
	var n int64
	idle := s.cfg.IdleTimeout
	for {
		buf := small[:]
		deadline := time.Time{}
		if bp != nil {
			buf = *bp
			deadline = time.Now().Add(release)
		}
		if idle > 0 {
			if d := time.Now().Add(idle); deadline.IsZero() || d.Before(deadline) {
				deadline = d
			}
		}
		src.SetReadDeadline(deadline)
		nr, rerr := src.Read(buf)
		if nr > 0 {
			p.last.Store(time.Now().UnixNano())
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			counter.Add(float64(nw))
			if werr != nil {
				p.finish(otherSide(from) + "_closed")
				return n
			}
			if bp == nil && nr == len(buf) {
				bp = s.pool.Get().(*[]byte) // a burst: read big
			}
		}
		if rerr != nil {
			var ne net.Error
			if errors.As(rerr, &ne) && ne.Timeout() {
				if bp != nil {
					s.pool.Put(bp) // quiet: give the large buffer back
					bp = nil
				}
				if idle <= 0 || time.Since(time.Unix(0, p.last.Load())) < idle {
					continue // the other direction is busy, or only the release timer fired
				}
				p.finish("idle_timeout")
				return n
			}
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, net.ErrClosed) {
				p.finish(from + "_closed")
			} else {
				p.finish(from + "_error")
			}
			return n
		}
	}
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
	p := s.pairs[r]
	w := s.waiting[r]
	s.mu.Unlock()
	if p != nil {
		p.finish(closeReason(why))
	}
	if w != nil {
		select {
		case w.cancel <- why:
		default:
		}
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
			p.finish("shutdown")
		}
		<-drained
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
