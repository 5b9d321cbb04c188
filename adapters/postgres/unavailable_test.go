package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
)

// A database outage reaches callers as domain.ErrUnavailable (code
// unavailable), never as an anonymous driver error, so that the API
// answers 503 with Retry-After rather than 500 (issue 13, item 8). The
// driver's error stays reachable with errors.As.
func TestOutageIsUnavailable(t *testing.T) {
	db := pgtest.New(t)
	proxy := pgtest.NewProxy(t, db)
	ctx := context.Background()
	pool, err := postgres.OpenExisting(ctx, proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	st := postgres.NewStore(pool, postgres.Options{})
	t.Cleanup(st.Close)
	guid := fmt.Sprintf("%032x", 1)
	commit := func() error {
		e := ledgertest.Chat(t, "acme", guid, "hello")
		e.Stream, e.Position, e.Version = domain.SessionStream(guid), 0, 1
		e.RecordedAt = time.Now()
		return st.Commit(ctx, []*ledger.AppendRequest{{Tenant: "acme", Stream: e.Stream, ExpectedVersion: ledger.AnyVersion, Events: []domain.Event{e}}})
	}
	if _, err := st.ReadAll(ctx, 0, 10); err != nil {
		t.Fatalf("before the outage: %v", err)
	}
	proxy.Cut()
	for name, call := range map[string]func() error{
		"read all":    func() error { _, err := st.ReadAll(ctx, 0, 10); return err },
		"head":        func() error { _, err := st.Head(ctx); return err },
		"api key":     func() error { _, err := st.APIKey(ctx, "k1"); return err },
		"commit":      commit,
		"reports":     func() error { _, err := st.ProjectionStatus(ctx); return err },
		"credential":  func() error { _, err := st.Credential(ctx, "acme", "t1"); return err },
		"subject key": func() error { _, err := st.SubjectKey(ctx, "acme", "session:1"); return err },
		"tenants":     func() error { _, err := st.Tenants(ctx); return err },
		"tree size":   func() error { _, err := st.TreeSize(ctx, "acme"); return err },
	} {
		err := call()
		if !errors.Is(err, domain.ErrUnavailable) || domain.ErrorCode(err) != domain.CodeUnavailable {
			t.Errorf("%s during the outage: %v (code %q), want domain.ErrUnavailable", name, err, domain.ErrorCode(err))
		}
	}
	// What the server says, not the network, also counts: shutting down,
	// starting up; other server errors do not.
	for code, want := range map[string]bool{"57P01": true, "57P03": true, "08006": true, "53300": true, "25006": true, "23505": false, "22021": false} {
		err := &pgconn.PgError{Code: code}
		if got := errors.Is(postgres.TranslateForTest(err), domain.ErrUnavailable); got != want {
			t.Errorf("SQLSTATE %s unavailable = %v, want %v", code, got, want)
		}
	}
}
