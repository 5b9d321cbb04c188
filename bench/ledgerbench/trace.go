package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// sqlTracer adds up, per statement, how often and how long the ledger's
// connections spent on it: plain queries (including BEGIN and COMMIT), whole
// batches (labelled by their first statement), COPYs and prepares. Each is
// one round trip to the server. It is safe for concurrent use.
type sqlTracer struct {
	mu    sync.Mutex
	stats map[string]*sqlStat
}

type sqlStat struct {
	calls int64
	total time.Duration
}

type traceStart struct{}

func newSQLTracer() *sqlTracer { return &sqlTracer{stats: map[string]*sqlStat{}} }

var (
	_ pgx.QueryTracer    = queryTracer{}
	_ pgx.BatchTracer    = queryTracer{}
	_ pgx.CopyFromTracer = queryTracer{}
	_ pgx.PrepareTracer  = queryTracer{}
)

func label(sql string) string {
	s := strings.Join(strings.Fields(sql), " ")
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}

func (t *sqlTracer) add(key string, d time.Duration) {
	t.mu.Lock()
	s := t.stats[key]
	if s == nil {
		s = &sqlStat{}
		t.stats[key] = s
	}
	s.calls++
	s.total += d
	t.mu.Unlock()
}

func start(ctx context.Context) context.Context {
	return context.WithValue(ctx, traceStart{}, time.Now())
}

func since(ctx context.Context) time.Duration {
	t, _ := ctx.Value(traceStart{}).(time.Time)
	return time.Since(t)
}

type traceSQL struct{}

// queryTracer is the pgx tracer that feeds a sqlTracer; each start puts the
// time and the statement's label in the context for the end.
type queryTracer struct{ *sqlTracer }

func (q queryTracer) end(ctx context.Context) {
	if key, ok := ctx.Value(traceSQL{}).(string); ok {
		q.add(key, since(ctx))
	}
}

func (q queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return context.WithValue(start(ctx), traceSQL{}, "query: "+label(d.SQL))
}

func (q queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	q.end(ctx)
}

func (q queryTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	first := ""
	if d.Batch != nil && len(d.Batch.QueuedQueries) > 0 {
		first = d.Batch.QueuedQueries[0].SQL
	}
	n := 0
	if d.Batch != nil {
		n = d.Batch.Len()
	}
	return context.WithValue(start(ctx), traceSQL{}, fmt.Sprintf("batch of %d, whole: %s", n, label(first)))
}

// TraceBatchQuery records nothing: PostgreSQL sends a pipeline's results
// together at its Sync, so the first statement's read would carry the whole
// batch's server time and the others none. Batches are timed whole.
func (q queryTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (q queryTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchEndData) {
	q.end(ctx)
}

func (q queryTracer) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceCopyFromStartData) context.Context {
	return context.WithValue(start(ctx), traceSQL{}, "copy: "+d.TableName.Sanitize())
}

func (q queryTracer) TraceCopyFromEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceCopyFromEndData) {
	q.end(ctx)
}

func (q queryTracer) TracePrepareStart(ctx context.Context, _ *pgx.Conn, d pgx.TracePrepareStartData) context.Context {
	return context.WithValue(start(ctx), traceSQL{}, "prepare: "+label(d.SQL))
}

func (q queryTracer) TracePrepareEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareEndData) {
	q.end(ctx)
}

// reset returns the statistics so far and starts over.
func (t *sqlTracer) reset() map[string]sqlStat {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]sqlStat, len(t.stats))
	for k, v := range t.stats {
		out[k] = *v
	}
	t.stats = map[string]*sqlStat{}
	return out
}

// printSQLStats writes stats as a markdown table, the most time first.
func printSQLStats(w io.Writer, title string, stats map[string]sqlStat, commits int64) {
	keys := make([]string, 0, len(stats))
	for k := range stats {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return int(stats[b].total - stats[a].total) })
	fmt.Fprintf(w, "\n%s\n\n", title)
	fmt.Fprintln(w, "| statement (ledger pool, all connections) | calls | calls/commit | total s | mean ms |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	for _, k := range keys {
		s := stats[k]
		perCommit := "—"
		if commits > 0 {
			perCommit = fmt.Sprintf("%.2f", float64(s.calls)/float64(commits))
		}
		fmt.Fprintf(w, "| `%s` | %d | %s | %.2f | %.3f |\n", strings.ReplaceAll(k, "|", `\|`), s.calls, perCommit, s.total.Seconds(), float64(s.total)/float64(s.calls)/1e6)
	}
}
