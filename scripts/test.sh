#!/usr/bin/env bash
# Runs every test: one debug build, then the unit, vector and integration tests from it,
# then the conformance runner over TestVectors/ and the live round trip with python-axolotl.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

swift build --build-tests
swift test --skip-build
echo "== conformance: parley-conformance TestVectors"
.build/debug/parley-conformance TestVectors
echo "== live interop with python-axolotl (tools/interop/run.sh)"
PARLEY_CONFORMANCE=.build/debug/parley-conformance tools/interop/run.sh
