// Command recbench measures session recordings (docs/recordings.md): it
// uploads a large recording generated on the fly through the HTTP API over
// loopback (POST /v1/sessions/{id}/recordings: chunked AES-256-GCM, hashes,
// multipart upload), downloads it whole (GET /v1/recordings/{id}) and checks
// its SHA-256, and does a raw minio-go PutObject/GetObject of the same bytes
// to the same S3 server in the same run. It reports MB/s and peak memory of
// each phase. It creates and drops its own database and starts its own
// versitygw over a temporary folder.
//
//	go run ./bench/recbench [-size 1GiB-in-bytes] [-db URL] [-versitygw PATH]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/vigilhq/vigil/adapters/s3"
	httpapi "github.com/vigilhq/vigil/api/http"
	"github.com/vigilhq/vigil/bench/internal/stack"
	"github.com/vigilhq/vigil/domain/service"
)

const (
	access = "AKIAVIGILBENCH000000"
	secret = "vigil-bench-secret-00000000000000000000"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "recbench:", err)
		os.Exit(1)
	}
}

func run() error {
	server := flag.String("db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server URL")
	size := flag.Int64("size", 1<<30, "recording size in bytes")
	gw := flag.String("versitygw", "", "versitygw binary (default: $VERSITYGW, PATH, $(go env GOPATH)/bin)")
	flag.Parse()
	ctx := context.Background()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// The database.
	s, err := stack.Open(ctx, *server, "recbench", logger)
	if err != nil {
		return err
	}
	defer s.Close()
	pool, st, sealer, l := s.Pool, s.Store, s.Sealer, s.Ledger

	// The S3 server.
	gwSrv, err := startGateway(*gw)
	if err != nil {
		return err
	}
	defer gwSrv.stop()
	// The production defaults: 16 MiB parts, 1 MiB chunks.
	blobs, err := s3.New(ctx, s3.Config{Endpoint: gwSrv.endpoint, AccessKey: access, SecretKey: secret, Bucket: "vigil-bench", Region: "us-east-1"})
	if err != nil {
		return err
	}

	// The API over loopback.
	svc := service.New(service.Config{Log: l, Identity: st, Idempotency: st, Activity: st, Crypto: sealer, Region: "eu", Logger: logger})
	recs := service.NewRecordings(svc, service.RecordingsConfig{Blobs: blobs, Keys: sealer, Index: st, MaxSize: *size + 1, Logger: logger})
	api := httptest.NewServer(httpapi.New(httpapi.Options{Service: svc, Recordings: recs, Logger: logger}))
	defer api.Close()
	c := &client{base: api.URL, hc: api.Client()}
	tenant, adminKey, err := svc.CreateTenant(ctx, "Bench", "eu")
	if err != nil {
		return err
	}
	_, ingest, err := svc.CreateAPIKey(ctx, tenant.ID, service.RoleIngest, "applet")
	if err != nil {
		return err
	}
	sid, tech, err := c.session(adminKey, ingest)
	if err != nil {
		return err
	}

	var pgVersion string
	_ = pool.QueryRow(ctx, "SHOW server_version").Scan(&pgVersion)
	fmt.Printf("Go %s, GOMAXPROCS=%d, %s; PostgreSQL %s; versitygw (posix) on 127.0.0.1\n\n", runtime.Version(), runtime.GOMAXPROCS(0), cpuModel(), pgVersion)
	fmt.Printf("`go run ./bench/recbench -size %d`\n\n", *size)
	mb := float64(*size) / 1e6
	type result struct {
		what        string
		secs        float64
		heap, sys   uint64
		hwm         uint64
		hwmReliable bool
	}
	var results []result
	measure := func(what string, f func() error) error {
		runtime.GC()
		debug.FreeOSMemory()
		hwmOK := resetHWM()
		m := startMonitor()
		start := time.Now()
		err := f()
		d := time.Since(start)
		heap, sys := m.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		results = append(results, result{what, d.Seconds(), heap, sys, procStatus("VmHWM"), hwmOK})
		fmt.Fprintf(os.Stderr, "%s: %.1f s\n", what, d.Seconds())
		return nil
	}

	// Raw minio-go, same bytes, same server, same part size.
	mc, bucket := blobs.Client(), blobs.Bucket()
	var rawSum, vigilSum []byte
	if err := measure("raw minio-go PutObject", func() error {
		g := newGen(*size)
		_, err := mc.PutObject(ctx, bucket, "raw/bench", g, *size, minio.PutObjectOptions{ContentType: "video/webm", PartSize: s3.DefaultPartSize})
		rawSum = g.sum()
		return err
	}); err != nil {
		return err
	}
	if err := measure("raw minio-go GetObject", func() error {
		obj, err := mc.GetObject(ctx, bucket, "raw/bench", minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer obj.Close()
		h := sha256.New()
		n, err := io.Copy(h, obj)
		if err != nil {
			return err
		}
		if n != *size || !bytes.Equal(h.Sum(nil), rawSum) {
			return fmt.Errorf("got %d bytes, SHA-256 differs: %v", n, !bytes.Equal(h.Sum(nil), rawSum))
		}
		return nil
	}); err != nil {
		return err
	}
	_ = mc.RemoveObject(ctx, bucket, "raw/bench", minio.RemoveObjectOptions{})

	var recID string
	if err := measure("Vigil POST /v1/sessions/{id}/recordings", func() error {
		g := newGen(*size)
		id, sum, err := c.upload(tech, sid, g)
		vigilSum, recID = g.sum(), id
		if err == nil && sum != fmt.Sprintf("%x", vigilSum) {
			err = fmt.Errorf("answered sha256 %s, sent %x", sum, vigilSum)
		}
		return err
	}); err != nil {
		return err
	}
	if err := measure("Vigil GET /v1/recordings/{id}", func() error {
		n, sum, err := c.download(adminKey, recID)
		if err != nil {
			return err
		}
		if n != *size || !bytes.Equal(sum, vigilSum) {
			return fmt.Errorf("got %d bytes of %d, SHA-256 equal: %v", n, *size, bytes.Equal(sum, vigilSum))
		}
		return nil
	}); err != nil {
		return err
	}

	fmt.Println("| what | MB | seconds | MB/s | vs raw | peak HeapInuse MB | peak Sys MB | VmHWM MB |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for i, r := range results {
		ratio := "—"
		if i >= 2 {
			raw := results[i-2]
			ratio = fmt.Sprintf("%.0f%%", 100*raw.secs/r.secs)
		}
		hwm := fmt.Sprintf("%.0f", float64(r.hwm)/1e6)
		if !r.hwmReliable {
			hwm += " (process peak)"
		}
		fmt.Printf("| %s | %.0f | %.1f | %.0f | %s | %.1f | %.1f | %s |\n", r.what, mb, r.secs, mb/r.secs, ratio,
			float64(r.heap)/1e6, float64(r.sys)/1e6, hwm)
	}
	fmt.Printf("\nDownloads verified: SHA-256 of the %d bytes read back equals the SHA-256 of the bytes sent.\n", *size)
	fmt.Println("Memory is the whole process: the S3 client, the API server and the HTTP client.")
	fmt.Println("Goals (not asserted): Vigil at least 70% of raw throughput; memory under 64 MB.")
	return nil
}

// gen is an io.Reader of n pseudo-random bytes that hashes what it hands
// out, so nothing is buffered beyond the caller's buffer.
type gen struct {
	left int64
	src  *mrand.ChaCha8
	h    hash.Hash
}

func newGen(n int64) *gen {
	var seed [32]byte
	copy(seed[:], "vigil recbench: same bytes twice")
	return &gen{left: n, src: mrand.NewChaCha8(seed), h: sha256.New()}
}

func (g *gen) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n, _ := g.src.Read(p)
	g.h.Write(p[:n])
	g.left -= int64(n)
	return n, nil
}

