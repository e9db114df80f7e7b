#!/usr/bin/env bash
# The main job: an end-to-end demo on one machine. A relay on its embedded SQLite database in a
# temporary folder; alice with two devices (a phone and a laptop, linked end to end) and bob;
# 1:1 and group messages with delivery and read receipts, a member removed from a group (new
# sender keys: she cannot read what follows), presence, bob recovering his account
# on a new phone with its recovery code (alice is warned that his safety number changed), a look
# into the relay's database to show that it holds only ciphertext, and at the end the laptop's
# removal from the account. Everything is removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== building parley and parley-relay (debug; the first build takes several minutes)"
swift build --product parley-relay >/dev/null
swift build --product parley >/dev/null
BIN="$(swift build --show-bin-path)"
PARLEY="$BIN/parley"

WORK="$(mktemp -d /tmp/parley-demo.XXXXXX)"
RELAY_PID=""
LISTEN_PID=""
cleanup() {
  # Forget the store keys `parley unlock` left in the session keyring.
  for home in "$WORK"/*/; do [ -f "$home/device.sqlite" ] && PARLEY_HOME="$home" "$PARLEY" lock >/dev/null 2>&1; done
  [ -n "$LISTEN_PID" ] && kill "$LISTEN_PID" 2>/dev/null || true
  [ -n "$RELAY_PID" ] && kill "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
SERVER="http://127.0.0.1:$PORT"
echo "== starting parley-relay on $SERVER (database $WORK/relay.sqlite)"
"$BIN/parley-relay" --host 127.0.0.1 --port "$PORT" --database "$WORK/relay.sqlite" --log-level warning >"$WORK/relay.log" 2>&1 &
RELAY_PID=$!
healthy() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=1)' "$SERVER" 2>/dev/null; }
for _ in $(seq 1 100); do healthy && break; sleep 0.1; done
healthy || { echo "relay did not start"; cat "$WORK/relay.log"; exit 1; }

step() { printf '\n== %s\n' "$*"; }
run() { # run HOME ARGS...: show and run a parley command as one device (PARLEY_HOME selects it)
  local home=$1; shift
  printf '[%s]$ parley %s\n' "$(basename "$home")" "$*"
  PARLEY_HOME="$home" "$PARLEY" "$@" 2>&1 | sed 's/^/    /'
}

# Every device store is sealed (encrypted at rest) under a passphrase; a script gives it in a file (first line).
# `parley unlock` derives each store's key once and keeps it in the kernel's session keyring (15 minutes).
printf '%s\n' "demo passphrase $RANDOM$RANDOM" >"$WORK/passphrase"
chmod 600 "$WORK/passphrase"
export PARLEY_PASSPHRASE_FILE="$WORK/passphrase"
unlock() { PARLEY_HOME="$1" "$PARLEY" unlock 2>&1 | sed 's/^/    /'; }

PHONE="$WORK/alice-phone"; LAPTOP="$WORK/alice-laptop"; BOB="$WORK/bob"; BOB2="$WORK/bob-new-phone"
SUFFIX="$RANDOM"
ALICE="alice$SUFFIX"; BOBNAME="bob$SUFFIX"

step "alice registers her phone, bob registers his device"
run "$PHONE" register "$ALICE" --server "$SERVER" --device-name phone
echo "[bob]\$ parley register $BOBNAME --server $SERVER --device-name bob-phone"
BOB_REGISTERED="$(PARLEY_HOME="$BOB" "$PARLEY" register "$BOBNAME" --server "$SERVER" --device-name bob-phone 2>&1)"
echo "$BOB_REGISTERED" | sed 's/^/    /'
BOB_CODE="$(echo "$BOB_REGISTERED" | grep -Eo '([0-9a-f]{4}-){7}[0-9a-f]{4}' | head -1)"
[ -n "$BOB_CODE" ] || { echo "register showed no recovery code"; exit 1; }
echo "(each store is sealed under the passphrase in \$PARLEY_PASSPHRASE_FILE; unlocked once for this session)"
run "$PHONE" unlock
unlock "$BOB"

step "bob goes online (a listener in the background); alice sends from her phone; bob's device receives it and answers with a delivery receipt"
PARLEY_HOME="$BOB" "$PARLEY" listen >"$WORK/bob-listen.out" 2>&1 &
LISTEN_PID=$!
sleep 1
run "$PHONE" send "$BOBNAME" "Hi Bob, dinner at 8?"
sleep 1
kill "$LISTEN_PID" 2>/dev/null; wait "$LISTEN_PID" 2>/dev/null || true; LISTEN_PID=""
sed 's/^/    [bob, listening] /' "$WORK/bob-listen.out"
run "$PHONE" sync

step "bob reads the conversation (a read receipt goes back, encrypted) and replies"
run "$BOB" read "$ALICE"
run "$BOB" send "$ALICE" "Sounds good, see you there"
run "$PHONE" sync

step "bob goes online again; alice asks for his presence (the relay shows presence only between contacts)"
PARLEY_HOME="$BOB" "$PARLEY" listen >"$WORK/bob-listen2.out" 2>&1 &
LISTEN_PID=$!
sleep 1
run "$PHONE" presence "$BOBNAME"
kill "$LISTEN_PID" 2>/dev/null; wait "$LISTEN_PID" 2>/dev/null || true; LISTEN_PID=""

step "alice links her laptop: the phone shows a one-time link, the laptop joins, the phone approves"
PARLEY_HOME="$PHONE" "$PARLEY" link start --yes >"$WORK/link.out" 2>&1 &
LINKER=$!
for _ in $(seq 1 100); do grep -q 'parley-link:' "$WORK/link.out" 2>/dev/null && break; sleep 0.1; done
LINK="$(grep -o 'parley-link:[^ ]*' "$WORK/link.out" | head -1)"
run "$LAPTOP" link join "$LINK" --server "$SERVER" --device-name laptop
unlock "$LAPTOP"
wait "$LINKER"
sed 's/^/    [alice-phone] /' "$WORK/link.out"
run "$PHONE" devices
echo "(the laptop received the account identity and the history, encrypted end to end:)"
run "$LAPTOP" history "$BOBNAME"

step "what alice sends from one device appears on the other; bob's messages reach both"
run "$PHONE" send "$BOBNAME" "I'll be there at 8"
run "$BOB" sync
run "$BOB" send "$ALICE" "Perfect"
run "$LAPTOP" sync
run "$PHONE" sync

step "a group: alice creates it from the laptop, everyone writes"
GROUP_OUT="$(PARLEY_HOME="$LAPTOP" "$PARLEY" group create "dinner" "$BOBNAME")"
echo "[alice-laptop]\$ parley group create dinner $BOBNAME"; echo "    $GROUP_OUT"
GROUP="$(echo "$GROUP_OUT" | awk '{print $NF}')"
run "$LAPTOP" send --group "$GROUP" "I booked a table for three"
run "$BOB" sync
run "$BOB" send --group "$GROUP" "Great, I'll bring dessert"
run "$PHONE" sync
run "$LAPTOP" sync
run "$PHONE" history --group "$GROUP"

step "carol joins the group, then alice removes her: the next message goes under new sender keys, which carol never gets"
CAROL="$WORK/carol"; CAROLNAME="carol$SUFFIX"
run "$CAROL" register "$CAROLNAME" --server "$SERVER" --device-name carol-phone
unlock "$CAROL"
run "$LAPTOP" group add "$GROUP" "$CAROLNAME"
run "$LAPTOP" send --group "$GROUP" "Welcome, Carol"
run "$CAROL" sync
run "$LAPTOP" group remove "$GROUP" "$CAROLNAME"
run "$LAPTOP" send --group "$GROUP" "Carol has left the group"
run "$BOB" sync
run "$CAROL" sync
printf '[%s]$ parley %s\n' "$(basename "$CAROL")" "history --group $GROUP"
CAROL_HISTORY="$(PARLEY_HOME="$CAROL" "$PARLEY" history --group "$GROUP" 2>&1)"
echo "$CAROL_HISTORY" | sed 's/^/    /'
echo "$CAROL_HISTORY" | grep -q "Welcome, Carol" || { echo "carol did not get the message sent while she was a member"; exit 1; }
if echo "$CAROL_HISTORY" | grep -q "Carol has left the group"; then
  echo "carol read a message sent after her removal"; exit 1
fi
run "$BOB" history --group "$GROUP"

step "safety numbers: alice and bob compare them out of band"
run "$PHONE" safety-number "$BOBNAME"
run "$BOB" safety-number "$ALICE"

step "alice writes while bob and her laptop are offline: the relay holds the ciphertexts; every direct one is version 4 (PQXDH: first byte 0x44)"
run "$PHONE" send "$BOBNAME" "See you soon"
python3 - "$WORK/relay.sqlite" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
rows = con.execute("select kind, type, substr(content, 1, 1) from message where kind in ('direct', 'group')").fetchall()
direct = [bytes(r[2])[0] for r in rows if r[0] == "direct"]
for kind, type_, first in rows:
    print(f"    a queued {kind} message of type {type_}: first byte 0x{bytes(first)[0]:02x}")
if not direct:
    sys.exit("no direct ciphertext is queued at the relay")
if any(b != 0x44 for b in direct):
    sys.exit("a direct ciphertext is not version 4 (0x44)")
print(f"    {len(direct)} direct ciphertexts, all version 4 (0x44)")
PY
run "$BOB" sync
run "$LAPTOP" sync

step "bob loses his phone: on a new one he takes his name back with the recovery code (kept in a file here; a terminal prompts without echo)"
printf '%s\n' "$BOB_CODE" >"$WORK/bob-recovery-code"
run "$BOB2" register "$BOBNAME" --server "$SERVER" --device-name new-phone --recover --recovery-code-file "$WORK/bob-recovery-code"
unlock "$BOB2"
echo "(the old phone's credentials no longer work:)"
run "$BOB" devices || true
echo "(alice writes to bob: his new phone has a new identity key, so she is warned, and her history records it)"
echo "[alice-phone]\$ parley send $BOBNAME Is this your new phone?"
WARNED="$(PARLEY_HOME="$PHONE" "$PARLEY" send "$BOBNAME" "Is this your new phone?" 2>&1)"
echo "$WARNED" | sed 's/^/    /'
echo "$WARNED" | grep -q "WARNING: your safety number with $BOBNAME changed" || { echo "alice was not warned of the new safety number"; exit 1; }
run "$BOB2" sync
run "$PHONE" history "$BOBNAME" --limit 3
echo "(alice compares the new safety number with bob out of band; after that no more warnings)"
run "$PHONE" safety-number "$BOBNAME"
run "$PHONE" send "$BOBNAME" "Got it, thanks"
run "$LAPTOP" sync

step "what the relay stored: only ciphertext (and no recovery code: only its SHA-256)"
python3 - "$WORK/relay.sqlite" "$BOB_CODE" "${BOB_CODE//-/}" "See you soon" "Hi Bob, dinner at 8?" "Sounds good, see you there" "I'll be there at 8" "Perfect" "I booked a table for three" "Great, I'll bring dessert" "Welcome, Carol" "Carol has left the group" "dinner" <<'PY'
import sqlite3, sys, glob
db, secrets = sys.argv[1], sys.argv[2:]
raw = b"".join(open(f, "rb").read() for f in glob.glob(db + "*"))
for s in secrets:
    print(f"    plaintext {s!r}: {'FOUND' if s.encode() in raw else 'absent'} in the relay's database files")
con = sqlite3.connect(db)
tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
for t in tables:
    cols = [r[1] for r in con.execute(f"pragma table_info({t})")]
    blob = next((c for c in cols if c in ("content", "ciphertext", "body")), None)
    if blob:
        row = con.execute(f"select {blob} from {t} limit 1").fetchone()
        if row and row[0]:
            print(f"    a stored {t}.{blob}: {bytes(row[0])[:48].hex()}... ({len(row[0])} bytes)")
if any(s.encode() in raw for s in secrets):
    sys.exit("the relay's database holds a plaintext")
PY

step "what alice's phone stored: sealed at rest (no message text, not even in its search index or WAL)"
python3 - "$PHONE/device.sqlite" "Hi Bob, dinner at 8?" "Sounds good, see you there" "Got it, thanks" <<'PY'
import sys, glob
db, secrets = sys.argv[1], sys.argv[2:]
raw = b"".join(open(f, "rb").read() for f in glob.glob(db + "*"))
for s in secrets:
    print(f"    plaintext {s!r}: {'FOUND' if s.encode() in raw else 'absent'} in the phone's store files")
if any(s.encode() in raw for s in secrets):
    sys.exit("the phone's store holds a plaintext")
PY

step "alice removes her laptop from the account (on her phone): the phone keeps sending; the laptop says it was removed"
LAPTOP_ID="$(PARLEY_HOME="$LAPTOP" "$PARLEY" whoami --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["device"])')"
run "$PHONE" devices remove "$LAPTOP_ID"
run "$PHONE" devices
run "$PHONE" send "$BOBNAME" "I removed my laptop; my phone still writes"
run "$BOB2" sync
printf '[%s]$ parley %s\n' "$(basename "$LAPTOP")" "sync"
if PARLEY_HOME="$LAPTOP" "$PARLEY" sync >"$WORK/removed.out" 2>&1; then
  sed 's/^/    /' "$WORK/removed.out"; echo "the removed laptop synced"; exit 1
fi
sed 's/^/    /' "$WORK/removed.out"
grep -q "this device was removed from the account" "$WORK/removed.out" || { echo "the removed laptop did not say so"; exit 1; }
echo "    (exit status 1)"

step "done: the relay stops and $WORK is removed"
