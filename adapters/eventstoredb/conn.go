package eventstoredb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/vigilhq/vigil/domain"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors the store returns besides the domain sentinels. They are wrapped
// with what failed; test with errors.Is.
var (
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("kurrentdb store closed")
	// ErrUnavailable: KurrentDB could not be reached or did not answer in
	// time; the operation may or may not have taken effect.
	ErrUnavailable = errors.New("kurrentdb unavailable")
	// ErrAccessDenied: KurrentDB refused the credentials or their rights.
	// The store needs to read $all, which KurrentDB allows only to $admins
	// and $ops by default.
	ErrAccessDenied = errors.New("kurrentdb access denied")
	// ErrInconsistent: what KurrentDB holds in the store's namespace does not
	// fit together (an order record that disagrees with the tree, an event
	// that its record points to and that is not there, an event that is not
	// a Vigil event). The store refuses to go on; vigil verify says more.
	ErrInconsistent = errors.New("kurrentdb namespace is inconsistent")
)

// esdbCoder is what the client's *esdb.Error offers to tell errors apart.
type esdbCoder interface {
	error
	Code() esdb.ErrorCode
}

var _ esdbCoder = (*esdb.Error)(nil)

// translate maps a client error to the store's errors, without wrapping the
// client's types: the message is kept as text. A context error is returned
// as is, since the caller ended the operation.
func translate(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, known := range []error{ErrClosed, ErrUnavailable, ErrAccessDenied, ErrInconsistent, domain.ErrConcurrency, domain.ErrNotFound, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, known) {
			return err
		}
	}
	code := codes.Unknown
	var ce esdbCoder
	if errors.As(err, &ce) {
		switch ce.Code() {
		case esdb.ErrorCodeWrongExpectedVersion:
			return fmt.Errorf("kurrentdb: %v: %w", err, domain.ErrConcurrency)
		case esdb.ErrorCodeResourceNotFound:
			return fmt.Errorf("kurrentdb: %v: %w", err, domain.ErrNotFound)
		case esdb.ErrorCodeStreamDeleted:
			return fmt.Errorf("kurrentdb: %v (a stream of the namespace was deleted): %w", err, ErrInconsistent)
		case esdb.ErrorCodeAccessDenied, esdb.ErrorCodeUnauthenticated:
			return fmt.Errorf("kurrentdb: %v: %w", err, ErrAccessDenied)
		case esdb.ErrorCodeDeadlineExceeded, esdb.ErrorUnavailable, esdb.ErrorCodeConnectionClosed,
			esdb.ErrorCodeNotLeader, esdb.ErrorAborted:
			return fmt.Errorf("kurrentdb: %v: %w", err, ErrUnavailable)
		}
		code = status.Code(errors.Unwrap(ce))
	} else {
		code = status.Code(err)
	}
	// Errors the client passes on from gRPC without classifying them
	// (opening a read, for one).
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return fmt.Errorf("kurrentdb: %v: %w", err, ErrUnavailable)
	case codes.PermissionDenied, codes.Unauthenticated:
		return fmt.Errorf("kurrentdb: %v: %w", err, ErrAccessDenied)
	case codes.Canceled:
		return fmt.Errorf("kurrentdb: %v: %w", err, context.Canceled)
	}
	return fmt.Errorf("kurrentdb: %v", err)
}

// brokenConn reports whether err says the client's connection is gone for
// good: the client closed itself after a failed node discovery, or gRPC
// reports the server unavailable on a call whose error the client does not
// route to its own reconnection (opening a read).
func brokenConn(err error) bool {
	if err == nil {
		return false
	}
	var ce esdbCoder
	if errors.As(err, &ce) {
		switch ce.Code() {
		case esdb.ErrorCodeConnectionClosed, esdb.ErrorUnavailable:
			return true
		case esdb.ErrorCodeUnknown:
			return status.Code(errors.Unwrap(ce)) == codes.Unavailable
		}
		return false
	}
	return status.Code(err) == codes.Unavailable
}

// passwordInURL matches the password of a connection string, to keep it out
// of error messages.
var passwordInURL = regexp.MustCompile(`(://[^:/@\s]*:)[^/\s]*@`)

// redact returns s with any password of a connection string in it replaced.
func redact(s string) string { return passwordInURL.ReplaceAllString(s, "${1}xxxxx@") }

