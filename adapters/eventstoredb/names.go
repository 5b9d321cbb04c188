package eventstoredb

import (
	"errors"
	"fmt"
	"strings"
)

// Stream names. Every KurrentDB stream the store writes starts with the
// store's prefix, which is letters and digits only, so that the three kinds
// below can never be mistaken for each other, nor for the streams of a store
// with another prefix:
//
//	<prefix>-<tenant>-<stream>      one Vigil stream (tenant and stream escaped)
//	<prefix>_order                  the order stream: global positions and Merkle hashes
//	<prefix>_checkpoints-<tenant>   the signed checkpoints of one tenant
//
// Only event streams start with "<prefix>-", which is the filter the store
// applies to $all. KurrentDB's category projection ($ce) sees them all as one
// category, <prefix>.
//
// Escaping is percent-encoding with upper-case hex digits: a byte is written
// as is when it is printable ASCII (0x21 to 0x7e) other than '%', and, in the
// tenant, other than '-'; every other byte is written as %XX. The tenant
// therefore never contains '-', so the first '-' after the prefix ends it and
// the rest of the name is the stream, in which '-' is kept as is
// (vigil-acme-session-0123…). Decoding accepts only what encoding produces
// (no needless or lower-case escapes), so the mapping is a bijection.

// DefaultPrefix is the prefix of every stream name when Options.Prefix is
// empty.
const DefaultPrefix = "vigil"

// maxPrefixLen bounds Options.Prefix.
const maxPrefixLen = 32

// validPrefix reports whether p can prefix the store's stream names: 1 to 32
// ASCII letters and digits. Neither '-' nor '_' is allowed, so that no
// prefix's streams start with another prefix's "<prefix>-".
func validPrefix(p string) bool {
	if p == "" || len(p) > maxPrefixLen {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// keep reports whether escape writes b as is.
func keep(b byte, inTenant bool) bool {
	return b > ' ' && b <= '~' && b != '%' && !(inTenant && b == '-')
}

const hexDigits = "0123456789ABCDEF"

// escape percent-encodes s for a stream name; inTenant also escapes '-'.
func escape(s string, inTenant bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !keep(s[i], inTenant) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if keep(c, inTenant) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

var errBadEscape = errors.New("not a canonical escape")

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescape reverses escape. It refuses anything escape cannot produce, so
// that every decoded name has exactly one encoding.
func unescape(s string, inTenant bool) (string, error) {
	if !strings.Contains(s, "%") {
		for i := 0; i < len(s); i++ {
			if !keep(s[i], inTenant) {
				return "", errBadEscape
			}
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if !keep(c, inTenant) {
				return "", errBadEscape
			}
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) {
			return "", errBadEscape
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		v := hi<<4 | lo
		if !ok1 || !ok2 || keep(v, inTenant) {
			return "", errBadEscape
		}
		b = append(b, v)
		i += 2
	}
	return string(b), nil
}

// eventStreamPrefix is what the name of every event stream of prefix starts
// with, and the filter applied to $all.
func eventStreamPrefix(prefix string) string { return prefix + "-" }

// eventStream returns the KurrentDB stream that holds stream of tenant.
func eventStream(prefix, tenant, stream string) string {
	return eventStreamPrefix(prefix) + escape(tenant, true) + "-" + escape(stream, false)
}

// parseEventStream reverses eventStream. ok is false for a name that is not
// an event stream of prefix; err is set for one that starts like one but is
// not a canonical encoding.
func parseEventStream(prefix, name string) (tenant, stream string, ok bool, err error) {
	rest, found := strings.CutPrefix(name, eventStreamPrefix(prefix))
	if !found {
		return "", "", false, nil
	}
	t, s, found := strings.Cut(rest, "-")
	if !found {
		return "", "", true, fmt.Errorf("stream %q: no tenant separator: %w", name, errBadEscape)
	}
	if tenant, err = unescape(t, true); err != nil {
		return "", "", true, fmt.Errorf("stream %q: tenant: %w", name, err)
	}
	if stream, err = unescape(s, false); err != nil {
		return "", "", true, fmt.Errorf("stream %q: stream: %w", name, err)
	}
	return tenant, stream, true, nil
}

// orderStream returns the name of the order stream of prefix.
func orderStream(prefix string) string { return prefix + "_order" }

// checkpointStream returns the name of tenant's checkpoint stream.
func checkpointStream(prefix, tenant string) string {
	return prefix + "_checkpoints-" + escape(tenant, true)
}
