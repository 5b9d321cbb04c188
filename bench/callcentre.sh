#!/usr/bin/env bash
# Call-centre benchmark of docs/performance.md: `vigil simulate --profile
# callcentre` with N logged-in technicians, each sending one command every
# INTERVAL on average (Poisson, open-loop) for DURATION, against a fresh
# `vigil serve`; then `vigil verify`; then the ledger alone in the same run.
#
#   bash bench/callcentre.sh [TECHNICIANS] [DURATION] [INTERVAL]
#
# Defaults: 10000 technicians, 5m, 5s (2,000 commands/s). The setup creates
# and logs in every technician (two scrypt hashes each on the server: about
# 2 minutes of CPU per thousand) and is reported separately. Needs
# PostgreSQL on 127.0.0.1:5432 (user postgres). Creates and drops a
# database of its own; leaves nothing running.
#
# CALLCENTRE_KEEP=DIR keeps the database, the keys, the tenant and the
# created technicians (--state) in DIR between runs instead: the first run
# creates them, every later run with the same DIR and TECHNICIANS only logs
# them in, which halves the setup's scrypt work (production password
# hashing is unchanged). Drop it afterwards with
#   psql -h 127.0.0.1 -U postgres -c "DROP DATABASE $(cat DIR/db) WITH (FORCE)"; rm -r DIR
set -euo pipefail
cd "$(dirname "$0")/.."
technicians=${1:-10000}
duration=${2:-5m}
interval=${3:-5s}
keep=${CALLCENTRE_KEEP:-}
if [ -n "$keep" ]; then
  mkdir -p "$keep"
  dir=$(cd "$keep" && pwd)
  [ -f "$dir/db" ] || echo "vigil_ccbench_keep_$$" >"$dir/db"
  db=$(cat "$dir/db")
else
  db="vigil_ccbench_$$"
  dir=$(mktemp -d)
fi
port=$((20000 + RANDOM % 20000))
if [ -n "$keep" ]; then # --state names the server's URL: keep the port too
  [ -f "$dir/port" ] || echo "$port" >"$dir/port"
  port=$(cat "$dir/port")
fi
export VIGIL_DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable"
export VIGIL_DATA_DIR="$dir" VIGIL_LOG_LEVEL=error VIGIL_HTTP_ADDR="127.0.0.1:$port" VIGIL_RELAY_ADDR="127.0.0.1:0"

go build -o "$dir/vigil" ./cmd/vigil
cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  if [ -z "$keep" ]; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$dir"
  fi
}
trap cleanup EXIT

"$dir/vigil" migrate >/dev/null
# serve makes the development keys on its first start.
"$dir/vigil" serve & server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
if [ -f "$dir/keys.env" ]; then
  . "$dir/keys.env"
else
  tenant=$("$dir/vigil" tenant create --name CallCentre --json)
  admin=$(printf '%s' "$tenant" | sed -E 's/.*"admin_key":"([^"]+)".*/\1/')
  tid=$(printf '%s' "$tenant" | sed -E 's/.*"tenant":"([^"]+)".*/\1/')
  ingest=$("$dir/vigil" apikey create --tenant "$tid" --role ingest --json | sed -E 's/.*"key":"([^"]+)".*/\1/')
  if [ -n "$keep" ]; then
    (umask 077; printf 'admin=%s\ningest=%s\n' "$admin" "$ingest" >"$dir/keys.env")
  fi
fi
state_flag=()
[ -n "$keep" ] && state_flag=(--state "$dir/state-$technicians.json")


echo "## vigil simulate --profile callcentre --technicians $technicians --duration $duration --interval $interval"
status=0
"$dir/vigil" simulate --profile callcentre --url "http://127.0.0.1:$port" --key "$admin" --ingest-key "$ingest" \
  --technicians "$technicians" --duration "$duration" --interval "$interval" --seed 1 \
  --server-pid "$server" --database-url "$VIGIL_DATABASE_URL" "${state_flag[@]}" ${CALLCENTRE_FLAGS:-} || status=$?
echo
kill "$server"; wait "$server" 2>/dev/null || true; server=
echo "## vigil verify"
"$dir/vigil" verify --quiet | sed -n '1,4p'
echo "## the projections after the load against a rebuild from position 0"
"$dir/vigil" rebuild --check --quiet || status=1
echo "## database size: $(psql -h 127.0.0.1 -U postgres -d "$db" -Atc 'SELECT pg_size_pretty(pg_database_size(current_database()))')"

echo
echo "## the ledger alone, same machine, same run (32 callers × 1 event per append)"
go run ./bench/ledgerbench -cases append1 -events 50000 2>/dev/null | grep -E '^\| (what|---|ledger)|^Go '
exit $status
