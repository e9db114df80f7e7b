#!/usr/bin/env bash
# Fuzzes Parley's parsers, decoders and decryption with libFuzzer. Builds `parley-fuzz` with
# libFuzzer and AddressSanitizer (-sanitize=fuzzer,address) in its own scratch folder
# (.build-fuzz: only the I/O-free modules ParleyProtocol, ParleyFormats and ParleyWire and what
# they need), then runs every target (or the ones named) for a bounded time each.
#
#   tools/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     default: 60 s each, every target
#   tools/fuzz/run.sh 3600 ratchet-transcript               a longer campaign on one target
#   PARLEY_FUZZ_JOBS=2 tools/fuzz/run.sh 600                 several processes per target
#   PARLEY_FUZZ_CONFIG=release tools/fuzz/run.sh 1800        an optimised build for long campaigns
#
# CI runs `tools/fuzz/run.sh 20` (scripts/test.sh). PARLEY_FUZZ_KNOWN_ISSUES="tag;tag" lists known
# issues (FuzzTargets.knownIssues) that are reported but do not stop a target while their fix is
# pending elsewhere. Each target starts from its seeds and kept
# findings in TestVectors/fuzz-regressions/<target>/; the corpus grows in fuzz-work/<target>/corpus
# (git-ignored) across runs. A finding (a crash, a hang, or an invariant violation, which traps)
# leaves crash-*/timeout-*/oom-* files in fuzz-work/<target>/ and fails the run. To keep one:
#   .build/debug/parley-fuzz TARGET fuzz-work/TARGET/crash-...      (replays it, prints the outcome)
# minimise it (add -minimize_crash=1 -runs=10000 to the fuzzer command), copy it to
# TestVectors/fuzz-regressions/<target>/<name>.bin, add the outcome it must have once fixed to that
# folder's outcomes.tsv (a line "FILE<TAB>OUTCOME"; FuzzRegressionTests replays every kept input and
# checks its outcome), fix.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh

SECONDS_PER_TARGET="${1:-60}"
shift || true
JOBS="${PARLEY_FUZZ_JOBS:-1}"

# PARLEY_FUZZ_CONFIG=release: an optimised fuzzer (several times more inputs per second on the
# decryption targets) for long campaigns; it takes longer to build. CI uses the debug build.
CONFIG="${PARLEY_FUZZ_CONFIG:-debug}"
SCRATCH=".build-fuzz"
[ "$CONFIG" = "release" ] && SCRATCH=".build-fuzz-release"
echo "== building parley-fuzz ($CONFIG) with libFuzzer and AddressSanitizer ($SCRATCH)"
swift build -c "$CONFIG" --product parley-fuzz --scratch-path "$SCRATCH" \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DPARLEY_FUZZ
BIN="$PWD/$SCRATCH/$CONFIG/parley-fuzz"

TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(PARLEY_FUZZ_LIST=1 "$BIN")
fi

failed=()
for target in "${TARGETS[@]}"; do
  work="fuzz-work/$target"
  mkdir -p "$work/corpus"
  seeds="TestVectors/fuzz-regressions/$target"
  if [ -d "$seeds" ]; then find "$seeds" -name '*.bin' -exec cp -n {} "$work/corpus/" \; ; fi
  echo "== $target (${SECONDS_PER_TARGET}s, $(ls "$work/corpus" | wc -l) inputs to start from)"
  # -timeout: one input never takes seconds (the largest ratchet programs take milliseconds);
  # -rss_limit_mb: a parser that allocates without bound is a finding; -max_len: the targets'
  # interesting inputs are small (records and payloads of a few KiB).
  if ! (cd "$work" && PARLEY_FUZZ_TARGET="$target" "$BIN" -max_total_time="$SECONDS_PER_TARGET" \
        -max_len=8192 -timeout=10 -rss_limit_mb=2048 -use_value_profile=1 -print_final_stats=1 \
        -jobs="$JOBS" -workers="$JOBS" corpus > fuzz.log 2>&1); then
    echo "!! $target found a problem: see $work/fuzz.log and $work/crash-* / timeout-* / oom-*"
    grep -E "violation|Fatal error|ERROR: AddressSanitizer|ERROR: libFuzzer|SUMMARY" "$work/fuzz.log" | head -n 5 || true
    failed+=("$target")
  else
    grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$work/fuzz.log" | tr '\n' ' '
    echo
    grep "known issue, tolerated" "$work/fuzz.log" | head -n 3 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found problems in: ${failed[*]}"
  exit 1
fi
echo "fuzzing: ${#TARGETS[@]} targets, ${SECONDS_PER_TARGET}s each, no findings"
