//go:build linux

package relay

import (
	"errors"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// parker watches quiet connections without a goroutine each: a direction
// that has had no bytes for the quiet period registers its socket in the
// parker's own epoll set (one-shot, level-triggered) and its goroutine
// ends; when the socket becomes readable, or the pair ends, the parker
// starts a new goroutine that carries on. Go's runtime poller keeps the
// socket in its own epoll set as well; the kernel allows a socket in
// several, and the parker only ever reads readiness, never data.
//
// An idle pair then costs its two TLS connections' state and nothing
// else (no goroutine stacks, no buffers): see docs/performance.md.
type parker struct {
	epfd int
	wake int // eventfd that interrupts epoll_wait at close

	mu     sync.Mutex
	next   int32
	parked map[int32]*parkEntry
	closed bool
	done   chan struct{}
}

// parkEntry is one parked direction.
type parkEntry struct {
	id     int32
	rc     syscall.RawConn
	resume func()
	state  atomic.Int32 // 0 parked, 1 resumed
}

func newParker() (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, err
	}
	p := &parker{epfd: epfd, wake: wake, parked: map[int32]*parkEntry{}, done: make(chan struct{})}
	go p.loop()
	return p, nil
}

// park registers conn and arranges for resume to run in a new goroutine
// once conn is readable or unpark is called. It returns nil, and the
// caller keeps its goroutine, when conn cannot be parked (closed meanwhile,
// not a socket, or the parker closed).
func (p *parker) park(conn any, resume func()) *parkEntry {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	e := &parkEntry{rc: rc, resume: resume}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	for {
		p.next++
		if p.next < 0 {
			p.next = 0
		}
		if _, taken := p.parked[p.next]; !taken {
			break
		}
	}
	e.id = p.next
	p.parked[e.id] = e
	p.mu.Unlock()

	// Control holds a reference on the descriptor, so a concurrent Close
	// cannot release it, and its number cannot be reused, while we add it.
	var addErr error
	err = rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: e.id}
		addErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = addErr
	}
	if err != nil {
		p.mu.Lock()
		delete(p.parked, e.id)
		p.mu.Unlock()
		return nil
	}
	return e
}

// unpark resumes e now unless it resumed already; it reports whether this
// call resumed it.
func (p *parker) unpark(e *parkEntry) bool {
	if !e.state.CompareAndSwap(0, 1) {
		return false
	}
	p.mu.Lock()
	delete(p.parked, e.id)
	p.mu.Unlock()
	// Remove the descriptor before anything else reads it. A closed
	// connection has left the set with its last reference already.
	e.rc.Control(func(fd uintptr) {
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
	go e.resume()
	return true
}

func (p *parker) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd == -1 {
				p.mu.Lock()
				closed := p.closed
				p.mu.Unlock()
				if closed {
					return
				}
				continue
			}
			p.mu.Lock()
			e := p.parked[ev.Fd]
			p.mu.Unlock()
			if e != nil {
				p.unpark(e)
			}
		}
	}
}

// close resumes every parked direction and stops the parker.
func (p *parker) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	entries := make([]*parkEntry, 0, len(p.parked))
	for _, e := range p.parked {
		entries = append(entries, e)
	}
	p.mu.Unlock()
	for _, e := range entries {
		p.unpark(e)
	}
	var one [8]byte
	one[0] = 1
	unix.Write(p.wake, one[:])
	<-p.done
	unix.Close(p.epfd)
	unix.Close(p.wake)
}
