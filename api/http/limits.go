package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Limits are the API's defences against clients that hold connections
// open or flood it before proving who they are. The read, header and idle
// timeouts live on the http.Server (cmd/vigil sets them); these are the
// ones a handler has to take part in.
type Limits struct {
	// MaxUnauthenticated caps the requests in progress that have not yet
	// shown a valid credential: logins (which run scrypt, 32 MiB and tens
	// of milliseconds each) at most MaxUnauthenticated, and every other
	// request until its bearer credential is accepted at most
	// PendingAuthFactor times that (a credential check is a hash and a
	// look-up, not scrypt: a busy node has many of them in flight, and
	// they must not be shed as a flood would be). A request past its cap
	// is answered at once with 503, code unavailable, and Retry-After.
	// Zero or less: no cap. /healthz and /readyz are never counted, so
	// probes keep answering.
	MaxUnauthenticated int
	// WriteTimeout, when positive, is the longest one write of a response
	// may wait for the client to take data. Each write moves the
	// connection's write deadline, so a long download that keeps moving
	// is never cut, while a client that stops reading is.
	WriteTimeout time.Duration
	// RecordingMinRate is the slowest a recording upload may arrive, in
	// bytes per second averaged over RecordingRateWindow (default
	// DefaultRecordingMinRate). An upload slower than that for one window
	// is cut with 408, code request_timeout.
	RecordingMinRate int64
	// RecordingRateWindow is the window RecordingMinRate is averaged over
	// (default DefaultRecordingRateWindow).
	RecordingRateWindow time.Duration
}

// Defaults of Limits.
const (
	DefaultRecordingMinRate    = 16 << 10 // 16 KiB/s
	DefaultRecordingRateWindow = 30 * time.Second
)

// Codes of the refusals in this file, beside the domain's.
const (
	codeUnavailable    = "unavailable"
	codeRequestTimeout = "request_timeout"
)

// PendingAuthFactor is how many more requests may wait for their bearer
// credential's check than logins may run (Limits.MaxUnauthenticated).
const PendingAuthFactor = 32

// loginPath is the one endpoint that reads a body before any credential:
// its whole run counts as unauthenticated.
const loginPath = "/v1/auth/login"

// limiter applies Limits to every request. It is safe for concurrent use.
type limiter struct {
	lim     Limits
	slots   chan struct{} // logins and requests without a credential; nil: no cap
	pending chan struct{} // requests whose bearer credential is being checked
}

func newLimiter(l Limits) *limiter {
	if l.RecordingMinRate <= 0 {
		l.RecordingMinRate = DefaultRecordingMinRate
	}
	if l.RecordingRateWindow <= 0 {
		l.RecordingRateWindow = DefaultRecordingRateWindow
	}
	lm := &limiter{lim: l}
	if l.MaxUnauthenticated > 0 {
		lm.slots = make(chan struct{}, l.MaxUnauthenticated)
		lm.pending = make(chan struct{}, l.MaxUnauthenticated*PendingAuthFactor)
	}
	return lm
}

type gateKey struct{}

// gate is one request's hold on an unauthenticated slot.
type gate struct {
	slots chan struct{}
	done  atomic.Bool
}

// release gives the slot back; only the first call does anything.
func (g *gate) release() {
	if g != nil && g.done.CompareAndSwap(false, true) {
		<-g.slots
	}
}

// authenticated tells the limiter that r's credential was accepted: from
// now on r no longer counts against MaxUnauthenticated.
func authenticated(r *http.Request) {
	g, _ := r.Context().Value(gateKey{}).(*gate)
	g.release()
}

// serve runs next for r under the limits.
func (l *limiter) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if l.slots != nil && !probe(r) {
		slots := l.slots
		if r.URL.Path != loginPath && strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			slots = l.pending
		}
		select {
		case slots <- struct{}{}:
		default:
			var body errorBody
			body.Error.Code = codeUnavailable
			body.Error.Message = "too many requests are waiting to authenticate; retry shortly"
			w.Header().Set("Retry-After", "1")
			w.Header().Set("Connection", "close")
			writeJSON(w, http.StatusServiceUnavailable, body)
			return
		}
		g := &gate{slots: slots}
		defer g.release()
		r = r.WithContext(context.WithValue(r.Context(), gateKey{}, g))
		if r.URL.Path != loginPath {
			// Every handler but login's authenticates before it reads a
			// body: a read means the credential was accepted (GraphQL's
			// handler lives in another package and says so this way).
			r.Body = &gatedBody{ReadCloser: r.Body, g: g}
		}
		w = &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: l.lim.WriteTimeout, g: g}
	} else if l.lim.WriteTimeout > 0 {
		w = &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: l.lim.WriteTimeout}
	}
	next.ServeHTTP(w, r)
	if dw, ok := w.(*deadlineWriter); ok {
		// The server flushes what is buffered after the handler returns.
		dw.extend()
	}
}

// probe reports whether r is a health probe, which the cap must not
// refuse: an orchestrator would take a busy node for a dead one.
func probe(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz")
}

// gatedBody releases the request's slot on the first read.
type gatedBody struct {
	io.ReadCloser
	g *gate
}

func (b *gatedBody) Read(p []byte) (int, error) {
	b.g.release()
	return b.ReadCloser.Read(p)
}

// deadlineWriter moves the write deadline before every write, and
// releases the request's unauthenticated slot once an answer starts: a
// request that is answering no longer waits on anything of the client's.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	g       *gate
}

func (w *deadlineWriter) extend() {
	if w.timeout > 0 {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	}
}

func (w *deadlineWriter) WriteHeader(status int) {
	w.g.release()
	w.ResponseWriter.WriteHeader(status)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.g.release()
	w.extend()
	return w.ResponseWriter.Write(p)
}

// Flush keeps http.Flusher working through the wrapper.
func (w *deadlineWriter) Flush() {
	w.extend()
	_ = w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bodyTimedOut reports whether err is a request body read that passed its
// deadline: the server's ReadTimeout, or a recording's minimum rate.
func bodyTimedOut(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// minRateBody cuts a body that arrives slower than rate bytes per second
// over a window. The connection's read deadline is set one window ahead;
// each time a window's worth of bytes (rate × window) has arrived, a new
// window starts from that moment. A body that stalls, or trickles below
// the rate, reaches the deadline and its read fails with
// os.ErrDeadlineExceeded.
type minRateBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	window time.Duration
	need   int64 // bytes per window
	got    int64 // bytes in the current window
	err    error // the first read error other than io.EOF
}

func newMinRateBody(w http.ResponseWriter, body io.ReadCloser, l Limits) *minRateBody {
	b := &minRateBody{ReadCloser: body, rc: http.NewResponseController(w), window: l.RecordingRateWindow,
		need: int64(float64(l.RecordingMinRate) * l.RecordingRateWindow.Seconds())}
	if b.need < 1 {
		b.need = 1
	}
	b.start()
	return b
}

func (b *minRateBody) start() {
	b.got = 0
	// ErrNotSupported (a test recorder, say) leaves the server's own
	// limits in force.
	_ = b.rc.SetReadDeadline(time.Now().Add(b.window))
}

func (b *minRateBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.got += int64(n)
	if b.got >= b.need {
		b.start()
	}
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}
