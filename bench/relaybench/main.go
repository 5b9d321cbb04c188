// Command relaybench measures the relay beside raw baselines taken in the
// same run, and prints a markdown table for docs/performance.md:
//
//   - throughput of one stream: raw loopback TCP, a plain TLS stream (one
//     TLS hop), a plain TLS echo (two TLS hops through a server that
//     decrypts and re-encrypts, which is what the relay does), and one
//     relay pair; then the same with 64 concurrent streams or pairs;
//   - pairing latency p50/p99: from the technician's dial to the first
//     byte the customer sent arriving through the relay;
//   - memory per idle waiting side and per idle pair: the relay runs in a
//     child process whose resident set (VmRSS) is read before and after
//     -idle customers wait and after their technicians join.
//
// The backend is a stub that accepts every side and publishes nothing: the
// bench measures the relay's data path, not the service.
//
// Usage:
//
//	go run ./bench/relaybench [-mb 512] [-pairs 64] [-runs 5] [-idle 9900] [-pairings 2000]
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigilhq/vigil/relay"
)

func main() {
	mb := flag.Int("mb", 512, "MiB sent per throughput case (split over the streams)")
	pairs := flag.Int("pairs", 64, "concurrent streams or pairs of the second throughput case")
	idle := flag.Int("idle", 9900, "idle pairs of the memory case (each pair is 2 connections in the relay and 2 here; mind ulimit -n)")
	pairings := flag.Int("pairings", 2000, "pairings timed for the latency percentiles")
	runs := flag.Int("runs", 5, "rounds of the throughput cases; the medians are printed")
	child := flag.String("child", "", "internal: run as the relay child process with this cert dir")
	flag.Parse()
	if *child != "" {
		if err := runChild(*child); err != nil {
			fmt.Fprintln(os.Stderr, "relaybench child:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*mb<<20, *pairs, *idle, *pairings, max(*runs, 1)); err != nil {
		fmt.Fprintln(os.Stderr, "relaybench:", err)
		os.Exit(1)
	}
}

// stub accepts everything.
type stub struct{}

func (stub) AuthorizeCustomer(context.Context, string) (relay.Grant, error) {
	return relay.Grant{Tenant: "bench"}, nil
}
func (stub) AuthorizeTechnician(context.Context, string, string) (relay.Grant, error) {
	return relay.Grant{Tenant: "bench", TechnicianID: "t"}, nil
}
func (stub) ClosedSessions(context.Context, []relay.SessionRef) ([]relay.SessionRef, error) {
	return nil, nil
}

type certs struct {
	server tls.Certificate
	client *tls.Config
	pem    [2][]byte
}

func newCerts() (*certs, error) {
	c, k, err := relay.SelfSigned(nil)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c)
	return &certs{server: cert, client: &tls.Config{RootCAs: roots, ServerName: "localhost"}, pem: [2][]byte{c, k}}, nil
}

func startRelay(ce *certs, tune func(*relay.Config)) (*relay.Server, string, error) {
	cfg := relay.Config{TLS: relay.ServerTLS(ce.server), RelayID: "bench", Backend: stub{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxHandshakesPerIP: 1 << 20, MaxConns: 1 << 20}
	if tune != nil {
		tune(&cfg)
	}
	srv, err := relay.New(cfg)
	if err != nil {
		return nil, "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	go srv.Serve(ln)
	return srv, ln.Addr().String(), nil
}

var chunk = make([]byte, 256<<10)

// send writes n bytes to w.
func send(w io.Writer, n int) error {
	for n > 0 {
		k := min(n, len(chunk))
		if _, err := w.Write(chunk[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// stream is one throughput case: open k connected (writer, reader) pairs,
// then move total bytes over them and time it.
type stream func(k int) (ws []io.WriteCloser, rs []io.Reader, done func(), err error)

// result is one measurement: throughput and the process's CPU time per
// GiB moved (every end of every case runs in this process, so the CPU time
// is the whole cost of moving the bytes, whatever else runs on the box).
type result struct{ mibps, cpuPerGiB float64 }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func measure(open stream, k, total int) (result, error) {
	ws, rs, done, err := open(k)
	if err != nil {
		return result{}, err
	}
	defer done()
	per := total / k
	var wg sync.WaitGroup
	errs := make(chan error, 2*k)
	start, cpu0 := time.Now(), cpuTime()
	for i := range k {
		wg.Add(2)
		go func() { defer wg.Done(); errs <- send(ws[i], per) }()
		go func() {
			defer wg.Done()
			_, err := io.CopyN(io.Discard, rs[i], int64(per))
			errs <- err
		}()
	}
	wg.Wait()
	el, cpu := time.Since(start), cpuTime()-cpu0
	close(errs)
	for err := range errs {
		if err != nil {
			return result{}, err
		}
	}
	gib := float64(per*k) / (1 << 30)
	return result{mibps: gib * 1024 / el.Seconds(), cpuPerGiB: cpu.Seconds() / gib}, nil
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// rawTCP: client writes to a server that reads.
func rawTCP(k int) ([]io.WriteCloser, []io.Reader, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, err
	}
	var ws []io.WriteCloser
	var rs []io.Reader
	for range k {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return nil, nil, nil, err
		}
		s, err := ln.Accept()
		if err != nil {
			return nil, nil, nil, err
		}
		ws, rs = append(ws, c), append(rs, s)
	}
	return ws, rs, func() {
		ln.Close()
		for i := range ws {
			ws[i].Close()
			rs[i].(net.Conn).Close()
		}
	}, nil
}

// tlsStream: one TLS hop, client to a server that reads.
func tlsStream(ce *certs) stream {
	return func(k int) ([]io.WriteCloser, []io.Reader, func(), error) {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", relay.ServerTLS(ce.server))
		if err != nil {
			return nil, nil, nil, err
		}
		var ws []io.WriteCloser
		var rs []io.Reader
		for range k {
			accepted := make(chan net.Conn, 1)
			go func() {
				s, err := ln.Accept()
				if err == nil {
					s.(*tls.Conn).Handshake() // tls.Dial waits for it
				}
				accepted <- s
			}()
			c, err := tls.Dial("tcp", ln.Addr().String(), ce.client)
			if err != nil {
				return nil, nil, nil, err
			}
			s := <-accepted
			ws, rs = append(ws, c), append(rs, s)
		}
		return ws, rs, func() {
			ln.Close()
			for i := range ws {
				ws[i].Close()
				rs[i].(net.Conn).Close()
			}
		}, nil
	}
}

// tlsEcho: two TLS hops: the client writes to a server that decrypts and
// writes everything back re-encrypted on the same connection.
func tlsEcho(ce *certs) stream {
	return func(k int) ([]io.WriteCloser, []io.Reader, func(), error) {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", relay.ServerTLS(ce.server))
		if err != nil {
			return nil, nil, nil, err
		}
		go func() {
			for {
				s, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					buf := make([]byte, 32<<10)
					io.CopyBuffer(s, struct{ io.Reader }{s}, buf)
					s.Close()
				}()
			}
		}()
		var ws []io.WriteCloser
		var rs []io.Reader
		for range k {
			c, err := tls.Dial("tcp", ln.Addr().String(), ce.client)
			if err != nil {
				return nil, nil, nil, err
			}
			ws, rs = append(ws, c), append(rs, c)
		}
		return ws, rs, func() {
			ln.Close()
			for _, w := range ws {
				w.Close()
			}
		}, nil
	}
}

var guidSeq uint64

func nextGUID() [16]byte {
	guidSeq++
	var g [16]byte
	binary.BigEndian.PutUint64(g[8:], guidSeq)
	g[0] = 0xbe
	return g
}

func dialPair(ctx context.Context, addr string, client *tls.Config) (cust, tech *tls.Conn, err error) {
	g := nextGUID()
	cust, err = relay.Dial(ctx, addr, client, relay.Hello{Side: relay.SideCustomer, GUID: g})
	if err != nil {
		return nil, nil, err
	}
	tech, err = relay.Dial(ctx, addr, client, relay.Hello{Side: relay.SideTechnician, GUID: g, Token: "t"})
	if err != nil {
		cust.Close()
		return nil, nil, err
	}
	return cust, tech, nil
}

// relayPairs: customer writes, technician reads, through the relay.
func relayPairs(addr string, ce *certs) stream {
	return func(k int) ([]io.WriteCloser, []io.Reader, func(), error) {
		var ws []io.WriteCloser
		var rs []io.Reader
		for range k {
			c, t, err := dialPair(context.Background(), addr, ce.client)
			if err != nil {
				return nil, nil, nil, err
			}
			ws, rs = append(ws, c), append(rs, t)
		}
		return ws, rs, func() {
			for i := range ws {
				ws[i].Close()
				rs[i].(net.Conn).Close()
			}
		}, nil
	}
}

func percents(v []float64) string {
	var b strings.Builder
	for i, x := range v {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%.0f%%", 100*x)
	}
	return b.String()
}

func run(total, k, idle, pairings, runs int) error {
	ce, err := newCerts()
	if err != nil {
		return err
	}
	srv, addr, err := startRelay(ce, nil)
	if err != nil {
		return err
	}
	defer srv.Shutdown(context.Background())

	cases := []struct {
		name string
		open stream
	}{
		{"raw loopback TCP", rawTCP},
		{"plain TLS stream (1 hop)", tlsStream(ce)},
		{"plain TLS echo (2 hops, decrypt + re-encrypt)", tlsEcho(ce)},
		{"relay pair (2 hops)", relayPairs(addr, ce)},
	}
	fmt.Printf("Relay throughput, %d MiB per case, GOMAXPROCS=%d, median of %d rounds (cases interleaved in each round)\n\n", total>>20, runtimeProcs(), runs)
	type series struct{ one, many, cpuOne, cpuMany []float64 }
	res := make([]series, len(cases))
	var ratioOne, ratioMany []float64
	for range runs {
		for i, c := range cases {
			one, err := measure(c.open, 1, total)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			many, err := measure(c.open, k, total)
			if err != nil {
				return fmt.Errorf("%s x%d: %w", c.name, k, err)
			}
			r := &res[i]
			r.one, r.many = append(r.one, one.mibps), append(r.many, many.mibps)
			r.cpuOne, r.cpuMany = append(r.cpuOne, one.cpuPerGiB), append(r.cpuMany, many.cpuPerGiB)
		}
		// The ratio within a round, where both cases met the same load.
		ratioOne = append(ratioOne, res[3].one[len(res[3].one)-1]/res[1].one[len(res[1].one)-1])
		ratioMany = append(ratioMany, res[3].many[len(res[3].many)-1]/res[1].many[len(res[1].many)-1])
	}
	fmt.Printf("| case | 1 stream MiB/s | %d streams MiB/s | CPU s per GiB (1) | CPU s per GiB (%d) |\n| --- | ---: | ---: | ---: | ---: |\n", k, k)
	for i, c := range cases {
		r := res[i]
		fmt.Printf("| %s | %.0f | %.0f | %.2f | %.2f |\n", c.name, median(r.one), median(r.many), median(r.cpuOne), median(r.cpuMany))
	}
	fmt.Printf("\nrelay / TLS stream, median of the per-round ratios: %.0f%% (1 pair; rounds %s), %.0f%% (%d pairs)\n",
		100*median(ratioOne), percents(ratioOne), 100*median(ratioMany), k)
	fmt.Printf("relay CPU per byte / TLS stream CPU per byte: %.2f (1 pair), %.2f (%d pairs)\n",
		median(res[3].cpuOne)/median(res[1].cpuOne), median(res[3].cpuMany)/median(res[1].cpuMany), k)

	// Pairing latency.
	lat := make([]time.Duration, 0, pairings)
	one := []byte{1}
	for range pairings {
		g := nextGUID()
		cust, err := relay.Dial(context.Background(), addr, ce.client, relay.Hello{Side: relay.SideCustomer, GUID: g})
		if err != nil {
			return err
		}
		cust.Write(one)
		start := time.Now()
		tech, err := relay.Dial(context.Background(), addr, ce.client, relay.Hello{Side: relay.SideTechnician, GUID: g, Token: "t"})
		if err != nil {
			return err
		}
		if _, err := io.ReadFull(tech, make([]byte, 1)); err != nil {
			return err
		}
		lat = append(lat, time.Since(start))
		cust.Close()
		tech.Close()
	}
	slices.Sort(lat)
	fmt.Printf("\nPairing latency over %d pairings (technician dial + TLS handshake + hello + first byte): p50 %v, p99 %v\n",
		pairings, lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))

	return memory(ce, idle)
}

func runtimeProcs() int {
	n, _ := strconv.Atoi(os.Getenv("GOMAXPROCS"))
	if n == 0 {
		return numCPU()
	}
	return n
}

// memory runs the relay in a child process and reads its VmRSS.
func memory(ce *certs, n int) error {
	if n <= 0 {
		return nil
	}
	dir, err := os.MkdirTemp("", "relaybench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(dir+"/cert.pem", ce.pem[0], 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(dir+"/key.pem", ce.pem[1], 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-child", dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	var addr string
	if _, err := fmt.Fscanln(out, &addr); err != nil {
		return fmt.Errorf("child address: %w", err)
	}
	pid := cmd.Process.Pid
	settle := func() int64 {
		time.Sleep(3 * time.Second) // the child forces GCs meanwhile
		return rss(pid)
	}
	base := settle()
	guids := make([][16]byte, n)
	conns := make([]*tls.Conn, 0, 2*n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func(side relay.Side, token string) error {
		var mu sync.Mutex
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		next := 0
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					mu.Lock()
					i := next
					next++
					mu.Unlock()
					if i >= n {
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					c, err := relay.Dial(ctx, addr, ce.client, relay.Hello{Side: side, GUID: guids[i], Token: token})
					cancel()
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		return errors.Join(<-errs)
	}
	for i := range guids {
		guids[i] = nextGUID()
	}
	if err := dial(relay.SideCustomer, ""); err != nil {
		return fmt.Errorf("customers: %w", err)
	}
	waiting := settle()
	if err := dial(relay.SideTechnician, "t"); err != nil {
		return fmt.Errorf("technicians: %w", err)
	}
	paired := settle()
	fmt.Printf("\nMemory of the relay process (VmRSS), %d idle sessions:\n\n", n)
	fmt.Printf("| state | RSS | per side or pair |\n| --- | ---: | ---: |\n")
	fmt.Printf("| started, nothing connected | %.1f MB | |\n", float64(base)/1e6)
	fmt.Printf("| %d customers waiting | %.1f MB | %.1f KB per waiting side |\n", n, float64(waiting)/1e6, float64(waiting-base)/float64(n)/1e3)
	fmt.Printf("| %d idle pairs | %.1f MB | %.1f KB per idle pair |\n", n, float64(paired)/1e6, float64(paired-base)/float64(n)/1e3)
	return nil
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
