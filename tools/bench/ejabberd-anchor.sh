#!/usr/bin/env bash
# The anchor of the relay's durable-throughput figure: ejabberd (Debian's package) with its message archive
# (mod_mam, default: always) on PostgreSQL, driven by tools/bench/xmpp_load.py in the same closed-loop shape as
# `parley-bench relay-throughput` (N users, user i -> user i+1, WINDOW messages in flight, 200-byte bodies,
# 3 runs of 10 s, median). With --with-parley the same sitting then runs Parley's relay-throughput on one node
# on SQLite and one node on PostgreSQL and prints the ratios to the anchor.
#
#   tools/bench/ejabberd-anchor.sh [--users 1000] [--window 8] [--with-parley]
#
# Everything it starts is its own (a throwaway PostgreSQL in /tmp, ejabberd with a config in /tmp on a free
# loopback port, never the system service) and is stopped on exit. Benchmark tooling, never part of the product.
set -euo pipefail
cd "$(dirname "$0")/../.."
USERS=1000 WINDOW=8 DURATION=10 RUNS=3 WITH_PARLEY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --users) USERS=$2; shift 2 ;;
    --window) WINDOW=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --with-parley) WITH_PARLEY=1; shift ;;
    *) echo "usage: $0 [--users N] [--window W] [--duration S] [--runs R] [--with-parley]" >&2; exit 2 ;;
  esac
done

# ejabberd and its PostgreSQL driver from Debian, without letting the package start the system service.
if ! command -v ejabberdctl >/dev/null || ! dpkg -s erlang-p1-pgsql >/dev/null 2>&1; then
  policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_added=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q ejabberd erlang-p1-pgsql >/dev/null
  [ "$policy_added" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
SCHEMA=$(dpkg -L ejabberd | grep -E '/sql/pg\.sql$' | head -1)
[ -n "$SCHEMA" ] || { echo "ejabberd-anchor: ejabberd's pg.sql schema not found" >&2; exit 1; }
PSQL=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)/psql

WORK=$(mktemp -d /tmp/parley-ejabberd.XXXXXX)
chmod 755 "$WORK"
PG_DIR="$WORK/pg"
NODE="parleybench$$@localhost"
cleanup() {
  [ -n "${CTL+x}" ] && "${CTL[@]}" stop >/dev/null 2>&1 || true
  sleep 1
  pkill -f "$NODE" 2>/dev/null || true
  scripts/pg-throwaway.sh stop "$PG_DIR" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
[ -n "${EJABBERD_ANCHOR_KEEP:-}" ] || trap cleanup EXIT
DATABASE=$(scripts/pg-throwaway.sh start "$PG_DIR")
PG_PORT=$(echo "$DATABASE" | sed -E 's#.*:([0-9]+)/.*#\1#')
"$PSQL" -q -h 127.0.0.1 -p "$PG_PORT" -U parley -d parley -v ON_ERROR_STOP=1 -f "$SCHEMA" >/dev/null
"$PSQL" -q -h 127.0.0.1 -p "$PG_PORT" -U parley -d parley -v ON_ERROR_STOP=1 \
  -c "INSERT INTO users (username, password) SELECT 'u' || g, 'benchpw' FROM generate_series(0, $((USERS - 1))) g"

C2S_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
mkdir -p "$WORK/etc" "$WORK/spool" "$WORK/logs"
cat > "$WORK/etc/ejabberd.yml" <<EOF
hosts: ["bench.local"]
loglevel: warning
default_db: sql
sql_type: pgsql
sql_server: "127.0.0.1"
sql_port: $PG_PORT
sql_database: "parley"
sql_username: "parley"
sql_password: ""
sql_pool_size: 10
auth_method: sql
auth_password_format: plain
shaper_rules:
  max_user_sessions: 10
  c2s_shaper: none
access_rules:
  local:
    allow: all
  c2s:
    allow: all
listen:
  -
    port: $C2S_PORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    backlog: 1024
    access: c2s
    shaper: c2s_shaper
    starttls_required: false
modules:
  mod_mam:
    db_type: sql
    default: always
  mod_offline:
    db_type: sql
  mod_roster:
    db_type: sql
EOF
cat > "$WORK/etc/ejabberdctl.cfg" <<EOF
ERLANG_NODE=$NODE
EJABBERD_CONFIG_PATH=$WORK/etc/ejabberd.yml
LOGS_DIR=$WORK/logs
SPOOL_DIR=$WORK/spool
ERL_MAX_PORTS=65536
EOF
if [ "$(id -u)" = 0 ] && id ejabberd >/dev/null 2>&1; then chown -R ejabberd: "$WORK/etc" "$WORK/spool" "$WORK/logs"; fi
# ejabberdctl switches to the ejabberd user through `su`, whose PAM session drops the open-file limit to 1,024
# (ejabberd then fails to accept the thousandth connection): switch without PAM instead, keeping our limit.
AS_EJABBERD=()
if [ "$(id -u)" = 0 ] && id ejabberd >/dev/null 2>&1; then
  AS_EJABBERD=(setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME="$(getent passwd ejabberd | cut -d: -f6)")
fi
CTL=("${AS_EJABBERD[@]}" ejabberdctl --node "$NODE" --config-dir "$WORK/etc" --ctl-config "$WORK/etc/ejabberdctl.cfg"
     --config "$WORK/etc/ejabberd.yml" --logs "$WORK/logs" --spool "$WORK/spool")
"${CTL[@]}" start
for _ in $(seq 1 60); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $C2S_PORT), 1)" 2>/dev/null && break
  sleep 1
