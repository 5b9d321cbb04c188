package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
	"golang.org/x/mod/sumdb/tlog"
)

func newStore(tb testing.TB) ledger.Store {
	db := pgtest.New(tb)
	s := postgres.NewStore(db.Pool, postgres.Options{})
	tb.Cleanup(s.Close)
	return s
}

func TestContract(t *testing.T) {
	ledgertest.Run(t, newStore)
}

// TestContractAsyncCommit: the same contract with asynchronous commits,
// the ledger acknowledging each append after a Sync.
func TestContractAsyncCommit(t *testing.T) {
	ledgertest.Run(t, func(tb testing.TB) ledger.Store {
		db := pgtest.New(tb)
		s := postgres.NewStore(db.Pool, postgres.Options{AsyncCommit: true})
		tb.Cleanup(s.Close)
		return s
	})
}

// seed appends a few events to two tenants and checkpoints them.
func seed(t *testing.T) (*ledgertest.Env, *postgres.Store) {
	t.Helper()
	ctx := context.Background()
	env := ledgertest.NewEnv(t, newStore, ledger.Options{})
	for i := 0; i < 10; i++ {
		guid := fmt.Sprintf("%032x", i%3+1)
		tenant := []string{"acme", "globex"}[i%2]
		if _, err := env.Ledger.Append(ctx, domain.SessionStream(guid), ledger.AnyVersion, ledgertest.Chat(t, tenant, guid, fmt.Sprintf("message %d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Ledger.CheckpointAll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Verify(ctx); err != nil {
		t.Fatalf("verify before tampering: %v", err)
	}
	return env, env.Store.(*postgres.Store)
}

func TestEventsRefuseChange(t *testing.T) {
	ctx := context.Background()
	_, st := seed(t)
	for _, stmt := range []string{
		`UPDATE events SET type = 'session.closed' WHERE position = 3`,
		`DELETE FROM events WHERE position = 3`,
		`TRUNCATE events`,
		`UPDATE merkle_hashes SET hash = '\x00' WHERE idx = 0`,
		`DELETE FROM checkpoints`,
	} {
		t.Run(strings.Fields(stmt)[0], func(t *testing.T) {
			_, err := st.Pool().Exec(ctx, stmt)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "append-only") {
				t.Fatalf("%s: err = %v, want the append-only refusal", stmt, err)
			}
		})
	}
}

func TestAppRoleMayOnlyReadAndInsert(t *testing.T) {
	ctx := context.Background()
	_, st := seed(t)
	tx, err := st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SET LOCAL ROLE vigil_app`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil || n != 10 {
		t.Fatalf("vigil_app reads %d events: %v", n, err)
	}
	_, err = tx.Exec(ctx, `DELETE FROM events`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Fatalf("vigil_app delete: %v, want permission denied", err)
	}
}

// tamper drops the immutability triggers and runs stmt, as an attacker with
// full database access would.
func tamper(t *testing.T, st *postgres.Store, stmt string) {
	t.Helper()
	ctx := context.Background()
	for _, s := range []string{
		`ALTER TABLE events DISABLE TRIGGER events_immutable`,
		`ALTER TABLE merkle_hashes DISABLE TRIGGER merkle_hashes_immutable`,
		`ALTER TABLE checkpoints DISABLE TRIGGER checkpoints_immutable`,
		stmt,
	} {
		tag, err := st.Pool().Exec(ctx, s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if s == stmt && tag.RowsAffected() == 0 {
			t.Fatalf("%s changed nothing", s)
		}
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	cases := []struct {
		name     string
		stmt     string
		position int64 // the position verify must name; 0 = any
		reason   string
	}{
		{"PayloadByte", `UPDATE events SET data = replace(data::text, '"customer"', '"customes"')::json WHERE position = 5`, 5, "altered"},
		{"SealedCiphertextByte", `UPDATE events SET sealed = overlay(sealed placing '\xff' from length(sealed) - 3 for 1) WHERE position = 4`, 4, "altered"},
		{"EventType", `UPDATE events SET type = 'session.note_added' WHERE position = 7`, 7, "altered"},
		{"StoredLeafHash", `UPDATE events SET leaf_hash = overlay(leaf_hash placing '\x0000' from 1 for 2) WHERE position = 6`, 6, "altered"},
		{"StoredMerkleHash", `UPDATE merkle_hashes SET hash = overlay(hash placing '\x00' from 1 for 1) WHERE tenant = 'acme' AND idx = 1`, 0, "Merkle hash"},
		{"InteriorMerkleHash", `UPDATE merkle_hashes SET hash = overlay(hash placing '\x01' from 5 for 1) WHERE tenant = 'globex' AND idx = 2`, 0, "Merkle hash"},
		{"DeletedEvent", `DELETE FROM events WHERE position = 8`, 8, "missing"},
		{"CheckpointRoot", `UPDATE checkpoints SET root = overlay(root placing '\x00' from 1 for 1) WHERE tenant = 'acme'`, 0, "checkpoint"},
		{"CheckpointNote", `UPDATE checkpoints SET note = replace(note, E'\n5\n', E'\n4\n') WHERE tenant = 'acme'`, 0, "checkpoint"},
		{"StreamVersion", `UPDATE events SET version = 9 WHERE position = 9`, 9, "altered"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, st := seed(t)
			tamper(t, st, c.stmt)
			_, err := env.Verify(context.Background())
			var ve *ledger.VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("verify after tampering: %v, want a VerifyError", err)
			}
			if c.position != 0 && ve.Position != c.position {
				t.Errorf("verify names position %d, want %d: %v", ve.Position, c.position, err)
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Errorf("verify says %q, want it to mention %q", err, c.reason)
			}
		})
	}
}

func TestVerifyOneTenant(t *testing.T) {
	env, st := seed(t)
	tamper(t, st, `UPDATE events SET data = '{"from":"x"}' WHERE position = 2`) // a globex event
	opts := ledger.VerifyOptions{Tenant: "acme", Verifiers: nil, Origin: "vigil.test"}
	_, err := ledger.Verify(context.Background(), env.Store, opts)
	if err == nil || !strings.Contains(err.Error(), "no verifier key") {
		t.Fatalf("verify without key: %v", err)
	}
	if _, err := env.Verify(context.Background()); err == nil {
		t.Fatal("verify of all tenants passed over a tampered globex event")
	}
}

func TestReadBackExactJSON(t *testing.T) {
	// The data column must return the bytes written, or leaf hashes break.
	ctx := context.Background()
	env := ledgertest.NewEnv(t, newStore, ledger.Options{})
	e := ledgertest.Chat(t, "t", "abcdabcdabcdabcdabcdabcdabcdabcd", "x")
	e.Data = []byte(`{"from":"customer","z":"\u00e9\ud83d\ude00 <&>","a":[1,2.50,1e3]}`)
	out, err := env.Ledger.Append(ctx, e.Stream, ledger.AnyVersion, e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := env.Store.ReadStream(ctx, "t", e.Stream, 0)
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0].Data) != string(e.Data) || got[0].LeafHash != out[0].LeafHash {
		t.Fatalf("data came back as %s", got[0].Data)
	}
}

// TestSaveCheckpointFork: a second checkpoint of a stored size is a no-op
// when its root is the same and an ErrCheckpointFork when it differs; the
// stored checkpoint stays as it was.
func TestSaveCheckpointFork(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	first := ledger.Checkpoint{Tenant: "acme", Size: 7, Root: tlog.Hash{1, 2, 3}, Note: []byte("first\n"), CreatedAt: time.Now().UTC()}
	if err := s.SaveCheckpoint(ctx, first); err != nil {
		t.Fatal(err)
	}
	same := first
	same.Note = []byte("same root, signed again\n")
	if err := s.SaveCheckpoint(ctx, same); err != nil {
		t.Fatalf("same root again: %v, want nil", err)
	}
	fork := first
	fork.Root = tlog.Hash{9, 9, 9}
	err := s.SaveCheckpoint(ctx, fork)
	if !errors.Is(err, ledger.ErrCheckpointFork) {
		t.Fatalf("other root at the same size: %v, want ErrCheckpointFork", err)
	}
	other := fork
	other.Tenant = "globex" // the same size in another tenant's log is no fork
	if err := s.SaveCheckpoint(ctx, other); err != nil {
		t.Fatalf("other tenant: %v", err)
	}
	cps, err := s.Checkpoints(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 1 || cps[0].Root != first.Root || string(cps[0].Note) != "first\n" {
		t.Fatalf("stored checkpoints after the fork: %+v, want the first alone", cps)
	}
}
