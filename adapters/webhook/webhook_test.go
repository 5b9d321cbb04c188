package webhook_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/vigilhq/vigil/adapters/webhook"
)

func TestSSRFRefusals(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(tls.Close)
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	strict := webhook.New(webhook.Options{})
	ctx := context.Background()
	for _, c := range []struct{ name, url string }{
		{"loopback over http", srv.URL},
		{"loopback by name", "http://localhost" + port},
		{"loopback over https", tls.URL},
		{"private", "https://10.0.0.1/"},
		{"link-local metadata", "http://169.254.169.254/latest/meta-data"},
		{"ipv6 loopback", "https://[::1]/"},
		{"mapped loopback", "https://[::ffff:127.0.0.1]/"},
		{"unspecified", "https://0.0.0.0/"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := strict.Send(ctx, c.url, http.Header{}, []byte("{}"))
			if !errors.Is(err, webhook.ErrRefused) {
				t.Errorf("Send(%s) = %v, want ErrRefused", c.url, err)
			}
		})
	}
	allowed := webhook.New(webhook.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if st, _, err := allowed.Send(ctx, srv.URL, http.Header{}, []byte("{}")); err != nil || st != 200 {
		t.Errorf("allowed loopback: %d, %v", st, err)
	}
	if _, _, err := allowed.Send(ctx, "http://10.1.2.3/", http.Header{}, []byte("{}")); !errors.Is(err, webhook.ErrRefused) {
		t.Errorf("plain HTTP outside the allowed CIDRs: %v", err)
	}
}

// CheckURL, for webhook creation, refuses what the dial-time check would,
// and lets through a name that does not resolve yet (refused, if need be,
// at delivery).
func TestCheckURLAtCreation(t *testing.T) {
	c := webhook.New(webhook.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"https://127.0.0.1/x", false},
		{"https://localhost/x", false},
		{"https://[::ffff:10.0.0.1]/x", false},
		{"https://[fe80::1%25eth0]/x", false},
		{"http://93.184.216.34/x", false}, // plain HTTP outside the allowed CIDRs
		{"ftp://93.184.216.34/x", false},
		{"https://93.184.216.34/x", true},
		{"http://127.0.0.2:8080/x", true}, // allowed CIDR
		{"https://no-such-host.invalid/x", true},
	} {
		err := c.CheckURL(context.Background(), tt.url)
		if (err == nil) != tt.ok {
			t.Errorf("CheckURL(%s) = %v, want ok %v", tt.url, err, tt.ok)
		}
		if err != nil && !errors.Is(err, webhook.ErrRefused) {
			t.Errorf("CheckURL(%s) = %v, not ErrRefused", tt.url, err)
		}
	}
}
