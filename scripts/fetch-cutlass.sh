#!/usr/bin/env bash
# Unpacks CUTLASS's C++ headers (cute/, cutlass/ and cutlass/util/packed_stride.hpp) from PyPI's
# nvidia-cutlass wheel into .deps/cutlass/include (git-ignored), keeping them also as
# .deps/cutlass/headers.tar.xz (1 MB against 27 MB unpacked), which is what travels to a GPU
# machine without a package registry: there this script only unpacks it. The FP8 GEMM kernels
# (optimizations/quant/fp8_gemm_sm90_*.cu) compile against them; without them fp8_dynamic runs
# at::_scaled_mm. Called by setup.sh, prepare-device.sh and device.sh. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${DITBENCH_CUTLASS_VERSION:-4.2.0.0}"
DEST=.deps/cutlass
if grep -qx "$VERSION" "$DEST/version" 2>/dev/null; then
  [ -f "$DEST/include/cutlass/util/packed_stride.hpp" ] && exit 0
  if [ -f "$DEST/headers.tar.xz" ]; then
    rm -rf "$DEST/include" && mkdir -p "$DEST/include"
    tar -xJf "$DEST/headers.tar.xz" -C "$DEST/include"
    exit 0
  fi
fi
bash scripts/unpack-wheel.sh "nvidia-cutlass==$VERSION" "$DEST/include" \
  cutlass_library/source/include/cute/=cute cutlass_library/source/include/cutlass/=cutlass \
  cutlass_library/source/tools/util/include/cutlass/util/packed_stride.hpp=cutlass/util/packed_stride.hpp
tar -cJf "$DEST/headers.tar.xz" -C "$DEST/include" cute cutlass
echo "$VERSION" > "$DEST/version"