done
python3 -c "import socket; socket.create_connection(('127.0.0.1', $C2S_PORT), 1)" 2>/dev/null || {
  echo "ejabberd-anchor: ejabberd did not listen on $C2S_PORT; its log:" >&2; cat "$WORK/logs/"*.log >&2 || true; exit 1; }
BEAM=$(pgrep -f "beam.*$NODE" | head -1)
echo "ejabberd's open-file limit: $(grep 'open files' /proc/$BEAM/limits | awk '{print $4}')"
echo "ejabberd $(dpkg-query -W -f '${Version}' ejabberd) (pid $BEAM) on 127.0.0.1:$C2S_PORT, archive (mod_mam) on PostgreSQL $DATABASE"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
before=$(cpu_ticks "$BEAM"); t0=$(date +%s.%N)
python3 tools/bench/xmpp_load.py --port "$C2S_PORT" --users "$USERS" --window "$WINDOW" --duration "$DURATION" \
  --runs "$RUNS" | tee "$WORK/anchor.out"
after=$(cpu_ticks "$BEAM"); t1=$(date +%s.%N)
archived=$("$PSQL" -tA -h 127.0.0.1 -p "$PG_PORT" -U parley -d parley -c "SELECT count(*) FROM archive")
python3 -c "print('ejabberd CPU over the load: %.0f%% of one core; rows in its archive: $archived' % (($after - $before) / $(getconf CLK_TCK) / ($t1 - $t0) * 100))"
ANCHOR=$(tail -1 "$WORK/anchor.out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["delivered_rate"]))')
echo "anchor: ejabberd delivered $ANCHOR msg/s (median of $RUNS runs, archive on PostgreSQL)"
cleanup; trap - EXIT

if [ "$WITH_PARLEY" = 1 ]; then
  B=.build/release/parley-bench
  [ -x "$B" ] || { echo "build it first: swift build -c release --product parley-bench (and parley-relay)" >&2; exit 1; }
  rate() { grep -E '^median of' | sed -E 's/.*committed ([0-9]+) msg\/s.*/\1/'; }
  echo "--- Parley, one node on SQLite, same sitting"
  S=$("$B" relay-throughput --devices "$USERS" --window "$WINDOW" --runs "$RUNS" --duration "$DURATION" | tee /dev/stderr | rate)
  echo "--- Parley, one node on PostgreSQL, same sitting"
  P=$(scripts/bench-postgres.sh relay-throughput --devices "$USERS" --window "$WINDOW" --runs "$RUNS" --duration "$DURATION" | tee /dev/stderr | rate)
  python3 -c "print('ratios to the anchor (%d msg/s): Parley on SQLite %d msg/s = %.1fx, on PostgreSQL %d msg/s = %.1fx' % ($ANCHOR, $S, $S / $ANCHOR, $P, $P / $ANCHOR))"
fi
