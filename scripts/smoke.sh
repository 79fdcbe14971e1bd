#!/usr/bin/env bash
# Installs what is missing, builds, and runs the smoke suite on the embedded default model
# (tiny-shapes on the CPU), printing the report table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out="${1:-results/smoke}"
"${DITBENCH_BUILD_DIR:-build}/ditbench" run suites/smoke.json --out "$out"
cat "$out/report.md"
