package httpapi_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/vigilhq/vigil/domain/service"
)

// TestLoginAnswersDoNotTellAccountsApart: over HTTP, a registered e-mail
// address and an unknown one get byte-identical answers, 401 and then 423,
// and an address past the failure limit gets 429 rate_limited with
// Retry-After.
func TestLoginAnswersDoNotTellAccountsApart(t *testing.T) {
	e := newEnv(t)
	// The per-address count runs in fixed windows of the clock
	// (DefaultLoginFailureWindow): start just after a window begins, or a
	// slow run crossing the boundary counts its failures in two windows
	// and is never limited (seen in CI at 21:10:00).
	now, w := e.svc.Now(), service.DefaultLoginFailureWindow
	e.clock.Advance(now.Truncate(w).Add(w).Sub(now) + time.Second)
	g := e.group(nil, nil)
	e.technician(g, "known@example.com")
	failures := 0
	for i := 1; i <= 6; i++ {
		k := e.login("known@example.com", "Wrong-Password-123")
		u := e.login("nobody@example.com", "Wrong-Password-123")
		failures += 2
		want, code := 401, "unauthenticated"
		if i == 6 {
			want, code = 423, "locked_out"
		}
		e.want(k, want, code)
		if u.status != k.status || string(u.raw) != string(k.raw) {
			t.Fatalf("attempt %d: known %d %s, unknown %d %s", i, k.status, k.raw, u.status, u.raw)
		}
	}
	k, u := e.login("known@example.com", goodPassword), e.login("nobody@example.com", goodPassword)
	failures += 2
	e.want(k, 423, "locked_out")
	if u.status != k.status || string(u.raw) != string(k.raw) {
		t.Fatalf("right password: known %d %s, unknown %d %s", k.status, k.raw, u.status, u.raw)
	}
	// Every request of the test comes from 127.0.0.1.
	for ; failures < service.DefaultLoginFailuresPerAddress; failures++ {
		e.want(e.login(fmt.Sprintf("guess%d@example.com", failures), "Wrong-Password-123"), 401, "unauthenticated")
	}
	r := e.want(e.login("known2@example.com", "Wrong-Password-123"), 429, "rate_limited")
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs < 1 || secs > int(service.DefaultLoginFailureWindow.Seconds()) {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
}