// parseURL parses a KurrentDB connection string. The v4 client accepts the
// schemes esdb:// and esdb+discover://; kurrentdb://, kurrentdb+discover://,
// kurrent:// and kurrent+discover:// (the schemes of KurrentDB's newer
// clients) are accepted too and mean the same. Errors never include the
// password.
func parseURL(raw string) (*esdb.Configuration, error) {
	s := raw
	for _, alias := range []string{"kurrentdb", "kurrent"} {
		if rest, ok := strings.CutPrefix(s, alias+"://"); ok {
			s = "esdb://" + rest
		} else if rest, ok := strings.CutPrefix(s, alias+"+discover://"); ok {
			s = "esdb+discover://" + rest
		}
	}
	if !strings.HasPrefix(s, "esdb://") && !strings.HasPrefix(s, "esdb+discover://") {
		scheme, _, _ := strings.Cut(raw, "://")
		return nil, fmt.Errorf("kurrentdb url: scheme %q: want esdb://, esdb+discover://, kurrentdb:// or kurrentdb+discover://", redact(scheme))
	}
	cfg, err := esdb.ParseConnectionString(s)
	if err != nil {
		return nil, fmt.Errorf("kurrentdb url %s: %s", redact(raw), redact(err.Error()))
	}
	return cfg, nil
}

// slogLogging adapts the client's logging to log: its warnings (failed
// connection attempts) at info, everything else at debug. The client logs
// every failed call at error, a cancelled read included; the store reports
// the failures that matter itself.
func slogLogging(log *slog.Logger) esdb.LoggingFunc {
	return func(level esdb.LogLevel, format string, args ...any) {
		l := slog.LevelDebug
		if level == esdb.LogWarn {
			l = slog.LevelInfo
		}
		if !log.Enabled(context.Background(), l) {
			return
		}
		log.Log(context.Background(), l, "kurrentdb client: "+redact(fmt.Sprintf(format, args...)))
	}
}

// conn is one client with the count of operations using it. A client is
// replaced when its connection broke; the old one is closed once no operation
// uses it any more. Closing a client while another goroutine is entering a
// call panics inside the client (send on a closed channel), hence the count.
type conn struct {
	c       *esdb.Client
	born    time.Time
	users   int  // guarded by Store.connMu
	retired bool // guarded by Store.connMu
	closed  bool // guarded by Store.connMu
}

// reconnectAfter is the least age of a client before a broken connection
// replaces it, so that an outage does not make a client per call.
const reconnectAfter = time.Second

// acquire returns the current client for one operation; release it.
func (s *Store) acquire() (*conn, error) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.cur.users++
	return s.cur, nil
}

// release ends an operation on cn. When err says the connection is broken
// and cn is still current, cn is replaced by a fresh client (the v4 client
// never recovers by itself once a rediscovery failed).
func (s *Store) release(cn *conn, err error) {
	s.connMu.Lock()
	cn.users--
	if brokenConn(err) {
		s.retireLocked(cn, err)
	}
	var closing *esdb.Client
	if cn.retired && cn.users == 0 && !cn.closed {
		cn.closed = true
		closing = cn.c
	}
	s.connMu.Unlock()
	if closing != nil {
		_ = closing.Close()
	}
}

// retireLocked replaces cn by a new client if cn is current and old enough.
// The caller holds s.connMu.
func (s *Store) retireLocked(cn *conn, why error) {
	if s.closed || cn != s.cur || time.Since(cn.born) < reconnectAfter {
		return
	}
	c, err := esdb.NewClient(s.cfg)
	if err != nil {
		s.opts.Logger.Error("kurrentdb: cannot make a new client", "err", err)
		return
	}
	cn.retired = true
	s.cur = &conn{c: c, born: time.Now()}
	s.opts.Logger.Warn("kurrentdb: connection lost, reconnecting", "err", redact(why.Error()))
}

// await runs fn, which calls the client, in its own goroutine and waits for
// it until ctx ends or s.opts.Timeout passes. The client enters every call by
// sending on an unbuffered channel to its connection goroutine, which ignores
// ctx and never answers again once a node discovery failed; await keeps such
// a hang from reaching the caller. A result that arrives after await gave up
// is handed to cleanup (to close a read), and cn stays in use until then.
func await[T any](ctx context.Context, s *Store, cn *conn, fn func() (T, error), cleanup func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := fn()
		ch <- result{v, err}
	}()
	timer := time.NewTimer(s.opts.Timeout + time.Second)
	defer timer.Stop()
	var zero T
	var err error
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = fmt.Errorf("kurrentdb: no answer within %s: %w", s.opts.Timeout, ErrUnavailable)
	}
	s.connMu.Lock()
	cn.users++ // the abandoned call still uses cn
	if errors.Is(err, ErrUnavailable) {
		// A hang, not a caller giving up: the client may be dead.
		s.retireLocked(cn, err)
	}
	s.connMu.Unlock()
	go func() {
		r := <-ch
		if r.err == nil && cleanup != nil {
			cleanup(r.v)
		}
		s.release(cn, r.err)
	}()
	return zero, err
}

