package relay_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigilhq/vigil/relay"
)

// TestCertReload renews the relay's certificate files while a pair relays:
// new handshakes get the new certificate, the pair is untouched, and a
// broken renewal keeps the previous certificate.
func TestCertReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "relay.pem"), filepath.Join(dir, "relay-key.pem")
	write := func(certPEM, keyPEM []byte) {
		t.Helper()
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c1, k1, err := relay.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	write(c1, k1)
	rl, err := relay.NewCertReloader(certFile, keyFile, 10*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(c *relay.Config) { c.TLS = relay.ServerTLSReloading(rl) })
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(c1)
	h.client = &tls.Config{RootCAs: roots, ServerName: "localhost"}
	cust, tech, _ := h.pair(t)

	// Renew: the old certificate's clients fail, the new one's succeed.
	c2, k2, err := relay.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Second)
	write(c2, k2)
	os.Chtimes(certFile, later, later)
	os.Chtimes(keyFile, later, later)
	time.Sleep(20 * time.Millisecond)
	roots2 := x509.NewCertPool()
	roots2.AppendCertsFromPEM(c2)
	waitFor(t, "the renewed certificate", func() bool {
		_, err := h.dial(t, relay.SideCustomer, h.session("tech-1"), "")
		return err != nil // the old root no longer verifies the relay
	})
	h.client = &tls.Config{RootCAs: roots2, ServerName: "localhost"}
	if _, err := h.dial(t, relay.SideCustomer, h.session("tech-1"), ""); err != nil {
		t.Fatalf("dial with the renewed certificate: %v", err)
	}
	// The pair made before the renewal still relays.
	cust.Write([]byte("still here"))
	got := make([]byte, 10)
	tech.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(tech, got); err != nil || string(got) != "still here" {
		t.Fatalf("pair after renewal: %q %v", got, err)
	}

	// A broken renewal (a key that does not match) keeps the current one.
	c3, _, err := relay.SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, c3, 0o644); err != nil {
		t.Fatal(err)
	}
	later = later.Add(2 * time.Second)
	os.Chtimes(certFile, later, later)
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := relay.Dial(ctx, h.addr, h.client, relay.Hello{Side: relay.SideCustomer, GUID: h.session("tech-1")})
	if err != nil {
		t.Fatalf("dial after a broken renewal: %v", err)
	}
	c.Close()
	if _, err := relay.NewCertReloader(certFile, keyFile, 0, nil); err == nil {
		t.Error("NewCertReloader accepted a certificate with another key")
	}
}
