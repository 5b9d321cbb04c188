package relay

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"
)

// RefusedError is returned by Dial when the relay refuses the hello.
type RefusedError struct{ Reason Reason }

func (e *RefusedError) Error() string { return "relay refused: " + e.Reason.String() }

// Dial connects to the relay at addr as h.Side, sends the hello and reads
// the answer. It returns the connection, ready for opaque bytes once the
// peer arrives, or a *RefusedError, or the network or TLS error. It is
// the client side used by vigil simulate, the tests and the bench.
func Dial(ctx context.Context, addr string, cfg *tls.Config, h Hello) (*tls.Conn, error) {
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := c.(*tls.Conn)
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(AppendHello(nil, h)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("relay hello: %w", err)
	}
	var ans [1]byte
	if _, err := io.ReadFull(conn, ans[:]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("relay answer: %w", err)
	}
	conn.SetDeadline(time.Time{})
	if Reason(ans[0]) != ReasonOK {
		conn.Close()
		return nil, &RefusedError{Reason(ans[0])}
	}
	return conn, nil
}

var _ net.Conn = (*tls.Conn)(nil)
