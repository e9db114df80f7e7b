#!/usr/bin/env bash
# Runs a relay benchmark against relay nodes on a throwaway PostgreSQL (scripts/pg-throwaway.sh), removed afterwards:
#
#   swift build -c release --product parley-relay && swift build -c release --product parley-bench
#   scripts/bench-postgres.sh relay-throughput --node-count 2     # any parley-bench relay mode and its options
#
# The bench starts the nodes itself (`--database <this server> --node-count N`); each run gets a fresh schema.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${PARLEY_BENCH:-.build/release/parley-bench}
[ -x "$BENCH" ] || { echo "build it first: swift build -c release --product parley-bench (and parley-relay)" >&2; exit 1; }
PG_DIR=$(mktemp -d /tmp/parley-bench-pg.XXXXXX)
trap 'scripts/pg-throwaway.sh stop "$PG_DIR"' EXIT
DATABASE=$(scripts/pg-throwaway.sh start "$PG_DIR")
echo "postgres: $DATABASE ($PG_DIR)"
"$BENCH" "$@" --database "$DATABASE"
