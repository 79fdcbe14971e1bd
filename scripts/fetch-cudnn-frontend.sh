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
PY="${DITBENCH_PYTHON:-.venv/bin/python}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-cudnn-frontend: nvidia-cudnn-frontend==$VERSION"
"$PY" -m pip download --quiet --no-deps -d "$tmp" "nvidia-cudnn-frontend==$VERSION"
rm -rf "$DEST" && mkdir -p "$DEST"
# Only the headers: the wheel's Python module and kernels are not needed.
"$PY" - "$tmp" "$DEST" <<'EOF'
import glob, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(src + "/nvidia_cudnn_frontend-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    z.extractall(dest, [n for n in z.namelist() if n.startswith("include/")])
EOF
echo "$VERSION" > "$DEST/version"
