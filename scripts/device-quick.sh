#!/usr/bin/env bash
# The shortest useful GPU pass: build ditbench and the tests, run the 480p step and pipeline
# suites, then the GPU tests, each into $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out/device}"; mkdir -p "$OUT"
BUILD=build-gpu
py=$(command -v python3)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
cmake -S . -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release -DDITBENCH_PYTHON="$py" -DDITBENCH_BENCH=OFF \
  -DDITBENCH_FIXTURES_DIR="$PWD/.fixtures" >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build $BUILD -j "$(nproc)" >"$OUT/build.log" 2>&1 || { grep -E "error" "$OUT/build.log" | head -30; exit 1; }
echo "built at $(date +%T)"
for s in "$@"; do
  $BUILD/ditbench run "suites/$s.json" --out "$OUT/$s" 2>&1 | tail -12
  cp "$OUT/$s/report.md" "$OUT/$s.md" 2>/dev/null
done
echo "suites done at $(date +%T)"
DITBENCH_FIXTURES="$PWD/.fixtures" ctest --test-dir $BUILD -j 8 --timeout 300 --output-on-failure >"$OUT/ctest.log" 2>&1
grep -E "tests passed|Failed|\(Failed\)|Not Run" "$OUT/ctest.log" | head -20
