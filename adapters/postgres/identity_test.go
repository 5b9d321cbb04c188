package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/domain/service"
	"github.com/vigilhq/vigil/migrations"
)

// t0 has microseconds only: timestamptz keeps no more.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.UTC)

func newIdentityStore(tb testing.TB) *postgres.Store {
	tb.Helper()
	db := pgtest.New(tb)
	s := postgres.NewStore(db.Pool, postgres.Options{})
	tb.Cleanup(s.Close)
	return s
}

// mustErr fails tb unless err matches want (nil for success).
func mustErr(tb testing.TB, what string, err, want error) {
	tb.Helper()
	if want == nil && err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
	if want != nil && !errors.Is(err, want) {
		tb.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func createTenant(tb testing.TB, s *postgres.Store, id string) {
	tb.Helper()
	if err := s.CreateTenant(context.Background(), service.TenantRecord{ID: id, Name: "Tenant " + id, Region: "eu", CreatedAt: t0}); err != nil {
		tb.Fatal(err)
	}
}

func TestTenants(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	paris := time.FixedZone("CET", 3600)
	acme := service.TenantRecord{ID: "acme", Name: "Acme", Region: "eu", CreatedAt: t0.In(paris)}
	mustErr(t, "create acme", s.CreateTenant(ctx, acme), nil)

	got, err := s.Tenant(ctx, "acme")
	mustErr(t, "tenant acme", err, nil)
	if diff := cmp.Diff(acme, got); diff != "" {
		t.Errorf("tenant acme (-want +got):\n%s", diff)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt in %v, want UTC", got.CreatedAt.Location())
	}

	before := time.Now()
	mustErr(t, "create with zero time", s.CreateTenant(ctx, service.TenantRecord{ID: "globex", Name: "Globex", Region: "us"}), nil)
	got, err = s.Tenant(ctx, "globex")
	mustErr(t, "tenant globex", err, nil)
	if got.CreatedAt.Before(before.Add(-time.Minute)) || got.CreatedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("zero CreatedAt stored as %v, want about now", got.CreatedAt)
	}

	t.Run("Duplicate", func(t *testing.T) {
		err := s.CreateTenant(ctx, service.TenantRecord{ID: "acme", Name: "Other", Region: "us", CreatedAt: t0})
		mustErr(t, "create acme again", err, domain.ErrConflict)
		got, _ := s.Tenant(ctx, "acme")
		if got.Name != "Acme" {
			t.Errorf("duplicate create changed the tenant to %+v", got)
		}
	})
	t.Run("Missing", func(t *testing.T) {
		_, err := s.Tenant(ctx, "initech")
		mustErr(t, "tenant initech", err, domain.ErrNotFound)
	})
}

func TestAPIKeys(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	createTenant(t, s, "acme")

	for _, role := range []service.Role{service.RoleAdmin, service.RoleAuditor, service.RoleIntegration, service.RoleIngest, service.RoleRelay} {
		t.Run("Role_"+string(role), func(t *testing.T) {
			k := service.APIKey{ID: "k-" + string(role), Tenant: "acme", Role: role, Hash: []byte{1, 2, 3},
				Description: "for " + string(role), CreatedAt: t0}
			mustErr(t, "create", s.CreateAPIKey(ctx, k), nil)
			got, err := s.APIKey(ctx, k.ID)
			mustErr(t, "api key", err, nil)
			if diff := cmp.Diff(k, got); diff != "" {
				t.Errorf("api key (-want +got):\n%s", diff)
			}
		})
	}

	errCases := []struct {
		name     string
		key      service.APIKey
		want     error
		wantCode string
	}{
		{"Duplicate", service.APIKey{ID: "k-admin", Tenant: "acme", Role: service.RoleAuditor, Hash: []byte{9}}, domain.ErrConflict, domain.CodeConflict},
		{"UnknownTenant", service.APIKey{ID: "k-x", Tenant: "initech", Role: service.RoleAdmin, Hash: []byte{9}}, domain.ErrNotFound, domain.CodeNotFound},
		{"TechnicianRole", service.APIKey{ID: "k-t", Tenant: "acme", Role: service.RoleTechnician, Hash: []byte{9}}, nil, domain.CodeInvalid},
		{"UnknownRole", service.APIKey{ID: "k-r", Tenant: "acme", Role: "root", Hash: []byte{9}}, nil, domain.CodeInvalid},
	}
	for _, c := range errCases {
		t.Run(c.name, func(t *testing.T) {
			err := s.CreateAPIKey(ctx, c.key)
			if err == nil {
				t.Fatal("create succeeded")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("err = %v, want %v", err, c.want)
			}
			if got := domain.ErrorCode(err); got != c.wantCode {
				t.Errorf("code %q (%v), want %q", got, err, c.wantCode)
			}
		})
	}
	if got, _ := s.APIKey(ctx, "k-admin"); got.Role != service.RoleAdmin {
		t.Errorf("duplicate create changed the key to %+v", got)
	}

	t.Run("RoleCheckInSchema", func(t *testing.T) {
		_, err := s.Pool().Exec(ctx, `INSERT INTO api_keys (id, tenant, role, hash) VALUES ('raw', 'acme', 'technician', '\x00')`)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
			t.Fatalf("insert with role technician: %v, want a check violation", err)
		}
	})

	t.Run("Missing", func(t *testing.T) {
		_, err := s.APIKey(ctx, "k-none")
		mustErr(t, "api key k-none", err, domain.ErrNotFound)
	})

	t.Run("Revoke", func(t *testing.T) {
		at := t0.Add(time.Hour)
		mustErr(t, "revoke", s.RevokeAPIKey(ctx, "k-relay", at), nil)
		mustErr(t, "revoke again", s.RevokeAPIKey(ctx, "k-relay", at.Add(time.Hour)), nil)
		got, err := s.APIKey(ctx, "k-relay")
		mustErr(t, "api key", err, nil)
		if !got.RevokedAt.Equal(at) {
			t.Errorf("RevokedAt = %v, want the first revocation %v", got.RevokedAt, at)
		}
		if got.RevokedAt.Location() != time.UTC {
			t.Errorf("RevokedAt in %v, want UTC", got.RevokedAt.Location())
		}
		other, _ := s.APIKey(ctx, "k-ingest")
		if !other.RevokedAt.IsZero() {
			t.Errorf("revoking k-relay revoked k-ingest at %v", other.RevokedAt)
		}
		mustErr(t, "revoke unknown", s.RevokeAPIKey(ctx, "k-none", at), domain.ErrNotFound)
	})
}

