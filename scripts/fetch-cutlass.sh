#!/usr/bin/env bash
# Unpacks CUTLASS's C++ headers (cute/, cutlass/ and cutlass/util/packed_stride.hpp) and the
# Hopper FMHA collectives that CUTLASS ships as its example 88 (as hopper_fmha/) from PyPI's
# nvidia-cutlass wheel into .deps/cutlass/include (git-ignored), keeping them also as
# .deps/cutlass/headers.tar.xz (1 MB against 27 MB unpacked), which is what travels to a GPU
# machine without a package registry: there this script only unpacks it. The FP8 GEMM kernels
# (optimizations/quant/fp8_gemm_sm90_*.cu) and the cutlass_fmha attention kernels
# (optimizations/kernels/fmha_sm90*.cu) compile against them; without them fp8_dynamic runs
# at::_scaled_mm and cutlass_fmha says it was not built. Called by setup.sh, prepare-device.sh
# and device.sh. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${DITBENCH_CUTLASS_VERSION:-4.2.0.0}"
DEST=.deps/cutlass
# The last header each part brings: a copy without one of them (an older layout) is fetched again.
complete() {
  [ -f "$DEST/include/cutlass/util/packed_stride.hpp" ] &&
    [ -f "$DEST/include/hopper_fmha/kernel/fmha_kernel_builder.hpp" ]
}
if grep -qx "$VERSION" "$DEST/version" 2>/dev/null; then
  complete && exit 0
  if [ -f "$DEST/headers.tar.xz" ] &&
    tar -tJf "$DEST/headers.tar.xz" hopper_fmha/kernel/fmha_kernel_builder.hpp >/dev/null 2>&1; then
    rm -rf "$DEST/include" && mkdir -p "$DEST/include"
    tar -xJf "$DEST/headers.tar.xz" -C "$DEST/include"
    exit 0
  fi
fi
bash scripts/unpack-wheel.sh "nvidia-cutlass==$VERSION" "$DEST/include" \
  cutlass_library/source/include/cute/=cute cutlass_library/source/include/cutlass/=cutlass \
  cutlass_library/source/tools/util/include/cutlass/util/packed_stride.hpp=cutlass/util/packed_stride.hpp \
  cutlass_library/source/examples/88_hopper_fmha/collective/=hopper_fmha/collective \
  cutlass_library/source/examples/88_hopper_fmha/kernel/=hopper_fmha/kernel \
  cutlass_library/source/examples/88_hopper_fmha/device/=hopper_fmha/device
complete
tar -cJf "$DEST/headers.tar.xz" -C "$DEST/include" cute cutlass hopper_fmha
echo "$VERSION" > "$DEST/version"
