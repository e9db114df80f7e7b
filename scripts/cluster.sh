#!/usr/bin/env bash
# A deployment of two relay nodes on one PostgreSQL, on this machine: a throwaway PostgreSQL server (initdb into a
# temporary folder, pg_ctl on a loopback port; never the system service), `parley-relay` twice on two ports with
# the same --database postgres://... URL, then the end-to-end demo with alice on node 1 and bob on node 2: 1:1 and
# group messages, receipts, presence, a linked device on the other node, and a node killed and started again. At the end it looks
# into the database for every plaintext (none is there) and removes everything it made.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== building parley and parley-relay (debug; the first build takes several minutes)"
swift build --product parley-relay >/dev/null
swift build --product parley >/dev/null
BIN="$(swift build --show-bin-path)"
PARLEY="$BIN/parley"

WORK="$(mktemp -d /tmp/parley-cluster.XXXXXX)"
PG_DIR="$(mktemp -d /tmp/parley-cluster-pg.XXXXXX)"  # not inside WORK: as root, the server runs as `postgres`
NODE1_PID=""
NODE2_PID=""
LISTEN_PID=""
cleanup() {
  for home in "$WORK"/*/; do [ -f "$home/device.sqlite" ] && PARLEY_HOME="$home" "$PARLEY" lock >/dev/null 2>&1; done
  [ -n "$LISTEN_PID" ] && kill "$LISTEN_PID" 2>/dev/null || true
  for pid in $NODE1_PID $NODE2_PID; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  scripts/pg-throwaway.sh stop "$PG_DIR" 2>/dev/null || true
  rm -rf "$WORK" "$PG_DIR"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
healthy() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=1)' "$1" 2>/dev/null; }

step "a throwaway PostgreSQL in $PG_DIR (initdb, pg_ctl; loopback only)"
DATABASE="$(scripts/pg-throwaway.sh start "$PG_DIR")"
echo "    $DATABASE"

start_node() { # start_node NUMBER PORT: prints the pid
  "$BIN/parley-relay" --host 127.0.0.1 --port "$2" --database "$DATABASE" --log-level warning >"$WORK/node$1.log" 2>&1 &
  echo $!
}
PORT1="$(free_port)"; PORT2="$(free_port)"
NODE1="http://127.0.0.1:$PORT1"; NODE2="http://127.0.0.1:$PORT2"
step "two relay nodes on that database: node 1 on $NODE1, node 2 on $NODE2"
echo "    parley-relay --port $PORT1 --database $DATABASE"
echo "    parley-relay --port $PORT2 --database $DATABASE"
NODE1_PID="$(start_node 1 "$PORT1")"
for _ in $(seq 1 200); do healthy "$NODE1" && break; sleep 0.1; done  # the first node creates the schema
NODE2_PID="$(start_node 2 "$PORT2")"
for _ in $(seq 1 200); do healthy "$NODE2" && break; sleep 0.1; done
healthy "$NODE1" && healthy "$NODE2" || { echo "a relay node did not start"; cat "$WORK"/node*.log; exit 1; }

run() { # run HOME ARGS...: show and run a parley command as one device (PARLEY_HOME selects it)
  local home=$1; shift
  printf '[%s]$ parley %s\n' "$(basename "$home")" "$*"
  PARLEY_HOME="$home" "$PARLEY" "$@" 2>&1 | sed 's/^/    /'
}
expect_in() { # expect_in FILE TEXT: fails the demo unless FILE holds TEXT
  grep -qF -- "$2" "$1" || { echo "expected '$2' in $1:"; cat "$1"; exit 1; }
}

PHONE="$WORK/alice-phone"; LAPTOP="$WORK/alice-laptop"; BOB="$WORK/bob"
# The device stores are sealed under a passphrase (scripts give it in a file); each is unlocked once.
printf '%s\n' "cluster passphrase $RANDOM$RANDOM" >"$WORK/passphrase"
chmod 600 "$WORK/passphrase"
export PARLEY_PASSPHRASE_FILE="$WORK/passphrase"
SUFFIX="$RANDOM"
ALICE="alice$SUFFIX"; BOBNAME="bob$SUFFIX"

step "alice registers her phone on node 1, bob registers on node 2"
run "$PHONE" register "$ALICE" --server "$NODE1" --device-name phone
run "$BOB" register "$BOBNAME" --server "$NODE2" --device-name bob-phone
for home in "$PHONE" "$BOB"; do PARLEY_HOME="$home" "$PARLEY" unlock >/dev/null; done

step "bob goes online on node 2 (a listener in the background); alice sends through node 1; node 2 wakes bob's connection at once (LISTEN/NOTIFY, ids only)"
PARLEY_HOME="$BOB" "$PARLEY" listen >"$WORK/bob-listen.out" 2>&1 &
LISTEN_PID=$!
sleep 2
run "$PHONE" send "$BOBNAME" "Hi Bob, dinner at 8?"
for _ in $(seq 1 100); do grep -qF "dinner at 8" "$WORK/bob-listen.out" && break; sleep 0.1; done
kill "$LISTEN_PID" 2>/dev/null; wait "$LISTEN_PID" 2>/dev/null || true; LISTEN_PID=""
sed 's/^/    [bob on node 2, listening] /' "$WORK/bob-listen.out"
expect_in "$WORK/bob-listen.out" "Hi Bob, dinner at 8?"
run "$PHONE" sync

step "bob reads it (a read receipt goes back through node 2) and replies"
run "$BOB" read "$ALICE"
run "$BOB" send "$ALICE" "Sounds good, see you there"
run "$PHONE" sync | tee "$WORK/phone-sync.out"
expect_in "$WORK/phone-sync.out" "Sounds good, see you there"

step "bob is online on node 2 again; alice, on node 1, sees it (presence is shown between contacts: they have written each way)"
PARLEY_HOME="$BOB" "$PARLEY" listen >"$WORK/bob-listen2.out" 2>&1 &
LISTEN_PID=$!
sleep 2
run "$PHONE" presence "$BOBNAME" | tee "$WORK/presence.out"
expect_in "$WORK/presence.out" "online"
kill "$LISTEN_PID" 2>/dev/null; wait "$LISTEN_PID" 2>/dev/null || true; LISTEN_PID=""

step "alice links her laptop through node 2: the phone (node 1) approves, the laptop gets her history"
PARLEY_HOME="$PHONE" "$PARLEY" link start --yes >"$WORK/link.out" 2>&1 &
LINKER=$!
for _ in $(seq 1 100); do grep -q 'parley-link:' "$WORK/link.out" 2>/dev/null && break; sleep 0.1; done
LINK="$(grep -o 'parley-link:[^ ]*' "$WORK/link.out" | head -1)"
run "$LAPTOP" link join "$LINK" --server "$NODE2" --device-name laptop
wait "$LINKER"
sed 's/^/    [alice-phone] /' "$WORK/link.out"
run "$LAPTOP" history "$BOBNAME" | tee "$WORK/laptop-history.out"
expect_in "$WORK/laptop-history.out" "dinner at 8"

step "a group: alice creates it on the laptop (node 2), bob writes from node 2, the phone reads on node 1"
GROUP_OUT="$(PARLEY_HOME="$LAPTOP" "$PARLEY" group create "dinner" "$BOBNAME")"
echo "[alice-laptop]\$ parley group create dinner $BOBNAME"; echo "    $GROUP_OUT"
GROUP="$(echo "$GROUP_OUT" | awk '{print $NF}')"
run "$LAPTOP" send --group "$GROUP" "I booked a table for three"
run "$BOB" sync
run "$BOB" send --group "$GROUP" "Great, I'll bring dessert"
run "$PHONE" sync
run "$PHONE" history --group "$GROUP" | tee "$WORK/group.out"
expect_in "$WORK/group.out" "I booked a table for three"
expect_in "$WORK/group.out" "Great, I'll bring dessert"

step "node 1 is killed (SIGKILL); bob writes through node 2 meanwhile; node 1 comes back and alice's phone gets it"
kill -KILL "$NODE1_PID"; wait "$NODE1_PID" 2>/dev/null || true; NODE1_PID=""
run "$BOB" send "$ALICE" "Is node 1 gone?"
NODE1_PID="$(start_node 1 "$PORT1")"
for _ in $(seq 1 200); do healthy "$NODE1" && break; sleep 0.1; done
run "$PHONE" sync | tee "$WORK/back.out"
expect_in "$WORK/back.out" "Is node 1 gone?"

step "what the relays stored in PostgreSQL: only ciphertext"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
DUMP="$WORK/dump.sql"
if [ "$(id -u)" = "0" ]; then
  runuser -u postgres -- "$PGBIN/pg_dump" --data-only "$DATABASE" >"$DUMP"
else
  "$PGBIN/pg_dump" --data-only "$DATABASE" >"$DUMP"
fi
found=0
for secret in "Hi Bob, dinner at 8?" "Sounds good, see you there" "I booked a table for three" "Great, I'll bring dessert" "Is node 1 gone?"; do
  if grep -qF -- "$secret" "$DUMP"; then echo "    plaintext '$secret': FOUND"; found=1; else echo "    plaintext '$secret': absent"; fi
done
echo "    tables: $(grep -c '^COPY ' "$DUMP") copied, $(wc -c <"$DUMP") bytes of dump"
[ "$found" = 0 ] || { echo "the database holds a plaintext"; exit 1; }

step "done: the nodes and PostgreSQL stop, $WORK and $PG_DIR are removed"