func TestCredentials(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	alice := service.Credential{Tenant: "acme", TechnicianID: "alice", EmailIndex: []byte("idx-alice"),
		PasswordHash: "scrypt$1", UpdatedAt: t0}
	aliceGlobex := service.Credential{Tenant: "globex", TechnicianID: "t-77", EmailIndex: []byte("idx-alice"),
		PasswordHash: "scrypt$2", TOTPSecret: []byte("sealed"), UpdatedAt: t0.Add(time.Second)}
	bob := service.Credential{Tenant: "acme", TechnicianID: "bob", EmailIndex: []byte("idx-bob"),
		PasswordHash: "scrypt$3", TOTPPending: []byte("pending"), UpdatedAt: t0}
	for _, c := range []service.Credential{alice, aliceGlobex, bob} {
		mustErr(t, "create "+c.TechnicianID, s.CreateCredential(ctx, c), nil)
	}

	t.Run("Conflicts", func(t *testing.T) {
		for _, c := range []struct {
			name string
			cred service.Credential
		}{
			{"SameTechnician", service.Credential{Tenant: "acme", TechnicianID: "alice", EmailIndex: []byte("idx-new"), PasswordHash: "x"}},
			{"SameEmailInTenant", service.Credential{Tenant: "acme", TechnicianID: "carol", EmailIndex: []byte("idx-bob"), PasswordHash: "x"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				mustErr(t, "create", s.CreateCredential(ctx, c.cred), domain.ErrConflict)
			})
		}
	})

	t.Run("Lookup", func(t *testing.T) {
		for _, want := range []service.Credential{alice, aliceGlobex, bob} {
			got, err := s.Credential(ctx, want.Tenant, want.TechnicianID)
			mustErr(t, "credential", err, nil)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("credential %s (-want +got):\n%s", want.TechnicianID, diff)
			}
		}
		for _, c := range [][2]string{{"acme", "carol"}, {"globex", "alice"}} {
			_, err := s.Credential(ctx, c[0], c[1])
			mustErr(t, "credential "+c[0]+"/"+c[1], err, domain.ErrNotFound)
		}
	})

	t.Run("ByEmail", func(t *testing.T) {
		cases := []struct {
			name  string
			index []byte
			want  []service.Credential
		}{
			{"TwoTenants", []byte("idx-alice"), []service.Credential{alice, aliceGlobex}},
			{"One", []byte("idx-bob"), []service.Credential{bob}},
			{"None", []byte("idx-nobody"), nil},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				got, err := s.CredentialsByEmail(ctx, c.index)
				mustErr(t, "credentials by e-mail", err, nil)
				if len(c.want) == 0 && len(got) == 0 {
					return
				}
				if diff := cmp.Diff(c.want, got); diff != "" {
					t.Errorf("credentials (-want +got):\n%s", diff)
				}
			})
		}
	})

	t.Run("UpdatePassword", func(t *testing.T) {
		at := t0.Add(24 * time.Hour)
		mustErr(t, "update", s.UpdatePassword(ctx, "acme", "alice", "scrypt$new", at), nil)
		got, _ := s.Credential(ctx, "acme", "alice")
		want := alice
		want.PasswordHash, want.UpdatedAt = "scrypt$new", at
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("after update (-want +got):\n%s", diff)
		}
		if other, _ := s.Credential(ctx, "globex", "t-77"); other.PasswordHash != aliceGlobex.PasswordHash {
			t.Errorf("update changed another tenant's credential: %+v", other)
		}
		mustErr(t, "update unknown", s.UpdatePassword(ctx, "acme", "carol", "x", at), domain.ErrNotFound)
	})

	t.Run("SetTOTP", func(t *testing.T) {
		cases := []struct {
			name            string
			secret, pending []byte
		}{
			{"Pending", nil, []byte("p1")},
			{"Confirmed", []byte("s1"), nil},
			{"Both", []byte("s1"), []byte("p2")},
			{"Cleared", nil, nil},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				before, _ := s.Credential(ctx, "acme", "bob")
				mustErr(t, "set totp", s.SetTOTP(ctx, "acme", "bob", c.secret, c.pending), nil)
				got, _ := s.Credential(ctx, "acme", "bob")
				want := before
				want.TOTPSecret, want.TOTPPending = c.secret, c.pending
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("after set totp (-want +got):\n%s", diff)
				}
			})
		}
		mustErr(t, "set totp unknown", s.SetTOTP(ctx, "globex", "bob", nil, nil), domain.ErrNotFound)
	})

	t.Run("Delete", func(t *testing.T) {
		mustErr(t, "delete", s.DeleteCredential(ctx, "acme", "bob"), nil)
		_, err := s.Credential(ctx, "acme", "bob")
		mustErr(t, "credential after delete", err, domain.ErrNotFound)
		mustErr(t, "delete again", s.DeleteCredential(ctx, "acme", "bob"), domain.ErrNotFound)
		// The address is free again in the tenant.
		mustErr(t, "reuse e-mail", s.CreateCredential(ctx, service.Credential{Tenant: "acme", TechnicianID: "carol",
			EmailIndex: []byte("idx-bob"), PasswordHash: "x", UpdatedAt: t0}), nil)
	})
}

