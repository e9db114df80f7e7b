#!/usr/bin/env bash
# Builds parley-fuzz with libFuzzer and AddressSanitizer (-sanitize=fuzzer,address) in its own
# scratch folder, then runs every target (or the ones named) for a bounded time each.
#
#   tools/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 seconds, all targets)
#
# Corpora live in fuzz-work/ (git-ignored), seeded from TestVectors/fuzz-regressions/<target>/.
# A crash leaves crash-* files in fuzz-work/<target>/: minimise it, copy it into
# TestVectors/fuzz-regressions/<target>/ (the regression tests replay those files), fix, re-run.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh

SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  TARGETS=(signal-message prekey-message sender-key-message distribution-message session-record sender-key-record session-decrypt group-decrypt)
fi

swift build --product parley-fuzz --scratch-path .build-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DPARLEY_FUZZ
BIN=.build-fuzz/debug/parley-fuzz

status=0
for target in "${TARGETS[@]}"; do
  work="fuzz-work/$target"
  mkdir -p "$work/corpus"
  seeds="TestVectors/fuzz-regressions/$target"
  [ -d "$seeds" ] && cp -n "$seeds"/* "$work/corpus/" 2>/dev/null || true
  echo "== $target (${SECONDS_PER_TARGET}s)"
  if ! (cd "$work" && PARLEY_FUZZ_TARGET="$target" "../../$BIN" -max_total_time="$SECONDS_PER_TARGET" \
        -max_len=4096 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 corpus 2>&1 | tail -n 12); then
    echo "!! $target found a problem: see $work/crash-* / leak-* / timeout-*"
    status=1
  fi
done
exit $status
