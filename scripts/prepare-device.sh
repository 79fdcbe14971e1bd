#!/usr/bin/env bash
# Run on a development machine before sending the tree to a GPU machine that has no package
# registry: unpacks the header-only CLI11 Debian package, the cuDNN frontend's headers (PyPI's
# nvidia-cudnn-frontend) and CUTLASS's (PyPI's nvidia-cutlass, also packed) into .deps/ and copies
# the reference fixtures into .fixtures/ (both git-ignored; name them in the transfer).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f .deps/usr/include/CLI/CLI.hpp ]; then
  mkdir -p .deps
  (cd .deps && apt-get download libcli11-dev && for f in *.deb; do dpkg -x "$f" .; done)
fi
bash scripts/fetch-cudnn-frontend.sh
bash scripts/fetch-cutlass.sh
git rev-parse --short=12 HEAD > .deps/git-commit 2>/dev/null || true
fixtures="${DITBENCH_FIXTURES:-../shared/fixtures}"
if [ -d "$fixtures" ]; then
  rm -rf .fixtures && cp -r "$fixtures" .fixtures && chmod -R u+w .fixtures
fi
# --snapshot: also export the committed tree (HEAD) with .deps and .fixtures into .snapshot/, so a
# GPU machine can build exactly a commit while the working tree holds edits in progress (carry
# .snapshot and run `cd .snapshot && bash scripts/device.sh ...` there).
if [ "${1:-}" = "--snapshot" ]; then
  rm -rf .snapshot && mkdir -p .snapshot
  git archive HEAD | tar -x -C .snapshot
  # CUTLASS's headers travel packed (device.sh's build unpacks them).
  mkdir -p .snapshot/.deps && tar -C .deps --exclude=./cutlass/include -c . | tar -x -C .snapshot/.deps
  [ -d .fixtures ] && cp -r .fixtures .snapshot/.fixtures
  echo "exported $(cat .deps/git-commit) into .snapshot"
fi
echo "prepared .deps and .fixtures"
