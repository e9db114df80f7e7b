#!/usr/bin/env bash
# Runs every test: one debug build, then the unit, vector and integration tests from it,
# then the conformance runner over TestVectors/ and the live round trip with python-axolotl.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

swift build --build-tests
# Every suite has its own time limit; this bounds the whole run too, so that a hang fails the
# run (exit 124) instead of holding CI until its deadline. A full run takes 2-3 minutes.
timeout --kill-after=30s 30m swift test --skip-build
echo "== conformance: parley-conformance TestVectors"
.build/debug/parley-conformance TestVectors
echo "== live interop with python-axolotl (tools/interop/run.sh)"
PARLEY_CONFORMANCE=.build/debug/parley-conformance tools/interop/run.sh
