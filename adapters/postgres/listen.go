package postgres

import (
	"context"
	"time"
)

// Listen starts, once, the connection that LISTENs for appends and key
// destructions by any process on the database. WaitForAppend starts it on
// first use; call it at start-up so that key destructions reach the
// OnKeyDestroyed hooks from the beginning.
func (s *Store) Listen() {
	s.listenOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		s.listenStop = cancel
		s.listenDone = make(chan struct{})
		go s.listen(ctx)
	})
}

func (s *Store) listen(ctx context.Context) {
	defer close(s.listenDone)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnceConn(ctx)
		if ctx.Err() != nil {
			return
		}
		s.opts.Logger.Warn("ledger listener lost its connection; polling until it is back", "err", err)
		// Wake every waiter: appends may have been missed meanwhile.
		s.broadcast()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

func (s *Store) listenOnceConn(ctx context.Context) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A LISTENing connection must not go back to the pool.
	conn := c.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+eventsChannel+"; LISTEN "+keysChannel); err != nil {
		return err
	}
	s.broadcast()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch n.Channel {
		case eventsChannel:
			s.broadcast()
		case keysChannel:
			s.onKeyMu.Lock()
			hooks := append([]func(string){}, s.onKey...)
			s.onKeyMu.Unlock()
			for _, fn := range hooks {
				fn(n.Payload)
			}
		}
	}
}

func (s *Store) broadcast() {
	s.wakeMu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	s.wakeMu.Unlock()
}

// WaitForAppend implements ledger.Store: it returns once the head passed
// after, a notification arrived, the poll interval passed, or ctx ended
// (then with ctx.Err()).
func (s *Store) WaitForAppend(ctx context.Context, after int64) error {
	s.Listen()
	s.wakeMu.Lock()
	wake := s.wake
	s.wakeMu.Unlock()
	head, err := s.Head(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if head > after {
		return nil
	}
	t := time.NewTimer(s.opts.PollInterval)
	defer t.Stop()
	select {
	case <-wake:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