func token(id, tenant, tech string, expires time.Time) service.Token {
	return service.Token{ID: id, Tenant: tenant, TechnicianID: tech, Hash: []byte("h-" + id), Scope: service.ScopeFull,
		CreatedAt: t0, LastSeenAt: expires.Add(-time.Hour), ExpiresAt: expires}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	tok := token("tk1", "acme", "alice", t0.Add(time.Hour))
	tok.Scope = service.ScopeTOTPEnroll
	mustErr(t, "create", s.CreateToken(ctx, tok), nil)
	got, err := s.Token(ctx, "tk1")
	mustErr(t, "token", err, nil)
	if diff := cmp.Diff(tok, got); diff != "" {
		t.Errorf("token (-want +got):\n%s", diff)
	}

	t.Run("Duplicate", func(t *testing.T) {
		mustErr(t, "create again", s.CreateToken(ctx, token("tk1", "acme", "bob", t0)), domain.ErrConflict)
	})

	t.Run("Touch", func(t *testing.T) {
		seen, exp := t0.Add(30*time.Minute), t0.Add(90*time.Minute)
		mustErr(t, "touch", s.TouchToken(ctx, "tk1", seen, exp), nil)
		got, _ := s.Token(ctx, "tk1")
		want := tok
		want.LastSeenAt, want.ExpiresAt = seen, exp
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("after touch (-want +got):\n%s", diff)
		}
		tok = got
	})

	t.Run("Scope", func(t *testing.T) {
		mustErr(t, "set scope", s.SetTokenScope(ctx, "tk1", service.ScopeFull), nil)
		got, _ := s.Token(ctx, "tk1")
		want := tok
		want.Scope = service.ScopeFull
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("after set scope (-want +got):\n%s", diff)
		}
		tok = got
	})

	t.Run("End", func(t *testing.T) {
		at := t0.Add(2 * time.Hour)
		ended, err := s.EndToken(ctx, "tk1", at)
		mustErr(t, "end", err, nil)
		if !ended {
			t.Error("first EndToken reported false, want true (it ended a live token)")
		}
		ended, err = s.EndToken(ctx, "tk1", at.Add(time.Hour))
		mustErr(t, "end again", err, nil)
		if ended {
			t.Error("second EndToken reported true, want false (already ended)")
		}
		got, _ := s.Token(ctx, "tk1")
		want := tok
		want.EndedAt = at
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("after end (-want +got):\n%s", diff)
		}

		// A use racing the logout neither fails nor extends the ended token.
		err = s.TouchToken(ctx, "tk1", at.Add(time.Minute), at.Add(time.Hour))
		mustErr(t, "touch ended", err, nil)
		if got2, _ := s.Token(ctx, "tk1"); !cmp.Equal(got, got2) {
			t.Errorf("touching an ended token changed it: %s", cmp.Diff(got, got2))
		}
	})

	t.Run("Missing", func(t *testing.T) {
		_, err := s.Token(ctx, "none")
		mustErr(t, "token", err, domain.ErrNotFound)
		mustErr(t, "touch", s.TouchToken(ctx, "none", t0, t0), domain.ErrNotFound)
		mustErr(t, "set scope", s.SetTokenScope(ctx, "none", service.ScopeFull), domain.ErrNotFound)
		ended, err := s.EndToken(ctx, "none", t0)
		mustErr(t, "end", err, domain.ErrNotFound)
		if ended {
			t.Error("EndToken of an unknown token reported true")
		}
	})
}

