package eventstoredb

import (
	"strings"
	"testing"
)

func TestEventStreamNames(t *testing.T) {
	cases := []struct {
		tenant, stream, want string
	}{
		{"acme", "session-0123456789abcdef0123456789abcdef", "vigil-acme-session-0123456789abcdef0123456789abcdef"},
		{"a-b", "group-x", "vigil-a%2Db-group-x"},
		{"a%b", "tenant-a%b", "vigil-a%25b-tenant-a%25b"},
		{"a:b/c", "technician-j.doe@example.com", "vigil-a:b/c-technician-j.doe@example.com"},
		{"sp ace", "s\x00\n\xff", "vigil-sp%20ace-s%00%0A%FF"},
		{"é", "ü", "vigil-%C3%A9-%C3%BC"},
		{"", "", "vigil--"},
		{"$all", "-", "vigil-$all--"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			got := eventStream("vigil", c.tenant, c.stream)
			if got != c.want {
				t.Fatalf("eventStream(%q, %q) = %q, want %q", c.tenant, c.stream, got, c.want)
			}
			tenant, stream, ok, err := parseEventStream("vigil", got)
			if err != nil || !ok || tenant != c.tenant || stream != c.stream {
				t.Fatalf("parse(%q) = %q, %q, %v, %v", got, tenant, stream, ok, err)
			}
		})
	}
}

func TestParseEventStreamRefuses(t *testing.T) {
	for _, name := range []string{
		"vigil-acme",          // no separator
		"vigil-a%2db-s",       // lower-case escape
		"vigil-a%41-s",        // needless escape of 'A'
		"vigil-a%2-s",         // short escape
		"vigil-acme-s%",       // escape cut off
		"vigil-acme-s%ZZ",     // not hex
		"vigil-acme-s\x00",    // raw control byte
		"vigil-acme-s t",      // raw space
		"vigil-acme-s%2D%",    // '-' need not be escaped in the stream, and a cut escape
		"vigil-acme-\xc3\xa9", // raw non-ASCII
	} {
		_, _, ok, err := parseEventStream("vigil", name)
		if !ok || err == nil {
			t.Errorf("parse(%q): ok %v, err %v; want a refusal", name, ok, err)
		}
	}
	// Names of other things are not event streams at all.
	for _, name := range []string{"vigil_order", "vigil_checkpoints-acme", "vigilx-acme-s", "other-acme-s", "$all", "$$vigil-acme-s", "$ce-vigil"} {
		if _, _, ok, err := parseEventStream("vigil", name); ok || err != nil {
			t.Errorf("parse(%q): ok %v, err %v; want not an event stream", name, ok, err)
		}
	}
}

func TestStreamKindsDoNotCollide(t *testing.T) {
	// With prefixes of letters and digits only, no order or checkpoint
	// stream of any prefix is an event stream of another.
	prefixes := []string{"vigil", "vigilorder", "vigil2", "v", "vigilcheckpoints"}
	for _, p := range prefixes {
		if !validPrefix(p) {
			t.Fatalf("%q invalid", p)
		}
		for _, q := range prefixes {
			for _, name := range []string{orderStream(q), checkpointStream(q, "acme"), checkpointStream(q, "a-b")} {
				if _, _, ok, _ := parseEventStream(p, name); ok {
					t.Errorf("%q is an event stream of prefix %q", name, p)
				}
			}
			if p != q && strings.HasPrefix(eventStream(q, "t", "s"), eventStreamPrefix(p)) {
				t.Errorf("prefix %q's streams match prefix %q's filter", q, p)
			}
		}
	}
	for _, bad := range []string{"", "a-b", "a_b", "a b", "$x", "é", strings.Repeat("a", 33)} {
		if validPrefix(bad) {
			t.Errorf("prefix %q accepted", bad)
		}
	}
}

// FuzzStreamNames checks that names are reversible and collision-free: any
// (tenant, stream) comes back from its name, and any name that parses is the
// name of what it parses to (so two pairs never share a name).
func FuzzStreamNames(f *testing.F) {
	f.Add("acme", "session-0123", "vigil-acme-session-0123")
	f.Add("a-b", "c-d", "vigil-a%2Db-c-d")
	f.Add("%", "%25", "vigil-%25-%2525")
	f.Add("", "\x00", "vigil--%00")
	f.Fuzz(func(t *testing.T, tenant, stream, name string) {
		n := eventStream("vigil", tenant, stream)
		gt, gs, ok, err := parseEventStream("vigil", n)
		if err != nil || !ok || gt != tenant || gs != stream {
			t.Fatalf("(%q, %q) -> %q -> (%q, %q, %v, %v)", tenant, stream, n, gt, gs, ok, err)
		}
		if strings.Count(n, "-") < 2 || strings.Contains(escape(tenant, true), "-") {
			t.Fatalf("%q: tenant part holds a separator", n)
		}
		if pt, ps, ok, err := parseEventStream("vigil", name); ok && err == nil {
			if back := eventStream("vigil", pt, ps); back != name {
				t.Fatalf("%q parses to (%q, %q), whose name is %q", name, pt, ps, back)
			}
		}
	})
}
