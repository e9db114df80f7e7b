#!/usr/bin/env bash
# The main job. Until the relay and the CLI land, this is the conformance run: every
# Signal-protocol vector (from an independent implementation) and every primitive known-answer
# test under TestVectors/, replayed byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

swift build --product parley-conformance
.build/debug/parley-conformance TestVectors
