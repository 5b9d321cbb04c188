// Package webhook is the outbound HTTP client of Vigil's webhooks: it
// implements webhooks.Sender and refuses server-side request forgery. The
// check runs at dial time on the resolved address, so a name that resolves
// (or re-resolves) to a private address is refused too: loopback, private,
// link-local, unspecified, multicast and other special addresses are
// refused unless an allowed CIDR (VIGIL_WEBHOOK_ALLOW_CIDRS) contains them,
// and plain HTTP is allowed only to addresses in an allowed CIDR.
package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/vigilhq/vigil/webhooks"
)

// ErrRefused is wrapped by Send's error for an address or scheme the SSRF
// rules refuse. It is webhooks.ErrAddressRefused, so that the delivery log
// shows the refusal's category and nothing of the addresses.
var ErrRefused = webhooks.ErrAddressRefused

// Options configure a Client.
type Options struct {
	// Allow lists the CIDRs that may be reached although special, and over
	// plain HTTP.
	Allow []netip.Prefix
	// MaxIdlePerHost bounds kept-alive connections per endpoint (default 16).
	MaxIdlePerHost int
}

// Client sends webhook requests. It is safe for concurrent use.
type Client struct {
	allow []netip.Prefix
	https *http.Client
	plain *http.Client
}

var _ webhooks.Sender = (*Client)(nil)

// New returns a client.
func New(opts Options) *Client {
	if opts.MaxIdlePerHost <= 0 {
		opts.MaxIdlePerHost = 16
	}
	c := &Client{allow: opts.Allow}
	c.https = c.client(false, opts)
	c.plain = c.client(true, opts)
	return c
}

func (c *Client) client(plain bool, opts Options) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, Control: func(network, address string, _ syscall.RawConn) error {
		return c.check(address, plain)
	}}
	t := &http.Transport{
		Proxy:               nil, // a proxy would dial for us, past the check
		DialContext:         d.DialContext,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: opts.MaxIdlePerHost,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a redirect is an answer, not a new target
	}}
}

func (c *Client) allowed(a netip.Addr) bool {
	for _, p := range c.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// check refuses address (ip:port, already resolved) by the SSRF rules.
func (c *Client) check(address string, plain bool) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrRefused, address)
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrRefused, address)
	}
	a = a.Unmap()
	if c.allowed(a) {
		return nil
	}
	if plain {
		return fmt.Errorf("%w: plain HTTP to %s (HTTPS only outside the allowed CIDRs)", ErrRefused, a)
	}
	if Special(a) {
		return fmt.Errorf("%w: %s is a private, loopback, link-local or special address", ErrRefused, a)
	}
	return nil
}

var specialNets = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"), // NAT64 can reach IPv4 private space
	netip.MustParsePrefix("fc00::/7"),
}

// Special reports whether a is an address webhooks must not reach by
// default.
func Special(a netip.Addr) bool {
	a = a.Unmap()
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsMulticast() ||
		a.IsUnspecified() || a.IsInterfaceLocalMulticast() || !a.IsValid() {
		return true
	}
	for _, p := range specialNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// CheckURL applies the SSRF rules to rawURL before it is stored (for
// webhooks.Config.CheckAddress): its scheme, and every address its host
// resolves to now (an IP literal is its own). A name that does not resolve
// yet is let through: the dial-time check refuses whatever it resolves to
// at delivery, which also defeats DNS rebinding. The error wraps
// ErrRefused.
func (c *Client) CheckURL(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		return fmt.Errorf("%w: not an http(s) URL", ErrRefused)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname()); err != nil {
			return nil
		}
	}
	for _, a := range addrs {
		if err := c.check(net.JoinHostPort(a.String(), "0"), u.Scheme == "http"); err != nil {
			return err
		}
	}
	return nil
}

// Send implements webhooks.Sender.
func (c *Client) Send(ctx context.Context, rawURL string, headers http.Header, body []byte) (int, time.Duration, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return 0, 0, fmt.Errorf("%w: url %q", ErrRefused, rawURL)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.ContentLength = int64(len(body))
	req.Header = headers.Clone()
	hc := c.https
	if u.Scheme == "http" {
		hc = c.plain
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After"), time.Now()), nil
}

func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// ParseCIDRs parses a comma-separated list of CIDRs or addresses (a bare
// address is a /32 or /128).
func ParseCIDRs(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("webhook allow CIDR %q: %w", s, err)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
