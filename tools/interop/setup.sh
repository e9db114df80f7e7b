#!/usr/bin/env bash
# Create (if missing) the virtualenv for the python-axolotl interop peer and
# install the pinned requirements. Idempotent: re-running is cheap when the
# venv already satisfies requirements.txt.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup.sh: creating virtualenv $VENV" >&2
    "$PY" -m venv "$VENV"
fi

STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
   && "$VENV/bin/python" -c 'import axolotl, axolotl_curve25519, google.protobuf, cryptography' 2>/dev/null; then
    exit 0
fi

echo "setup.sh: installing $REQ (python-axolotl-curve25519 compiles a C extension; needs gcc and python3-dev)" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQ"
"$VENV/bin/python" -c 'import axolotl, axolotl_curve25519, google.protobuf, cryptography'
echo "$WANT" > "$STAMP"
echo "setup.sh: ok" >&2
