package postgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
)

func TestUseTOTPStep(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	mustErr(t, "create", s.CreateCredential(ctx, service.Credential{Tenant: "acme", TechnicianID: "alice", EmailIndex: []byte("i"), PasswordHash: "h"}), nil)
	for _, c := range []struct {
		step int64
		ok   bool
	}{{100, true}, {100, false}, {99, false}, {101, true}, {50, false}} {
		ok, err := s.UseTOTPStep(ctx, "acme", "alice", c.step)
		mustErr(t, "use step", err, nil)
		if ok != c.ok {
			t.Errorf("step %d: %v, want %v", c.step, ok, c.ok)
		}
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if ok, err := s.UseTOTPStep(ctx, "acme", "alice", 200); err == nil && ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d concurrent uses of one step succeeded, want 1", wins.Load())
	}
	_, err := s.UseTOTPStep(ctx, "acme", "nobody", 300)
	mustErr(t, "unknown technician", err, domain.ErrNotFound)
}

func TestReserveLoginFailure(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	addr, w1, w2 := []byte("addr"), t0, t0.Add(10*time.Minute)
	reserve := func(window time.Time, limit int) bool {
		t.Helper()
		ok, err := s.ReserveLoginFailure(ctx, addr, window, limit)
		mustErr(t, "reserve", err, nil)
		return ok
	}
	for i := range 3 {
		if !reserve(w1, 3) {
			t.Fatalf("reservation %d refused under the limit", i)
		}
	}
	if reserve(w1, 3) {
		t.Fatal("a fourth reservation past the limit of 3")
	}
	mustErr(t, "forgive", s.ForgiveLoginFailure(ctx, addr, w1), nil)
	if !reserve(w1, 3) {
		t.Error("refused after a forgiven failure")
	}
	if !reserve(w2, 3) {
		t.Error("the next window is full")
	}
	if reserve(w2, 0) {
		t.Error("reserved with limit 0")
	}
	// Concurrent reservations: exactly the limit succeeds.
	var got atomic.Int32
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			if ok, err := s.ReserveLoginFailure(ctx, []byte("busy"), w1, 5); err == nil && ok {
				got.Add(1)
			}
		})
	}
	wg.Wait()
	if got.Load() != 5 {
		t.Errorf("%d of 12 concurrent reservations succeeded, want 5", got.Load())
	}
	// Forgiving what is not counted changes nothing.
	mustErr(t, "forgive unknown", s.ForgiveLoginFailure(ctx, []byte("other"), w1), nil)
}

func TestCountAccountFailure(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	idx := []byte("email-index")
	count := func(tenant string, at time.Time) bool {
		t.Helper()
		locked, err := s.CountAccountFailure(ctx, tenant, idx, at, 3, 15*time.Minute)
		mustErr(t, "count", err, nil)
		return locked
	}
	for i := range 3 {
		if count("acme", t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("locked at failure %d of 3", i+1)
		}
	}
	if !count("acme", t0.Add(time.Minute)) {
		t.Error("not locked after 3 failures")
	}
	if count("", t0.Add(time.Minute)) || count("globex", t0.Add(time.Minute)) {
		t.Error("the lock of one tenant's name holds in another")
	}
	// The lock lasts 15 minutes from the third failure, then counting
	// starts again.
	if !count("acme", t0.Add(15*time.Minute)) {
		t.Error("unlocked before its end")
	}
	for i := range 2 {
		if count("acme", t0.Add(16*time.Minute+time.Duration(i)*time.Second)) {
			t.Fatalf("locked at failure %d after the lockout ended", i+1)
		}
	}
	// Concurrent failures all count.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			_, err := s.CountAccountFailure(ctx, "conc", idx, t0, 3, time.Minute)
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if !count("conc", t0) {
		t.Error("3 concurrent failures did not lock")
	}
}

func TestPurgeLoginFailures(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	for _, w := range []time.Time{t0, t0.Add(time.Hour)} {
		if _, err := s.ReserveLoginFailure(ctx, []byte("a"), w, 5); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		tenant string
		at     time.Time
		lock   time.Duration
	}{{"old", t0, time.Minute}, {"recent", t0.Add(time.Hour), time.Minute}, {"locked", t0, 3 * time.Hour}} {
		if _, err := s.CountAccountFailure(ctx, c.tenant, []byte("i"), c.at, 1, c.lock); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PurgeLoginFailures(ctx, t0.Add(30*time.Minute))
	mustErr(t, "purge", err, nil)
	if n != 2 {
		t.Errorf("purged %d rows, want 2 (the old window, the old name)", n)
	}
	if locked, _ := s.CountAccountFailure(ctx, "locked", []byte("i"), t0.Add(2*time.Hour), 1, time.Minute); !locked {
		t.Error("purged a name still locked")
	}
	if ok, _ := s.ReserveLoginFailure(ctx, []byte("a"), t0.Add(time.Hour), 1); ok {
		t.Error("purged a recent window")
	}
}

func TestLoginGuardTablesAppRole(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL ROLE vigil_app`); err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`INSERT INTO login_address_failures (address_key, window_start, failures) VALUES ('\x00', now(), 1)`,
		`UPDATE login_address_failures SET failures = 2`,
		`DELETE FROM login_address_failures`,
		`INSERT INTO login_account_failures (tenant, email_index, failures, updated_at) VALUES ('t', '\x00', 1, now())`,
		`UPDATE login_account_failures SET locked_until = now()`,
		`DELETE FROM login_account_failures`,
		`INSERT INTO technician_credentials (tenant, technician_id, email_index, password_hash) VALUES ('t', 'x', '\x01', 'h')`,
		`UPDATE technician_credentials SET totp_last_step = 5`,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			t.Fatalf("vigil_app: %s: %v", stmt, err)
		}
	}
}
