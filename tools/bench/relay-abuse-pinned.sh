#!/usr/bin/env bash
# The relay-abuse soak with the relay in a process of its own, pinned to one CPU, and the bench (honest devices and
# attackers) pinned to another, so that the relay's CPU is measured apart from the attackers'. Extra arguments go to
# `parley-bench relay-abuse` (e.g. --duration 120 --timeline /tmp/timeline.tsv).
#
#   tools/bench/relay-abuse-pinned.sh OUTDIR [relay-abuse options...]
#
# Environment: BIN (default .build/release), RELAY_CPU (0), BENCH_CPU (1; "all" for both with RELAY_CPU=all:
# unpinned), SAMPLE=1 to also run tools/bench/relay_sampler.py (per 100 ms: relay CPU, threads waiting for a CPU,
# a disk fsync probe, the size of the relay's write-ahead log file) into OUTDIR/sampler.log. The relay runs at its
# default limits except the per-address registration limit (the bench registers its accounts from one address), on a
# fresh SQLite file in OUTDIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$1"; shift
bin="${BIN:-.build/release}"
relay_cpu="${RELAY_CPU:-0}"; bench_cpu="${BENCH_CPU:-1}"
# Runs a command on a CPU, replacing the shell that runs it: only in a subshell (`&` or a pipeline), so that `$!` is
# the command's own process id (the relay's, checked against the listening socket below).
pin() { if [ "$1" = all ]; then shift; exec "$@"; else local cpu="$1"; shift; exec taskset -c "$cpu" "$@"; fi; }
mkdir -p "$out"; rm -f "$out"/relay.sqlite*
# Two free loopback ports (the relay's and its metrics listener's).
while true; do
    port=$((20000 + RANDOM % 20000)); metrics=$((port + 1))
    ss -ltnH | awk '{print $4}' | grep -qE ":($port|$metrics)\$" || break
done
pin "$relay_cpu" "$bin/parley-relay" --port "$port" --metrics-port "$metrics" --database "$out/relay.sqlite" \
    --creations-per-minute-per-address 100000000 --log-level error > "$out/relay.log" 2>&1 &
relay=$!
trap 'kill $relay 2>/dev/null || true' EXIT
# Attack only our own relay: it must be the process listening on the port.
for _ in $(seq 150); do
    ss -ltnpH "sport = :$port" | grep -q "pid=$relay," && break
    kill -0 "$relay" 2>/dev/null || { echo "relay exited: $out/relay.log" >&2; exit 1; }
    sleep 0.2
done
ss -ltnpH "sport = :$port" | grep -q "pid=$relay," || { echo "relay $relay is not listening on $port" >&2; exit 1; }
[ -n "${SAMPLE:-}" ] && pin "$bench_cpu" python3 "$here/relay_sampler.py" "$relay" "$out/sampler.log" "$out/relay.sqlite-wal" &
pin "$bench_cpu" "$bin/parley-bench" relay-abuse --server "http://127.0.0.1:$port" --relay-pid "$relay" \
    --relay-metrics-port "$metrics" "$@" | tee "$out/bench.log"
