#!/usr/bin/env bash
# Installs what is missing (Debian packages, a virtual environment with PyPI's torch), then
# configures and builds ditbench in build/. Safe to run again: it only does what is not done.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="${DITBENCH_TORCH_VERSION:-2.11.0}"
BUILD_DIR="${DITBENCH_BUILD_DIR:-build}"

apt_packages=(build-essential cmake ninja-build git pkg-config python3 python3-venv python3-pip
              libgtest-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev)
# Frame and video files: PNG frames through OpenCV, MP4 (H.264 by libx264, which Debian's
# libavcodec links) through FFmpeg's libraries. About 110 packages, a minute to install.
apt_packages+=(libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev
               libavformat-dev libavcodec-dev libavutil-dev libswscale-dev)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# LibTorch from PyPI's torch, the same recipe as on the GPU machine and on users' machines.
if ! .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('${TORCH_VERSION}') else 1)" 2>/dev/null; then
  echo "setup: creating .venv with torch==${TORCH_VERSION}"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet "torch==${TORCH_VERSION}" numpy
fi

# The cuDNN frontend's headers (cudnn_fp8 attention) from PyPI, into .deps/.
bash scripts/fetch-cudnn-frontend.sh
# CUTLASS's headers (the FP8 GEMM kernels) from PyPI, into .deps/.
bash scripts/fetch-cutlass.sh

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDITBENCH_PYTHON="$PWD/.venv/bin/python"
cmake --build "$BUILD_DIR" -j "$(nproc)"
