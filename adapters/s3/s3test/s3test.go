// Package s3test starts a real S3 server for tests: versitygw (v1.8.0)
// over a posix folder on 127.0.0.1, which checks request signatures.
package s3test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Access and Secret are the root credentials of servers started here.
const (
	Access = "AKIAVIGILTEST0000000"
	Secret = "vigil-test-secret-0000000000000000000000"
)

// Server is a running versitygw.
type Server struct {
	tb       testing.TB
	bin, dir string
	Endpoint string
	cmd      *exec.Cmd
}

// Binary returns versitygw's path: $VERSITYGW, on PATH, or in
// $(go env GOPATH)/bin; "" when absent.
func Binary() string {
	if b := os.Getenv("VERSITYGW"); b != "" {
		return b
	}
	if b, err := exec.LookPath("versitygw"); err == nil {
		return b
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = string(out[:len(out)-1])
		}
	}
	if b := filepath.Join(gopath, "bin", "versitygw"); gopath != "" {
		if _, err := os.Stat(b); err == nil {
			return b
		}
	}
	return ""
}

// Start runs versitygw for the test and stops it in tb.Cleanup. Without the
// binary the test is skipped, except under CI=true, where it fails.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := Binary()
	if bin == "" {
		msg := "versitygw not found: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"
		if os.Getenv("CI") == "true" {
			tb.Fatal(msg)
		}
		tb.Skip(msg)
	}
	s := &Server{tb: tb, bin: bin, dir: tb.TempDir()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.Endpoint = l.Addr().String()
	l.Close()
	s.Restart()
	tb.Cleanup(s.Kill)
	return s
}

// Restart starts the server again on the same address and folder after
// Kill.
func (s *Server) Restart() {
	s.tb.Helper()
	cmd := exec.Command(s.bin, "--access", Access, "--secret", Secret, "--port", s.Endpoint, "--quiet", "posix", s.dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		s.tb.Fatal(err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Endpoint, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.Kill()
			s.tb.Fatalf("versitygw did not listen on %s", s.Endpoint)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill stops the server at once, as a crash would.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// Dir is the posix folder holding the buckets.
func (s *Server) Dir() string { return s.dir }
