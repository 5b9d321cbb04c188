package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
)

// unavailable wraps err with domain.ErrUnavailable when it says that the
// database cannot be reached just now, rather than anything about the
// request: the connection was refused, reset or closed; the server is
// shutting down (57P01 admin_shutdown, 57P02 crash_shutdown), starting up
// (57P03 cannot_connect_now), out of connections (53300) or a standby now
// (25006 read_only_sql_transaction, after a failover); any other
// connection exception (class 08). Both stay visible to errors.Is and
// errors.As. Anything else, and nil, is returned as it is.
func unavailable(err error) error {
	if err == nil || errors.Is(err, domain.ErrUnavailable) || !connectionLost(err) {
		return err
	}
	return fmt.Errorf("%w: %w", domain.ErrUnavailable, err)
}

func connectionLost(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", "53300":
			return true
		case "25006":
			// read_only_sql_transaction: a write reached a server that is
			// a standby now (a demoted primary still behind a proxy or a
			// pooled connection, issue 16); the next connection finds the
			// new primary.
			return true
		}
		return len(pgErr.Code) == 5 && pgErr.Code[:2] == "08"
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true // even when the attempt ran out of time
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		// The caller's deadline or cancellation (a context error is also a
		// net.Error), not the database's state.
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// acquireFailed is unavailable for the error of taking a connection from
// the pool: there, running out of time means that no connection came free
// (or none could be made) before the deadline, which a retry may cure.
func acquireFailed(err error) error {
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, domain.ErrUnavailable) {
		return fmt.Errorf("%w: no database connection in time: %w", domain.ErrUnavailable, err)
	}
	return unavailable(err)
}

// outcomeUnknown marks err with ledger.ErrOutcomeUnknown when it is a lost
// connection, returned by a round trip that carried COMMIT: the server may
// have committed before the answer was lost (a failover, issue 16), so the
// ledger retries with the same event ids to learn which. A refusal by the
// server is a known outcome and stays as it is.
func outcomeUnknown(err error) error {
	if err == nil || !connectionLost(err) || errors.Is(err, ledger.ErrOutcomeUnknown) {
		return err
	}
	return fmt.Errorf("%w: %w", ledger.ErrOutcomeUnknown, err)
}
