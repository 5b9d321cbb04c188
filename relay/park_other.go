//go:build !linux

package relay

import "errors"

// parker is Linux-only; elsewhere quiet directions keep their goroutine
// and block on a small buffer.
type parker struct{}

type parkEntry struct{}

func newParker() (*parker, error) { return nil, errors.New("relay: parking needs epoll (Linux)") }

func (p *parker) park(conn any, resume func()) *parkEntry { return nil }

func (p *parker) unpark(e *parkEntry) bool { return false }

func (p *parker) close() {}
