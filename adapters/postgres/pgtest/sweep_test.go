package pgtest_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
)

// TestCISweepSparesDatabasesInUse runs .ci/drop-stale-test-dbs, the CI's
// clean-up of databases left by interrupted test runs, on databases of
// this test's own name pattern: it drops an old idle one, keeps a young
// one, and keeps one with a connection, which still works afterwards (the
// clean-up used to DROP … WITH (FORCE) every vigil_test_% database, killing
// other test runs on the same server).
func TestCISweepSparesDatabasesInUse(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Skip("psql not found")
	}
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	raw := make([]byte, 5)
	rand.Read(raw)
	prefix := "vigil_test_sweep" + hex.EncodeToString(raw) + "_"
	busy, idle := prefix+"busy", prefix+"idle"
	for _, db := range []string{busy, idle} {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)") })
	}
	bcfg := cfg.Copy()
	bcfg.Database = busy
	conn, err := pgx.ConnectConfig(ctx, bcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	sweep := func(minAge string) string {
		t.Helper()
		cmd := exec.Command("../../../.ci/drop-stale-test-dbs")
		cmd.Env = append(os.Environ(), "VIGIL_CI_DB_PATTERN="+prefix+"%", "VIGIL_CI_DB_MIN_AGE_MINUTES="+minAge,
			"PGHOST="+cfg.Host, "PGPORT="+strconv.Itoa(int(cfg.Port)), "PGUSER="+cfg.User)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sweep: %v\n%s", err, out)
		}
		return string(out)
	}
	exists := func(db string) bool {
		t.Helper()
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = $1", db).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	// Young databases stay, idle or not.
	if out := sweep("120"); !exists(busy) || !exists(idle) {
		t.Fatalf("the default age dropped a database just made:\n%s", out)
	}
	// Old enough: the idle one goes, the one in use stays and still works.
	out := sweep("0")
	if exists(idle) {
		t.Errorf("the idle database was kept:\n%s", out)
	}
	if !exists(busy) {
		t.Fatalf("the database in use was dropped:\n%s", out)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Errorf("the connection to the kept database broke: %v", err)
	}
	// Once nobody uses it, it goes too.
	conn.Close(ctx)
	if out := sweep("0"); exists(busy) || !strings.Contains(out, "dropped "+busy) {
		t.Errorf("the database was kept after its connection closed:\n%s", out)
	}
}
