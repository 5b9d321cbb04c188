#!/usr/bin/env bash
# HTTP benchmark of docs/performance.md: commands per second and latency
# percentiles through the real API with `vigil simulate` at concurrency 32,
# beside the ledger's own append rate measured in the same run.
#
#   bash bench/http.sh [SESSIONS] [CONCURRENCY]
#
# Needs PostgreSQL on 127.0.0.1:$PGPORT (default 5432, user postgres); with
# BENCH_STATEMENTS=1 the server must have pg_stat_statements preloaded, and
# the run ends with the statements per command. Creates and drops a
# database of its own; leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
sessions=${1:-1000}
concurrency=${2:-32}
db="vigil_httpbench_$$"
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
pgport=${PGPORT:-5432}
export VIGIL_DATABASE_URL="postgres://postgres@127.0.0.1:$pgport/$db?sslmode=disable"
export VIGIL_DATA_DIR="$dir" VIGIL_LOG_LEVEL=error VIGIL_HTTP_ADDR="127.0.0.1:$port"

go build -o "$dir/vigil" ./cmd/vigil
cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  psql -h 127.0.0.1 -p "$pgport" -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

"$dir/vigil" migrate >/dev/null
# serve first: in development it generates the data dir's keys, which the
# tenant and apikey commands below need.
"$dir/vigil" serve & server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
tenant=$("$dir/vigil" tenant create --name Bench --json)
admin=$(printf '%s' "$tenant" | sed -E 's/.*"admin_key":"([^"]+)".*/\1/')
tid=$(printf '%s' "$tenant" | sed -E 's/.*"tenant":"([^"]+)".*/\1/')
ingest=$("$dir/vigil" apikey create --tenant "$tid" --role ingest --json | sed -E 's/.*"key":"([^"]+)".*/\1/')

q() { psql -h 127.0.0.1 -p "$pgport" -U postgres -d "$db" "$@"; }
if [ -n "${BENCH_STATEMENTS:-}" ]; then
  q -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
fi

echo "## vigil simulate --sessions $sessions --concurrency $concurrency (through HTTP)"
"$dir/vigil" simulate --url "http://127.0.0.1:$port" --key "$admin" --ingest-key "$ingest" \
  --sessions "$sessions" --concurrency "$concurrency" --seed 1 --quiet | tee "$dir/simulate.out"
if [ -n "${BENCH_STATEMENTS:-}" ]; then
  requests=$(sed -nE 's/^requests sent: *([0-9]+).*/\1/p' "$dir/simulate.out")
  echo
  echo "## statements during the run (pg_stat_statements, this database; $requests HTTP requests)"
  q -Atc "SELECT sum(calls), round(sum(calls)::numeric / $requests, 2), round(sum(total_exec_time)::numeric / 1000, 2)
          FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())" |
    awk -F'|' '{printf "all statements: %s calls, %s per request, %s s executing\n\n", $1, $2, $3}'
  echo "| calls | per request | mean ms | total s | statement |"
  echo "|---:|---:|---:|---:|---|"
  q -Atc "SELECT calls, round(calls::numeric / $requests, 2), round(mean_exec_time::numeric, 3), round(total_exec_time::numeric / 1000, 2),
                 left(regexp_replace(query, '\s+', ' ', 'g'), 90)
          FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY calls DESC LIMIT 25" | awk -F'|' '{printf "| %s | %s | %s | %s | `%s` |\n", $1, $2, $3, $4, $5}'
fi
verified=$("$dir/vigil" verify --quiet)
printf '%s\n' "$verified" | sed -n '1p;4p'
# The live projections against a rebuild from position 0 (exit 1 if not equal).
"$dir/vigil" rebuild --check --quiet
echo
kill "$server"; wait "$server" 2>/dev/null || true; server=

echo
echo "## the ledger alone, same machine, same run (32 callers × 1 event per append)"
go run ./bench/ledgerbench -db "postgres://postgres@127.0.0.1:$pgport/postgres?sslmode=disable" -cases append1 -events 50000 2>/dev/null | grep -E '^\| (what|---|ledger)|^Go '
