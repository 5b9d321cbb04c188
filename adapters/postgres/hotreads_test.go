package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/vigilhq/vigil/adapters/postgres"
	"github.com/vigilhq/vigil/adapters/postgres/pgtest"
)

// TestHotReadsUseIndexes: the statements run with cached generic plans
// (a session's new events, a credential's row, the writer's checks) keep
// their indexes in the case that makes generic plans go wrong: every table
// analyzed while empty, where a generic plan made with the default
// settings scans the table whole, and keeps doing so as it grows. The
// hot reads' connection settings (sequential scans priced out) are what
// prevents it; the same plan under the default settings is the control.
func TestHotReadsUseIndexes(t *testing.T) {
	db := pgtest.New(t)
	st := postgres.NewStore(db.Pool, postgres.Options{})
	t.Cleanup(st.Close)
	cfg, statements := st.HotReadsForTest()
	ctx := context.Background()
	args := map[string]string{
		"ReadStream":     `('t', 's', 0)`,
		"ReadStreams":    `('t', ARRAY['s1', 's2'], ARRAY[0, 3]::bigint[])`,
		"Token":          `('id')`,
		"APIKey":         `('id')`,
		"check head":     `(7, '00000000-0000-0000-0000-000000000001')`,
		"check sizes":    `(ARRAY['t'], ARRAY[3]::bigint[])`,
		"check versions": `(ARRAY['t'], ARRAY['s'], ARRAY[3]::bigint[])`,
		"claim":          `(ARRAY['t'], ARRAY['p'], ARRAY['k'], ARRAY['\x00']::bytea[], ARRAY[now()])`,
		"complete":       `(ARRAY['t'], ARRAY['p'], ARRAY['k'], ARRAY[200], ARRAY['\x00']::bytea[])`,
	}
	if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE events`); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"tenant_logs", "auth_tokens", "api_keys", "idempotency_keys"} {
		if _, err := db.Pool.Exec(ctx, `VACUUM ANALYZE `+table); err != nil {
			t.Fatal(err)
		}
	}
	plans := func(conn *pgx.Conn) map[string]string {
		out := map[string]string{}
		if _, err := conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`); err != nil {
			t.Fatal(err)
		}
		i := 0
		for name, sql := range statements {
			a, ok := args[name]
			if !ok {
				t.Fatalf("no example arguments for %s", name)
			}
			i++
			if _, err := conn.Exec(ctx, fmt.Sprintf(`PREPARE hot%d AS %s`, i, sql)); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			rows, _ := conn.Query(ctx, fmt.Sprintf(`EXPLAIN EXECUTE hot%d%s`, i, a))
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			out[name] = strings.Join(lines, "\n")
		}
		return out
	}
	connect := func(cc *pgx.ConnConfig) *pgx.Conn {
		conn, err := pgx.ConnectConfig(ctx, cc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	for name, plan := range plans(connect(cfg.ConnConfig)) {
		if name == "claim" {
			// An INSERT reads no table; its conflict check is the index.
			if strings.Contains(plan, "Seq Scan") {
				t.Errorf("%s: generic plan with the hot reads' settings:\n%s", name, plan)
			}
			continue
		}
		if strings.Contains(plan, "Seq Scan") || !strings.Contains(plan, "Index") {
			t.Errorf("%s: generic plan with the hot reads' settings:\n%s", name, plan)
		}
	}
	// The control: the main pool's connections would scan.
	control := plans(connect(db.Pool.Config().ConnConfig))
	for _, name := range []string{"ReadStream", "Token", "check head", "complete"} {
		if !strings.Contains(control[name], "Seq Scan") {
			t.Errorf("%s: the generic plan under the default settings keeps its index; the test shows nothing:\n%s", name, control[name])
		}
	}
}
