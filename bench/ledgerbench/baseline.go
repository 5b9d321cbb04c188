package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// scratchTable creates a table with the events table's columns, constraints
// and indexes but none of its triggers (CREATE TABLE ... LIKE copies no
// triggers), and returns a function that drops it.
func scratchTable(ctx context.Context, pool *pgxpool.Pool, name string) (func(), error) {
	if _, err := pool.Exec(ctx, `CREATE TABLE `+name+` (LIKE events INCLUDING ALL)`); err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	return func() {
		_, _ = pool.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS `+name)
	}, nil
}

// copyBaseline inserts rows into a scratch table from workers goroutines,
// each taking the next batch rows and writing them the way the postgres
// store writes events: CopyFrom inside a transaction. It stops taking batches
// at deadline and returns how many rows were committed and how long it took.
func copyBaseline(ctx context.Context, pool *pgxpool.Pool, rows [][]any, workers, batch int, deadline time.Time, tick func(int64)) (int64, time.Duration, error) {
	table := fmt.Sprintf("bench_copy_w%d_b%d", workers, batch)
	drop, err := scratchTable(ctx, pool, table)
	if err != nil {
		return 0, 0, err
	}
	defer drop()
	var (
		next  atomic.Int64
		done  atomic.Int64
		errMu sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				lo := int(next.Add(int64(batch))) - batch
				if lo >= len(rows) || time.Now().After(deadline) || ctx.Err() != nil {
					return
				}
				chunk := rows[lo:min(lo+batch, len(rows))]
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, eventColumns, pgx.CopyFromRows(chunk))
					return err
				})
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("copy into %s: %w", table, err)
					}
					errMu.Unlock()
					return
				}
				tick(done.Add(int64(len(chunk))))
			}
		})
	}
	wg.Wait()
	return done.Load(), time.Since(start), first
}

// insertBaseline inserts rows into a scratch table from workers goroutines
// with one single-row INSERT per transaction (an autocommit statement: one
// round trip and one commit per row).
func insertBaseline(ctx context.Context, pool *pgxpool.Pool, rows [][]any, workers int, deadline time.Time, tick func(int64)) (int64, time.Duration, error) {
	table := "bench_insert"
	drop, err := scratchTable(ctx, pool, table)
	if err != nil {
		return 0, 0, err
	}
	defer drop()
	params := make([]string, len(eventColumns))
	for i := range params {
		params[i] = fmt.Sprintf("$%d", i+1)
	}
	sql := `INSERT INTO ` + table + ` (` + strings.Join(eventColumns, ", ") + `) VALUES (` + strings.Join(params, ", ") + `)`
	var (
		next  atomic.Int64
		done  atomic.Int64
		errMu sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(rows) || time.Now().After(deadline) || ctx.Err() != nil {
					return
				}
				if _, err := pool.Exec(ctx, sql, rows[i]...); err != nil {
					errMu.Lock()
					if first == nil {
						first = fmt.Errorf("insert into %s: %w", table, err)
					}
					errMu.Unlock()
					return
				}
				tick(done.Add(1))
			}
		})
	}
	wg.Wait()
	return done.Load(), time.Since(start), first
}
