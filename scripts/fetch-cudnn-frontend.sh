#!/usr/bin/env bash
# Unpacks the header-only cuDNN frontend (C++ graph API) from PyPI's nvidia-cudnn-frontend wheel
# into .deps/cudnn_frontend/include (git-ignored). The cudnn_fp8 attention backend compiles
# against it; without it that backend reports "built without the cuDNN frontend". Called by
# setup.sh and prepare-device.sh (the GPU machine has no package registry: .deps travels there).
# Safe to run again: it only does what is not done.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${DITBENCH_CUDNN_FRONTEND_VERSION:-1.32.0}"
DEST=.deps/cudnn_frontend
if [ -f "$DEST/include/cudnn_frontend.h" ] && grep -q "$VERSION" "$DEST/version" 2>/dev/null; then
  exit 0
fi
# Only the headers: the wheel's Python module and kernels are not needed.
bash scripts/unpack-wheel.sh "nvidia-cudnn-frontend==$VERSION" "$DEST" include/
echo "$VERSION" > "$DEST/version"
