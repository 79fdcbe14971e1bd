#!/usr/bin/env bash
# Builds, tests and benchmarks ditbench on a GPU machine in one go (LibTorch from the system's
# torch, CUDA for sm_90a). Usage: scripts/device.sh [build|test|bench|all|e2e] [extra suites...]
# Results and logs go to $OUT (default ./out/device). `e2e` (optional, not part of `all`) replays
# the tiny-shapes end-to-end references on the GPU in bf16 (and float32) against their float32 CPU
# results: $OUT/e2e-cuda-bfloat16.md and $OUT/e2e-cuda-float32.md.
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"; shift || true
OUT="${OUT:-$PWD/out/device}"; mkdir -p "$OUT"
BUILD="${DITBENCH_BUILD_DIR:-build-gpu}"
export DITBENCH_FIXTURES="${DITBENCH_FIXTURES:-$PWD/.fixtures}"
log() { echo "[device $(date +%H:%M:%S)] $*"; }

build() {
  local py; py=$(command -v python3)
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDITBENCH_PYTHON="$py" \
    -DCMAKE_CUDA_ARCHITECTURES=90a -DDITBENCH_FIXTURES_DIR="$DITBENCH_FIXTURES" >"$OUT/cmake.log" 2>&1 \
    || { tail -40 "$OUT/cmake.log"; return 1; }
  grep "ditbench:" "$OUT/cmake.log"
  cmake --build "$BUILD" -j "$(nproc)" >"$OUT/build.log" 2>&1 || { grep -E "error|Error" "$OUT/build.log" | head -40; return 1; }
  log "built"; "$BUILD/ditbench" --version; "$BUILD/ditbench" list || true
}

test_all() {
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  ctest --test-dir "$BUILD" --output-on-failure -j 4 --timeout 600 >"$OUT/ctest.log" 2>&1
  local rc=$?
  tail -30 "$OUT/ctest.log"
  return $rc
}

bench() {
  # DITBENCH_BENCHES (space-separated names, e.g. "bench_linear") limits the micro-benchmarks run.
  for b in "$BUILD"/bench/bench_*; do
    [ -x "$b" ] || continue
    if [ -n "${DITBENCH_BENCHES:-}" ] && [[ " $DITBENCH_BENCHES " != *" $(basename "$b") "* ]]; then
      continue
    fi
    log "running $(basename "$b")"
    "$b" --benchmark_out="$OUT/$(basename "$b").json" --benchmark_out_format=json 2>&1 | tail -25
  done
  for suite in "$@"; do
    log "running suite $suite"
    "$BUILD/ditbench" run "$suite" --out "$OUT/$(basename "$suite" .json)" 2>&1 | tail -40
    cp "$OUT/$(basename "$suite" .json)/report.md" "$OUT/$(basename "$suite" .json).md" 2>/dev/null
  done
}

e2e() {
  for dtype in bfloat16 float32; do
    log "end-to-end replay, cuda $dtype"
    "$BUILD/ditbench" parity "$DITBENCH_FIXTURES/e2e" --checkpoint assets/tiny-shapes \
      --device cuda --dtype "$dtype" --out "$OUT/e2e-cuda-$dtype.md" >/dev/null || return 1
    cat "$OUT/e2e-cuda-$dtype.md"
  done
}

rc=0
case "$mode" in
  build) build || rc=$? ;;
  test) build && test_all || rc=$? ;;
  bench) build && bench "$@" || rc=$? ;;
  all) build || exit 1; test_all || rc=$?; bench "$@" ;;
  e2e) build && e2e || rc=$? ;;
  *) echo "usage: $0 [build|test|bench|all|e2e] [suites...]"; exit 2 ;;
esac
exit $rc
