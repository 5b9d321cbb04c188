package main

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/vigilhq/vigil/adapters/webhook"
)

// publicURL parses VIGIL_PUBLIC_URL, the URL browsers and identity
// providers reach Vigil at; the SAML entity ids and ACS URLs are built on
// it (docs/sso.md). Empty means each request's own scheme and host.
func publicURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("VIGIL_PUBLIC_URL=%q: want an absolute http(s) URL without query or fragment", s)
	}
	return u, nil
}

// ssoMetadataClient fetches the IdP metadata URLs admins give: every hop
// (redirects too) goes through the webhooks' address check, so that an
// admin cannot make Vigil read private, loopback or link-local addresses
// unless VIGIL_WEBHOOK_ALLOW_CIDRS allows them.
func ssoMetadataClient(allow []netip.Prefix) *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: checkedTransport{check: webhook.New(webhook.Options{Allow: allow}), next: http.DefaultTransport},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

type checkedTransport struct {
	check *webhook.Client
	next  http.RoundTripper
}

func (t checkedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := t.check.CheckURL(r.Context(), r.URL.String()); err != nil {
		return nil, err
	}
	return t.next.RoundTrip(r)
}