func (g *gen) sum() []byte { return g.h.Sum(nil) }

// monitor polls the runtime's memory every 50 ms and keeps the peaks.
type monitor struct {
	done      chan struct{}
	wg        sync.WaitGroup
	heap, sys uint64
}

func startMonitor() *monitor {
	m := &monitor{done: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-m.done:
				m.sample()
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *monitor) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.heap, m.sys = max(m.heap, ms.HeapInuse), max(m.sys, ms.Sys)
}

func (m *monitor) stop() (heap, sys uint64) {
	close(m.done)
	m.wg.Wait()
	return m.heap, m.sys
}

// resetHWM resets the process's peak RSS (VmHWM) by writing 5 to
// /proc/self/clear_refs; false when the kernel refuses, in which case VmHWM
// is the peak since the process started.
func resetHWM() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// procStatus returns a kB field of /proc/self/status in bytes.
func procStatus(field string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

// client speaks the API as the console and an admin would.
type client struct {
	base string
	hc   *http.Client
}

func (c *client) json(method, path, cred string, body any, want int) (map[string]any, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, c.base+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+cred)
	req.Header.Set("Content-Type", "application/json")
	res, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, res.StatusCode, raw)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out, nil
}

// session creates a group, a technician and a session the technician holds
// with a customer connected; it returns the session id and the
// technician's token.
func (c *client) session(admin, ingest string) (string, string, error) {
	perms := map[string]bool{"remote_control": true, "record_sessions": true, "desktop_view": true}
	g, err := c.json("POST", "/v1/groups", admin, map[string]any{"name": "Bench", "permissions": perms}, 201)
	if err != nil {
		return "", "", err
	}
	const password = "Correct-Horse-9-Battery"
	if _, err := c.json("POST", "/v1/technicians", admin, map[string]any{"email": "bench@example.com", "name": "Bench",
		"group_id": g["id"], "password": password}, 201); err != nil {
		return "", "", err
	}
	tok, err := c.json("POST", "/v1/auth/login", "", map[string]any{"email": "bench@example.com", "password": password}, 200)
	if err != nil {
		return "", "", err
	}
	tech, _ := tok["token"].(string)
	s, err := c.json("POST", "/v1/sessions", tech, map[string]any{"queue": "shared"}, 201)
	if err != nil {
		return "", "", err
	}
	sid, _ := s["id"].(string)
	if _, err := c.json("POST", "/v1/sessions/"+sid+"/commands", ingest, map[string]any{"type": "connect_customer", "platform": "windows"}, 200); err != nil {
		return "", "", err
	}
	if _, err := c.json("POST", "/v1/sessions/"+sid+"/commands", tech, map[string]any{"type": "pick_up"}, 200); err != nil {
		return "", "", err
	}
	return sid, tech, nil
}

