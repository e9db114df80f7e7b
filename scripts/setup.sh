#!/usr/bin/env bash
# Installs what Parley needs on a Debian machine, only when something is missing.
# Sourced by scripts/test.sh and scripts/demo.sh; safe to run on its own.
set -euo pipefail

# python3-venv, python3-dev and gcc serve the python-axolotl interop check (tools/interop); tmux
# drives the interactive `parley chat` test.
PACKAGES=(libsodium-dev libssl-dev libsqlite3-dev pkg-config python3 python3-venv python3-dev gcc tmux)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# The PostgreSQL server (initdb, pg_ctl, postgres under /usr/lib/postgresql/<version>/bin) for the PostgreSQL
# backend's tests, scripts/cluster.sh and the benchmarks; the client (psql) alone is not enough. Nothing here
# starts the system service: scripts/pg-throwaway.sh runs a server of its own in a temporary folder.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "parley setup: installing ${missing[*]}" >&2
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
  if [ -x /opt/swift/usr/bin/swift ]; then
    export PATH="/opt/swift/usr/bin:$PATH"
  else
    echo "parley setup: Swift 6 toolchain not found (expected 'swift' on PATH or /opt/swift)" >&2
    exit 1
  fi
fi
