#!/usr/bin/env bash
# Installs, builds and runs every test (the README's test command; CI runs it too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir "${DITBENCH_BUILD_DIR:-build}" --output-on-failure -j "$(nproc)"