// upload streams body as a recording; it returns the recording id and the
// answered SHA-256.
func (c *client) upload(tech, sid string, body io.Reader) (string, string, error) {
	req, _ := http.NewRequest("POST", c.base+"/v1/sessions/"+sid+"/recordings?duration_ms=3600000", body)
	req.Header.Set("Authorization", "Bearer "+tech)
	req.Header.Set("Content-Type", "video/webm")
	res, err := c.hc.Do(req)
	if err != nil {
		return "", "", err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != 201 {
		return "", "", fmt.Errorf("upload: %d %s", res.StatusCode, raw)
	}
	var out service.StoredRecording
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", "", err
	}
	return out.ID, out.SHA256, nil
}

// download reads the whole recording and returns its length and SHA-256.
func (c *client) download(cred, id string) (int64, []byte, error) {
	req, _ := http.NewRequest("GET", c.base+"/v1/recordings/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+cred)
	res, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		raw, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		return 0, nil, fmt.Errorf("download: %d %s", res.StatusCode, raw)
	}
	h := sha256.New()
	n, err := io.Copy(h, res.Body)
	return n, h.Sum(nil), err
}

// gateway is a versitygw over a temporary posix folder: the small
// equivalent of adapters/s3/s3test, whose Start takes a testing.TB.
type gateway struct {
	endpoint, dir string
	cmd           *exec.Cmd
}

func startGateway(bin string) (*gateway, error) {
	if bin == "" {
		bin = gatewayBinary()
	}
	if bin == "" {
		return nil, errors.New("versitygw not found: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0")
	}
	dir, err := os.MkdirTemp("", "recbench-s3-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &gateway{endpoint: ln.Addr().String(), dir: dir}
	ln.Close()
	g.cmd = exec.Command(bin, "--access", access, "--secret", secret, "--port", g.endpoint, "--quiet", "posix", dir)
	g.cmd.Stdout, g.cmd.Stderr = os.Stderr, os.Stderr
	if err := g.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", g.endpoint, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return g, nil
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("versitygw did not listen on %s", g.endpoint)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (g *gateway) stop() {
	if g.cmd != nil && g.cmd.Process != nil {
		_ = g.cmd.Process.Kill()
		_ = g.cmd.Wait()
	}
	os.RemoveAll(g.dir)
}

func gatewayBinary() string {
	if b := os.Getenv("VERSITYGW"); b != "" {
		return b
	}
	if b, err := exec.LookPath("versitygw"); err == nil {
		return b
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	if gopath != "" {
		if b := filepath.Join(gopath, "bin", "versitygw"); fileExists(b) {
			return b
		}
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
