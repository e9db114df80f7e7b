#!/usr/bin/env bash
# Installs the crypto benchmark's anchors (vodozemac from PyPI) into tools/bench/.venv.
# parley-bench crypto --anchors runs tools/bench/vodozemac_anchor.py with that interpreter.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get install -y python3-venv >/dev/null
fi
[ -x "$here/.venv/bin/python" ] || python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
"$here/.venv/bin/python" -c 'import vodozemac' && echo "vodozemac ready: $here/.venv/bin/python"