func TestEndTokenConcurrent(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	mustErr(t, "create", s.CreateToken(ctx, token("tk", "acme", "alice", t0)), nil)
	const n = 10
	var (
		wg      sync.WaitGroup
		results = make([]bool, n)
		errs    = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = s.EndToken(ctx, "tk", t0.Add(time.Duration(i)*time.Second))
		}()
	}
	wg.Wait()
	winner := -1
	for i := range n {
		mustErr(t, fmt.Sprintf("end %d", i), errs[i], nil)
		if results[i] {
			if winner >= 0 {
				t.Fatalf("EndToken calls %d and %d both reported ending the token", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no EndToken call reported ending the token")
	}
	got, _ := s.Token(ctx, "tk")
	if want := t0.Add(time.Duration(winner) * time.Second); !got.EndedAt.Equal(want) {
		t.Errorf("EndedAt = %v, want the winner's %v", got.EndedAt, want)
	}
}

func TestExpiredTokens(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	now := t0.Add(10 * time.Hour)
	toks := []service.Token{
		token("c-late", "acme", "alice", now.Add(-time.Minute)),
		token("a-oldest", "globex", "bob", now.Add(-3*time.Hour)),
		token("live", "acme", "alice", now.Add(time.Minute)),
		token("at-now", "acme", "carol", now), // not before now
		token("b-middle", "acme", "dave", now.Add(-time.Hour)),
		token("b-tie", "acme", "erin", now.Add(-time.Hour)),
		token("ended", "acme", "alice", now.Add(-5*time.Hour)),
	}
	for _, tk := range toks {
		mustErr(t, "create "+tk.ID, s.CreateToken(ctx, tk), nil)
	}
	if _, err := s.EndToken(ctx, "ended", now.Add(-4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	byID := map[string]service.Token{}
	for _, tk := range toks {
		byID[tk.ID] = tk
	}

	cases := []struct {
		name  string
		now   time.Time
		limit int
		want  []string
	}{
		{"All", now, 100, []string{"a-oldest", "b-middle", "b-tie", "c-late"}},
		{"Limit", now, 2, []string{"a-oldest", "b-middle"}},
		{"One", now, 1, []string{"a-oldest"}},
		{"ZeroLimit", now, 0, nil},
		{"NegativeLimit", now, -1, nil},
		{"Earlier", now.Add(-2 * time.Hour), 100, []string{"a-oldest"}},
		{"None", now.Add(-6 * time.Hour), 100, nil},
		{"Later", now.Add(time.Hour), 100, []string{"a-oldest", "b-middle", "b-tie", "c-late", "at-now", "live"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.ExpiredTokens(ctx, c.now, c.limit)
			mustErr(t, "expired tokens", err, nil)
			var want []service.Token
			for _, id := range c.want {
				want = append(want, byID[id])
			}
			if len(want) == 0 && len(got) == 0 {
				return
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("expired tokens (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEndTechnicianTokens(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	for _, tk := range []service.Token{
		token("a1", "acme", "alice", t0.Add(time.Hour)),
		token("a2", "acme", "alice", t0.Add(-time.Hour)), // expired, not ended
		token("a3", "acme", "alice", t0.Add(time.Hour)),  // ended below
		token("b1", "acme", "bob", t0.Add(time.Hour)),
		token("g1", "globex", "alice", t0.Add(time.Hour)), // same id, other tenant
	} {
		mustErr(t, "create "+tk.ID, s.CreateToken(ctx, tk), nil)
	}
	earlier := t0.Add(-time.Minute)
	if _, err := s.EndToken(ctx, "a3", earlier); err != nil {
		t.Fatal(err)
	}

	at := t0.Add(time.Minute)
	n, err := s.EndTechnicianTokens(ctx, "acme", "alice", at)
	mustErr(t, "end alice's tokens", err, nil)
	if n != 2 {
		t.Errorf("ended %d tokens, want 2", n)
	}
	for _, c := range []struct {
		id    string
		ended time.Time
	}{
		{"a1", at}, {"a2", at}, {"a3", earlier}, {"b1", time.Time{}}, {"g1", time.Time{}},
	} {
		got, err := s.Token(ctx, c.id)
		mustErr(t, "token "+c.id, err, nil)
		if !got.EndedAt.Equal(c.ended) {
			t.Errorf("token %s EndedAt = %v, want %v", c.id, got.EndedAt, c.ended)
		}
	}

	for _, c := range []struct {
		name, tenant, tech string
	}{
		{"Again", "acme", "alice"},
		{"Unknown", "acme", "zed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n, err := s.EndTechnicianTokens(ctx, c.tenant, c.tech, at.Add(time.Hour))
			mustErr(t, "end tokens", err, nil)
			if n != 0 {
				t.Errorf("ended %d tokens, want 0", n)
			}
		})
	}
}

func TestIdempotency(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	k := service.IdempotencyKey{Tenant: "acme", Principal: "key-1", Key: "req-1"}
	hash := []byte("hash-1")

	claim := func(t *testing.T, k service.IdempotencyKey, h []byte, now time.Time) (service.StoredResponse, bool) {
		t.Helper()
		r, won, err := s.Claim(ctx, k, h, now)
		mustErr(t, "claim", err, nil)
		return r, won
	}

	if r, won := claim(t, k, hash, t0); !won || !cmp.Equal(r, service.StoredResponse{}) {
		t.Fatalf("first claim = %+v, %v; want zero, true", r, won)
	}

	t.Run("Running", func(t *testing.T) {
		for _, c := range []struct {
			name string
			hash []byte
		}{
			{"SameBody", hash},
			{"OtherBody", []byte("hash-2")},
		} {
			t.Run(c.name, func(t *testing.T) {
				r, won := claim(t, k, c.hash, t0.Add(time.Second))
				if won {
					t.Fatal("second claim won")
				}
				if diff := cmp.Diff(service.StoredResponse{RequestHash: hash}, r); diff != "" {
					t.Errorf("stored entry (-want +got):\n%s", diff)
				}
			})
		}
	})

	t.Run("OtherPrincipalOrTenant", func(t *testing.T) {
		for _, other := range []service.IdempotencyKey{
			{Tenant: "acme", Principal: "key-2", Key: "req-1"},
			{Tenant: "globex", Principal: "key-1", Key: "req-1"},
		} {
			if _, won := claim(t, other, hash, t0); !won {
				t.Errorf("claim of %+v lost to another credential's entry", other)
			}
		}
	})

	t.Run("Complete", func(t *testing.T) {
		body := []byte(`{"id":"x"}`)
		mustErr(t, "complete", s.Complete(ctx, k, 201, body), nil)
		r, won := claim(t, k, hash, t0.Add(time.Minute))
		if won {
			t.Fatal("claim after complete won")
		}
		if diff := cmp.Diff(service.StoredResponse{RequestHash: hash, Status: 201, Body: body}, r); diff != "" {
			t.Errorf("stored response (-want +got):\n%s", diff)
		}
		// A completed answer survives a stray release.
		mustErr(t, "release completed", s.Release(ctx, k), nil)
		if r, won := claim(t, k, hash, t0); won || r.Status != 201 {
			t.Errorf("release forgot a completed answer: %+v, %v", r, won)
		}
	})

	t.Run("CompleteEmptyBody", func(t *testing.T) {
		k := service.IdempotencyKey{Tenant: "acme", Principal: "key-1", Key: "req-empty"}
		claim(t, k, hash, t0)
		mustErr(t, "complete", s.Complete(ctx, k, 204, nil), nil)
		r, _ := claim(t, k, hash, t0)
		if diff := cmp.Diff(service.StoredResponse{RequestHash: hash, Status: 204}, r); diff != "" {
			t.Errorf("stored response (-want +got):\n%s", diff)
		}
	})

	t.Run("CompleteErrors", func(t *testing.T) {
		err := s.Complete(ctx, service.IdempotencyKey{Tenant: "acme", Principal: "key-1", Key: "never"}, 200, nil)
		mustErr(t, "complete unclaimed", err, domain.ErrNotFound)
		err = s.Complete(ctx, k, 0, nil)
		if domain.ErrorCode(err) != domain.CodeInvalid {
			t.Errorf("complete with status 0: %v, want code invalid", err)
		}
	})

	t.Run("Release", func(t *testing.T) {
		k := service.IdempotencyKey{Tenant: "acme", Principal: "key-1", Key: "req-fails"}
		claim(t, k, hash, t0)
		mustErr(t, "release", s.Release(ctx, k), nil)
		if _, won := claim(t, k, []byte("retry"), t0); !won {
			t.Error("claim after release lost")
		}
		mustErr(t, "release unknown", s.Release(ctx, service.IdempotencyKey{Tenant: "x", Principal: "y", Key: "z"}), nil)
	})

	t.Run("Purge", func(t *testing.T) {
		// Every entry above was created at t0 or later.
		for i, age := range []time.Duration{48 * time.Hour, 25 * time.Hour, 24 * time.Hour, time.Hour} {
			k := service.IdempotencyKey{Tenant: "acme", Principal: "p", Key: fmt.Sprint(i)}
			claim(t, k, hash, t0.Add(-age))
			if i == 0 {
				mustErr(t, "complete", s.Complete(ctx, k, 200, []byte("ok")), nil)
			}
		}
		cutoff := t0.Add(-24 * time.Hour)
		n, err := s.Purge(ctx, cutoff)
		mustErr(t, "purge", err, nil)
		if n != 2 {
			t.Errorf("purged %d, want 2 (created before the cutoff)", n)
		}
		// Another request's hash: a stale running claim is taken over
		// only by a repeat of its own request (TestIdempotencyStaleClaim).
		for i, wantWon := range []bool{true, true, false, false} {
			if _, won := claim(t, service.IdempotencyKey{Tenant: "acme", Principal: "p", Key: fmt.Sprint(i)}, []byte("another request"), t0); won != wantWon {
				t.Errorf("claim %d after purge won = %v, want %v", i, won, wantWon)
			}
		}
		if n, err := s.Purge(ctx, cutoff); err != nil || n != 0 {
			t.Errorf("second purge = %d, %v; want 0", n, err)
		}
	})
}

func TestClaimConcurrent(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	const n = 10
	for round := range 5 {
		k := service.IdempotencyKey{Tenant: "acme", Principal: "key-1", Key: fmt.Sprint("race-", round)}
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			won   = make([]bool, n)
			resp  = make([]service.StoredResponse, n)
			errs  = make([]error, n)
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resp[i], won[i], errs[i] = s.Claim(ctx, k, []byte(fmt.Sprint("hash-", i)), t0)
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i := range n {
			mustErr(t, fmt.Sprintf("claim %d", i), errs[i], nil)
			if won[i] {
				if winner >= 0 {
					t.Fatalf("round %d: claims %d and %d both won", round, winner, i)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no claim won", round)
		}
		wantHash := []byte(fmt.Sprint("hash-", winner))
		for i := range n {
			if i != winner && (!bytes.Equal(resp[i].RequestHash, wantHash) || resp[i].Status != 0 || resp[i].Body != nil) {
				t.Errorf("round %d: loser %d got %+v, want the winner's running entry", round, i, resp[i])
			}
		}
	}
}

func TestIdleSessions(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	now := t0.Add(24 * time.Hour)
	sessions := []service.OpenSession{
		// idle since now-50m
		{Tenant: "acme", GUID: "g-a", LastActivity: now.Add(-2 * time.Hour), IdleAfter: 70 * time.Minute},
		// idle since now-1h, though its activity is older than g-a's
		{Tenant: "acme", GUID: "g-b", LastActivity: now.Add(-3 * time.Hour), IdleAfter: 2 * time.Hour},
		// idle since now-10m
		{Tenant: "globex", GUID: "g-c", LastActivity: now.Add(-40 * time.Minute), IdleAfter: 30 * time.Minute},
		// never idle
		{Tenant: "acme", GUID: "g-never", LastActivity: now.Add(-100 * time.Hour), IdleAfter: 0},
		// idle exactly at now: not before now
		{Tenant: "acme", GUID: "g-edge", LastActivity: now.Add(-time.Hour), IdleAfter: time.Hour},
		// active
		{Tenant: "acme", GUID: "g-live", LastActivity: now.Add(-time.Minute), IdleAfter: time.Hour},
		// same deadline as g-c, other tenant: ordered by tenant
		{Tenant: "acme", GUID: "g-c", LastActivity: now.Add(-70 * time.Minute), IdleAfter: time.Hour},
	}
	for _, o := range sessions {
		mustErr(t, "touch "+o.GUID, s.TouchSession(ctx, o), nil)
	}
	by := func(tenant, guid string) service.OpenSession {
		for _, o := range sessions {
			if o.Tenant == tenant && o.GUID == guid {
				return o
			}
		}
		t.Fatalf("no session %s/%s", tenant, guid)
		return service.OpenSession{}
	}
	idle := func(t *testing.T, now time.Time, limit int) []service.OpenSession {
		t.Helper()
		got, err := s.IdleSessions(ctx, now, limit)
		mustErr(t, "idle sessions", err, nil)
		return got
	}

	cases := []struct {
		name  string
		now   time.Time
		limit int
		want  []service.OpenSession
	}{
		{"All", now, 100, []service.OpenSession{by("acme", "g-b"), by("acme", "g-a"), by("acme", "g-c"), by("globex", "g-c")}},
		{"Limit", now, 2, []service.OpenSession{by("acme", "g-b"), by("acme", "g-a")}},
		{"ZeroLimit", now, 0, nil},
		{"Earlier", now.Add(-55 * time.Minute), 100, []service.OpenSession{by("acme", "g-b")}},
		{"Later", now.Add(time.Second), 100, []service.OpenSession{by("acme", "g-b"), by("acme", "g-a"), by("acme", "g-c"), by("globex", "g-c"), by("acme", "g-edge")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := idle(t, c.now, c.limit)
			if len(c.want) == 0 && len(got) == 0 {
				return
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("idle sessions (-want +got):\n%s", diff)
			}
		})
	}
	if got := idle(t, now.Add(1000*time.Hour), 100); len(got) != len(sessions)-1 {
		t.Errorf("far in the future %d sessions are idle, want all but g-never (%d)", len(got), len(sessions)-1)
	}

	var liveNow service.OpenSession
	t.Run("TouchUpserts", func(t *testing.T) {
		// New activity on g-b: no longer idle.
		mustErr(t, "touch", s.TouchSession(ctx, service.OpenSession{Tenant: "acme", GUID: "g-b", LastActivity: now.Add(-time.Minute), IdleAfter: 2 * time.Hour}), nil)
		// g-a's timeout disabled at its last activity.
		mustErr(t, "touch", s.TouchSession(ctx, service.OpenSession{Tenant: "acme", GUID: "g-a", LastActivity: now.Add(-2 * time.Hour), IdleAfter: 0}), nil)
		// g-live's timeout shortened at a new activity: idle now.
		liveNow = service.OpenSession{Tenant: "acme", GUID: "g-live", LastActivity: now.Add(-time.Minute + time.Microsecond), IdleAfter: 30 * time.Second}
		mustErr(t, "touch", s.TouchSession(ctx, liveNow), nil)
		want := []service.OpenSession{by("acme", "g-c"), by("globex", "g-c"), liveNow}
		if diff := cmp.Diff(want, idle(t, now, 100)); diff != "" {
			t.Errorf("idle sessions after touches (-want +got):\n%s", diff)
		}
	})

	t.Run("OlderTouchReplaces", func(t *testing.T) {
		// The scheduler corrects the tracker from the log, which may hold an
		// older activity than a touch recorded.
		mustErr(t, "touch", s.TouchSession(ctx, service.OpenSession{Tenant: "globex", GUID: "g-c", LastActivity: now.Add(-10 * time.Hour), IdleAfter: 0}), nil)
		for _, o := range idle(t, now.Add(1000*time.Hour), 100) {
			if o.Tenant == "globex" && o.GUID == "g-c" {
				t.Errorf("an older touch disabling the timeout was ignored: %+v", o)
			}
		}
		older := service.OpenSession{Tenant: "globex", GUID: "g-c", LastActivity: now.Add(-20 * time.Minute), IdleAfter: 15 * time.Minute}
		mustErr(t, "touch", s.TouchSession(ctx, older), nil)
		want := []service.OpenSession{by("acme", "g-c"), older, liveNow}
		if diff := cmp.Diff(want, idle(t, now, 100)); diff != "" {
			t.Errorf("idle sessions after an older touch (-want +got):\n%s", diff)
		}
	})

	t.Run("SubSecondTimeout", func(t *testing.T) {
		o := service.OpenSession{Tenant: "initech", GUID: "g-short", LastActivity: now.Add(-time.Hour), IdleAfter: 1500 * time.Millisecond}
		mustErr(t, "touch", s.TouchSession(ctx, o), nil)
		got := idle(t, now.Add(-time.Hour+2*time.Second+time.Microsecond), 1)
		want := []service.OpenSession{{Tenant: "initech", GUID: "g-short", LastActivity: o.LastActivity, IdleAfter: 2 * time.Second}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("idle sessions (-want +got):\n%s", diff)
		}
		if got := idle(t, now.Add(-time.Hour+2*time.Second), 100); len(got) != 0 {
			t.Errorf("the rounded-up timeout is idle too early: %+v", got)
		}
	})

	t.Run("End", func(t *testing.T) {
		mustErr(t, "end", s.EndSession(ctx, "acme", "g-c"), nil)
		mustErr(t, "end again", s.EndSession(ctx, "acme", "g-c"), nil)
		for _, o := range idle(t, now, 100) {
			if o.Tenant == "acme" && o.GUID == "g-c" {
				t.Error("an ended session is still reported idle")
			}
		}
		if got := idle(t, now, 100); len(got) != 3 {
			t.Errorf("%d idle sessions after ending one, want 3: %+v", len(got), got)
		}
	})
}

func TestIdentityTablesAppRole(t *testing.T) {
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
		`INSERT INTO tenants (id, name, region) VALUES ('t', 'T', 'eu')`,
		`UPDATE tenants SET name = 'U'`,
		`SELECT * FROM tenants`,
		`INSERT INTO api_keys (id, tenant, role, hash) VALUES ('k', 't', 'admin', '\x00')`,
		`UPDATE api_keys SET revoked_at = now()`,
		`DELETE FROM api_keys`,
		`DELETE FROM tenants`,
		`INSERT INTO technician_credentials (tenant, technician_id, email_index, password_hash) VALUES ('t', 'x', '\x01', 'h')`,
		`UPDATE technician_credentials SET password_hash = 'g'`,
		`DELETE FROM technician_credentials`,
		`INSERT INTO auth_tokens (id, tenant, technician_id, hash, scope, last_seen_at, expires_at) VALUES ('a', 't', 'x', '\x00', 'full', now(), now())`,
		`UPDATE auth_tokens SET ended_at = now()`,
		`DELETE FROM auth_tokens`,
		`INSERT INTO idempotency_keys (tenant, principal, key, request_hash) VALUES ('t', 'p', 'k', '\x00')`,
		`UPDATE idempotency_keys SET status = 200`,
		`DELETE FROM idempotency_keys`,
		`INSERT INTO open_sessions (tenant, guid, last_activity, idle_after_s) VALUES ('t', 'g', now(), 0)`,
		`UPDATE open_sessions SET last_activity = now()`,
		`DELETE FROM open_sessions`,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			t.Fatalf("vigil_app: %s: %v", stmt, err)
		}
	}
}

func TestIdentityMigrationDown(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	sqlDB := stdlib.OpenDBFromPool(db.Pool)
	defer sqlDB.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 1); err != nil {
		t.Fatalf("down to 1: %v", err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN
		('tenants', 'api_keys', 'technician_credentials', 'auth_tokens', 'idempotency_keys', 'open_sessions')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d identity tables left after down", n)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("up again: %v", err)
	}
	s := postgres.NewStore(db.Pool, postgres.Options{})
	defer s.Close()
	createTenant(t, s, "acme")
}

// TestIdempotencyRelaxedCommit: the idempotency rows are committed with
// synchronous_commit off, in their own transaction only.
func TestIdempotencyRelaxedCommit(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	s := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(s.Close)
	err := s.RelaxedExecForTest(ctx, `INSERT INTO idempotency_keys (tenant, principal, key, request_hash)
		VALUES ('acme', 'key-1', current_setting('synchronous_commit'), '\x00')`)
	mustErr(t, "relaxed insert", err, nil)
	var setting string
	if err := db.Pool.QueryRow(ctx, `SELECT key FROM idempotency_keys WHERE tenant = 'acme'`).Scan(&setting); err != nil {
		t.Fatal(err)
	}
	if setting != "off" {
		t.Fatalf("synchronous_commit in the relaxed statement = %q, want off", setting)
	}
	// Every connection of the pool keeps the server's setting afterwards.
	for range 4 {
		if err := db.Pool.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&setting); err != nil {
			t.Fatal(err)
		}
		if setting != "on" {
			t.Fatalf("synchronous_commit after a relaxed statement = %q, want on", setting)
		}
	}
}

// TestIdempotencyStaleClaim: a running claim whose answer was lost is
// taken over by a repeat of the same request once it is older than
// StaleClaimAfter, never before, never by another request, and never when
// it has an answer.
func TestIdempotencyStaleClaim(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	k := service.IdempotencyKey{Tenant: "acme", Principal: "key-1", Key: "lost-answer"}
	hash := []byte("hash-1")
	claim := func(k service.IdempotencyKey, h []byte, at time.Time) (service.StoredResponse, bool) {
		t.Helper()
		r, won, err := s.Claim(ctx, k, h, at)
		mustErr(t, "claim", err, nil)
		return r, won
	}
	if _, won := claim(k, hash, t0); !won {
		t.Fatal("first claim lost")
	}
	if _, won := claim(k, hash, t0.Add(postgres.StaleClaimAfter-time.Second)); won {
		t.Fatal("a running claim younger than StaleClaimAfter was taken over")
	}
	if _, won := claim(k, []byte("hash-2"), t0.Add(2*postgres.StaleClaimAfter)); won {
		t.Fatal("another request took over a stale claim")
	}
	late := t0.Add(postgres.StaleClaimAfter + time.Second)
	if _, won := claim(k, hash, late); !won {
		t.Fatal("a repeat did not take over the stale claim")
	}
	// Taken over: it runs again from late, so a repeat right after waits.
	if _, won := claim(k, hash, late.Add(time.Second)); won {
		t.Fatal("the claim taken over was taken over again at once")
	}
	mustErr(t, "complete", s.Complete(ctx, k, 201, []byte(`{"ok":true}`)), nil)
	r, won := claim(k, hash, late.Add(3*postgres.StaleClaimAfter))
	if won || r.Status != 201 || string(r.Body) != `{"ok":true}` {
		t.Fatalf("claim of an answered key long after = %+v, %v; want the answer, false", r, won)
	}
}

// TestIdempotencyCoalesced: many concurrent claims and answers, of
// distinct keys and of repeated ones, go in shared statements and each
// caller still gets its own outcome.
func TestIdempotencyCoalesced(t *testing.T) {
	ctx := context.Background()
	s := newIdentityStore(t)
	const n = 96 // keys 0, 3, 6 … 93 are claimed by three callers each
	keyOf := func(i int) service.IdempotencyKey {
		if i < 3*32 && i%3 != 0 {
			i -= i % 3
		}
		return service.IdempotencyKey{Tenant: "acme", Principal: "key-1", Key: fmt.Sprint("k", i)}
	}
	var wg sync.WaitGroup
	won := make([]bool, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, won[i], errs[i] = s.Claim(ctx, keyOf(i), []byte("same request"), t0)
		}()
	}
	close(start)
	wg.Wait()
	winners := map[service.IdempotencyKey]int{}
	for i := range n {
		mustErr(t, fmt.Sprintf("claim %d", i), errs[i], nil)
		if won[i] {
			winners[keyOf(i)]++
		}
	}
	distinct := map[service.IdempotencyKey]bool{}
	for i := range n {
		distinct[keyOf(i)] = true
	}
	for k := range distinct {
		if winners[k] != 1 {
			t.Errorf("key %s won by %d callers, want 1", k.Key, winners[k])
		}
	}
	// Every winner answers at once; unknown keys are not found.
	start = make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			switch {
			case won[i]:
				errs[i] = s.Complete(ctx, keyOf(i), 200+i, []byte(fmt.Sprint("answer ", i)))
			case i%5 == 0:
				errs[i] = s.Complete(ctx, service.IdempotencyKey{Tenant: "acme", Principal: "key-1", Key: fmt.Sprint("never-", i)}, 200, nil)
				if errors.Is(errs[i], domain.ErrNotFound) {
					errs[i] = nil
				} else {
					errs[i] = fmt.Errorf("complete of an unclaimed key: %v, want not found", errs[i])
				}
			default:
				errs[i] = nil
			}
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		mustErr(t, fmt.Sprintf("complete %d", i), errs[i], nil)
	}
	for i := range n {
		if !won[i] {
			continue
		}
		r, again, err := s.Claim(ctx, keyOf(i), []byte("same request"), t0)
		mustErr(t, "claim again", err, nil)
		if again || r.Status != 200+i || string(r.Body) != fmt.Sprint("answer ", i) {
			t.Errorf("key %s after its answer: %+v, %v; want status %d and its body", keyOf(i).Key, r, again, 200+i)
		}
	}
}