// readAllCount asks a read for every event to its end.
const readAllCount = math.MaxInt64

// errStop ends a read early without an error.
var errStop = errors.New("stop reading")

// recv returns the next event of a read, turning a panic of the client on an
// unexpected server message into an error.
func recv(rs *esdb.ReadStream) (ev *esdb.ResolvedEvent, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("kurrentdb: unexpected read response (%v): %w", r, ErrUnavailable)
		}
	}()
	return rs.Recv()
}

// readStream reads up to count events of the KurrentDB stream name from
// revision from in direction dir (esdb.End with Backwards reads from the
// end), calling fn for each. It returns false when the stream does not
// exist. fn may return errStop to end the read.
func (s *Store) readStream(ctx context.Context, name string, from esdb.StreamPosition, dir esdb.Direction, count uint64, fn func(*esdb.RecordedEvent) error) (found bool, err error) {
	cn, err := s.acquire()
	if err != nil {
		return false, err
	}
	defer func() { s.release(cn, err) }()
	rs, err := await(ctx, s, cn, func() (*esdb.ReadStream, error) {
		return cn.c.ReadStream(ctx, name, esdb.ReadStreamOptions{From: from, Direction: dir}, count)
	}, func(rs *esdb.ReadStream) { rs.Close() })
	if err != nil {
		return false, err
	}
	defer rs.Close()
	for {
		ev, err := recv(rs)
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			var ce esdbCoder
			if errors.As(err, &ce) && ce.Code() == esdb.ErrorCodeResourceNotFound {
				return false, nil
			}
			return false, err
		}
		if ev.Event == nil {
			continue
		}
		if err := fn(ev.Event); err != nil {
			if errors.Is(err, errStop) {
				return true, nil
			}
			return true, err
		}
	}
}

// allReader reads $all forward from a position, for joining it with the
// order stream.
type allReader struct {
	s   *Store
	cn  *conn
	rs  *esdb.ReadStream
	err error
}

// openAll starts reading up to count events of $all from from (inclusive).
func (s *Store) openAll(ctx context.Context, from esdb.Position, count uint64) (*allReader, error) {
	cn, err := s.acquire()
	if err != nil {
		return nil, err
	}
	rs, err := await(ctx, s, cn, func() (*esdb.ReadStream, error) {
		return cn.c.ReadAll(ctx, esdb.ReadAllOptions{From: from, Direction: esdb.Forwards}, count)
	}, func(rs *esdb.ReadStream) { rs.Close() })
	if err != nil {
		s.release(cn, err)
		return nil, err
	}
	return &allReader{s: s, cn: cn, rs: rs}, nil
}

// next returns the next event of $all, nil at its end.
func (a *allReader) next() (*esdb.RecordedEvent, error) {
	for {
		ev, err := recv(a.rs)
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			a.err = err
			return nil, err
		}
		if ev.Event != nil {
			return ev.Event, nil
		}
	}
}

func (a *allReader) close() {
	a.rs.Close()
	a.s.release(a.cn, a.err)
}

// appendEvents appends evs to the KurrentDB stream name at the expected
// revision, waiting at most s.opts.Timeout.
func (s *Store) appendEvents(ctx context.Context, name string, expected esdb.ExpectedRevision, evs []esdb.EventData) (res *esdb.WriteResult, err error) {
	cn, err := s.acquire()
	if err != nil {
		return nil, err
	}
	defer func() { s.release(cn, err) }()
	deadline := s.opts.Timeout
	return await(ctx, s, cn, func() (*esdb.WriteResult, error) {
		return cn.c.AppendToStream(ctx, name, esdb.AppendToStreamOptions{ExpectedRevision: expected, Deadline: &deadline}, evs...)
	}, nil)
}

// isWrongVersion reports whether err is KurrentDB's answer to a failed
// expected-revision check.
func isWrongVersion(err error) bool {
	var ce esdbCoder
	return errors.As(err, &ce) && ce.Code() == esdb.ErrorCodeWrongExpectedVersion
}
