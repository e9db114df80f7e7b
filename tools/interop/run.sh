#!/usr/bin/env bash
# Live interop: Parley (parley-conformance interop) <-> python-axolotl 0.2.3.
#
# Sets up the python-axolotl virtualenv (setup.sh), then runs roundtrip.py with
# the python peer and the Swift peer, both role assignments (python as alice /
# swift as bob, and swift as alice / python as bob). Builds nothing: build the
# Swift binary first (swift build --product parley-conformance).
#
#   PARLEY_CONFORMANCE  path of the Swift binary
#                       (default: <repo>/.build/debug/parley-conformance)
#   Extra arguments are passed to roundtrip.py (e.g. --seed N, --only d_, -v).
#
# Exit status: 0 only if every scenario passed in both directions.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BIN="${PARLEY_CONFORMANCE:-$ROOT/.build/debug/parley-conformance}"

"$HERE/setup.sh"

if [ ! -x "$BIN" ]; then
    echo "run.sh: Swift peer not found or not executable: $BIN" >&2
    echo "run.sh: build it (swift build --product parley-conformance) or set PARLEY_CONFORMANCE" >&2
    exit 2
fi

PY="$HERE/.venv/bin/python"
# roundtrip.py splits peer commands with shlex; %q keeps paths with spaces intact.
PY_PEER="$(printf '%q %q' "$PY" "$HERE/axolotl_peer.py")"
SWIFT_PEER="$(printf '%q interop' "$BIN")"
exec "$PY" "$HERE/roundtrip.py" \
    --alice "$PY_PEER" --alice-label python \
    --bob "$SWIFT_PEER" --bob-label swift \
    "$@"
