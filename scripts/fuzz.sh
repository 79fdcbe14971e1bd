#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang in build-fuzz and runs each for a bounded
# time from its seed corpus (tests/fuzz/corpus_*). New inputs go to build-fuzz/corpus_*, never
# into the committed corpus; a crash leaves its input in build-fuzz/artifacts/ and fails the run.
#   FUZZ_SECONDS  seconds per target (default 60)
#   FUZZ_JOBS     ninja jobs (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
BUILD_DIR="${DITBENCH_FUZZ_BUILD_DIR:-build-fuzz}"
CLANG="${DITBENCH_FUZZ_CXX:-clang++}"
command -v "$CLANG" >/dev/null || { echo "fuzz: $CLANG not found (apt-get install clang)" >&2; exit 2; }

# CPU libraries only: the parsers never touch a GPU, and clang need not compile CUDA here.
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="$CLANG" -DDITBENCH_FUZZ=ON -DDITBENCH_CPU_ONLY=ON \
  -DDITBENCH_TESTS=OFF -DDITBENCH_BENCH=OFF -DDITBENCH_PCH=OFF \
  -DDITBENCH_PYTHON="$PWD/.venv/bin/python" >/dev/null
cmake --build "$BUILD_DIR" -j "${FUZZ_JOBS:-2}" --target fuzz_safetensors fuzz_suite

# LibTorch is not built with ASan: its own allocations and one-definition quirks are not ours.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0:detect_leaks=0:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$BUILD_DIR/artifacts"
status=0
for target in safetensors suite; do
  corpus="$BUILD_DIR/corpus_$target"
  mkdir -p "$corpus"
  echo "fuzz: $target for ${SECONDS_PER_TARGET} s"
  if ! "$BUILD_DIR/tests/fuzz/fuzz_$target" "$corpus" "tests/fuzz/corpus_$target" \
      -max_total_time="$SECONDS_PER_TARGET" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$BUILD_DIR/artifacts/${target}-" -print_final_stats=1 \
      >"$BUILD_DIR/fuzz_$target.log" 2>&1; then
    echo "fuzz: $target FAILED; see $BUILD_DIR/fuzz_$target.log and $BUILD_DIR/artifacts/" >&2
    tail -n 40 "$BUILD_DIR/fuzz_$target.log" >&2
    status=1
  else
    grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$BUILD_DIR/fuzz_$target.log" |
      sed "s/^/fuzz: $target: /"
  fi
done
exit $status
