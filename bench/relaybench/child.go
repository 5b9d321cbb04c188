package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/vigilhq/vigil/relay"
)

func numCPU() int { return runtime.GOMAXPROCS(0) }

// runChild is the relay of the memory case: long peer and idle timeouts,
// a GC every second so that RSS follows the live heap.
func runChild(dir string) error {
	cert, err := tls.LoadX509KeyPair(dir+"/cert.pem", dir+"/key.pem")
	if err != nil {
		return err
	}
	srv, err := relay.New(relay.Config{TLS: relay.ServerTLS(cert), RelayID: "bench", Backend: stub{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxHandshakesPerIP: 1 << 20, MaxConns: 1 << 20,
		PeerTimeout: time.Hour, IdleTimeout: time.Hour, PollInterval: time.Hour})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	go func() {
		for range time.Tick(time.Second) {
			debug.FreeOSMemory()
		}
	}()
	err = srv.Serve(ln)
	srv.Shutdown(context.Background())
	return err
}
