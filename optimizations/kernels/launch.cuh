#pragma once
// Host-side launch helpers shared by the CUDA kernels of this folder.
#include <cuda_runtime.h>

#include <cstdint>

namespace ditbench {

// Whether the device has an image of `kernel` (clearing the error when not: the caller then runs
// ATen's ops).
template <typename Kernel>
bool kernel_has_image(Kernel kernel) {
  cudaFuncAttributes attributes;
  if (cudaFuncGetAttributes(&attributes, kernel) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return true;
}

// kernel_has_image for a kernel known at compile time, asked once per kernel.
template <auto kernel>
bool has_image() {
  static const bool ok = kernel_has_image(kernel);
  return ok;
}

// Blocks of `threads` threads of `kernel` (which has an image for the device) resident at once on
// the current device: the grid of a kernel whose blocks walk their work with a grid stride. 0 when
// the runtime cannot say (the error cleared).
template <typename Kernel>
int64_t resident_blocks(Kernel kernel, int threads) {
  int device = 0, sms = 0, per_sm = 0;
  if (cudaGetDevice(&device) ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0)) {
    cudaGetLastError();
    return 0;
  }
  return static_cast<int64_t>(sms) * (per_sm > 0 ? per_sm : 1);
}

// The current device's compute capability as major * 10 + minor (90 for an H100), or -1 without a
// device (the error cleared). sm_90a kernels run on 90 only.
inline int current_compute_capability() {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
  return major * 10 + minor;
}

// Blocks of `threads` for a grid-stride loop over `items`: one item a thread, at most
// `blocks_per_sm` blocks per SM of the current device.
inline unsigned grid_stride_blocks(int64_t items, int threads, int64_t blocks_per_sm) {
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const int64_t wanted = (items + threads - 1) / threads, most = blocks_per_sm * sms;
  return static_cast<unsigned>(wanted < most ? wanted : most);
}

}  // namespace ditbench
