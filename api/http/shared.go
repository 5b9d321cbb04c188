package httpapi

import (
	"net/http"
	"net/netip"
)

// What the other HTTP front ends of Vigil (the web console, api/console)
// share with the API, so that one mapping and one parser serve both.

// StatusOf returns the HTTP status of a domain error code, as the API
// answers it.
func StatusOf(code string) int { return statusOf(code) }

// ParseRange reads a single "bytes=" Range header as the recording
// endpoint does: (0, -1) when there is none, (-1, n) for the last n bytes;
// an error wrapping service.ErrRangeNotSatisfiable for anything else.
func ParseRange(h string) (first, last int64, err error) { return parseRange(h) }

// ClientIP is the address the API would see for r: the connection's, or
// the nearest untrusted hop of X-Forwarded-For when the connection comes
// from one of proxies.
func ClientIP(r *http.Request, proxies []netip.Prefix) netip.Addr {
	return (&api{proxies: proxies}).clientIP(r)
}
