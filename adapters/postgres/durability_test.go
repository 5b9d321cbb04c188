package postgres_test

import (
	"context"
	"testing"

	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
	"github.com/vigilhq/vigil/domain"
	"github.com/vigilhq/vigil/ledger"
	"github.com/vigilhq/vigil/ledger/ledgertest"
)

// TestCheckpointDurability: on a server with no synchronous standby and no
// WAL archive (the shared test server), VIGIL_CHECKPOINT_DURABILITY=replica
// or archive signs nothing beyond the empty tree, however much the log
// grew, while local signs the whole log. The failover test (make ha) shows
// replica signing on a Patroni cluster.
func TestCheckpointDurability(t *testing.T) {
	db := pgtest.New(t)
	ctx := context.Background()
	if _, err := postgres.NewDurability(db.Pool, "disk"); err == nil {
		t.Error("an unknown mode was accepted")
	}
	if d, err := postgres.NewDurability(db.Pool, "local"); err != nil || d != nil {
		t.Errorf("local: %v %v, want no check", d, err)
	}
	mk, signer, _ := ledgertest.Keys(t)
	newLedger := func(mode string) *ledger.Ledger {
		st := postgres.NewStore(db.Pool, postgres.Options{})
		t.Cleanup(st.Close)
		opts := ledger.Options{Origin: "vigil.test"}
		if d, err := postgres.NewDurability(db.Pool, mode); err != nil {
			t.Fatal(err)
		} else if d != nil {
			opts.Durability = d
		}
		l := ledger.New(st, ledger.NewSealer(st, ledger.NewKeyring(mk), 0), signer, opts)
		go l.Run(ctx)
		t.Cleanup(l.Close)
		return l
	}
	writer := newLedger("local")
	for i := range 5 {
		if _, err := writer.Append(ctx, domain.SessionStream("00000000000000000000000000000001"), ledger.AnyVersion, ledgertest.Chat(t, "t1", "00000000000000000000000000000001", "hi")); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	for _, mode := range []string{"replica", "archive"} {
		d, _ := postgres.NewDurability(db.Pool, mode)
		size, m, err := d.Mark(ctx, "t1")
		if err != nil || size != 5 || len(m.Epoch) != 8 || m.Pos == 0 {
			t.Fatalf("%s: mark %d %+v %v, want size 5 on a timeline", mode, size, m, err)
		}
		f, err := d.Frontier(ctx)
		if err != nil || f.Epoch != m.Epoch || f.Pos != 0 {
			t.Fatalf("%s: frontier %+v %v, want nothing durable on %s", mode, f, err, m.Epoch)
		}
		c, err := newLedger(mode).Checkpoint(ctx, "t1")
		if err != nil || c.Size != 0 {
			t.Errorf("%s: checkpoint of size %d (%v), want 0: nothing is durable beyond the primary", mode, c.Size, err)
		}
	}
	if c, err := writer.Checkpoint(ctx, "t1"); err != nil || c.Size != 5 {
		t.Errorf("local: checkpoint of size %d (%v), want 5", c.Size, err)
	}
}

func TestArchivedEnd(t *testing.T) {
	const seg = 16 << 20
	for _, c := range []struct {
		name, epoch string
		want        uint64
	}{
		{"000000010000000000000001", "00000001", 2 * seg},
		{"000000010000000100000000", "00000001", (256 + 1) * seg},
		{"000000010000000000000001", "00000002", 0}, // an older timeline
		{"00000002.history", "00000002", 0},
		{"000000010000000000000002.00000028.backup", "00000001", 0},
	} {
		if got := postgres.ArchivedEnd(c.name, c.epoch, seg); got != c.want {
			t.Errorf("archivedEnd(%s, %s) = %d, want %d", c.name, c.epoch, got, c.want)
		}
	}
}
