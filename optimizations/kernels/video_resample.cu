#include <cuda_bf16.h>

#include "optimizations/kernels/float_convert.cuh"
#include "optimizations/kernels/video_resample.cuh"
#include "optimizations/kernels/video_resample_cuda.h"

namespace ditbench {
namespace {

// Grid (x: H', y: N * F'): each thread copies 16-byte vectors of channels from the input
// positions its output positions map to.
template <typename T>
__global__ void __launch_bounds__(kGatherThreads)
    video_resample_kernel(const T* __restrict__ x, T* __restrict__ out, int lanes,
                          VideoResample map) {
  constexpr int kVec = 16 / sizeof(T);
  for_each_row_vector<kVec>(map, lanes, x, out, [](int, const T* in, T* to) {
    *reinterpret_cast<uint4*>(to) = *reinterpret_cast<const uint4*>(in);
  });
}

// y[m, c] += bias[c] over the rows of a channels-last tensor, a lane (16 bytes of channels) a
// thread; the grid's stride is a multiple of the lanes, so each thread keeps its lane's bias.
template <typename T>
__global__ void __launch_bounds__(kGatherThreads)
    channel_bias_kernel(T* __restrict__ y, const T* __restrict__ bias, int lanes, int64_t vectors) {
  constexpr int kVec = 16 / sizeof(T);
  using Vec = Pack<T, kVec>;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kGatherThreads + threadIdx.x;
  const Vec b = reinterpret_cast<const Vec*>(bias)[first % lanes];
  for (int64_t i = first; i < vectors; i += static_cast<int64_t>(gridDim.x) * kGatherThreads) {
    Vec v = reinterpret_cast<Vec*>(y)[i];
#pragma unroll
    for (int j = 0; j < kVec; ++j) v.v[j] = from_float<T>(to_float(v.v[j]) + to_float(b.v[j]));
    reinterpret_cast<Vec*>(y)[i] = v;
  }
}

template <typename T>
bool launch(const T* x, T* out, int64_t batch, int64_t channels, const VideoResample& map,
            cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  if (channels % kVec != 0 || reinterpret_cast<uintptr_t>(x) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(out) % 16 != 0 || !kernel_has_image(video_resample_kernel<T>)) {
    return false;
  }
  dim3 grid;
  if (!gather_grid(map, batch, channels / kVec, &grid)) return false;
  if (grid.x == 0 || grid.y == 0) return true;
  video_resample_kernel<T>
      <<<grid, kGatherThreads, 0, stream>>>(x, out, static_cast<int>(channels / kVec), map);
  return cudaGetLastError() == cudaSuccess;
}

template <typename T>
bool launch_bias(T* y, const T* bias, int64_t rows, int64_t channels, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t lanes = channels / kVec;
  if (channels % kVec != 0 || lanes == 0 || kGatherThreads % lanes != 0 ||
      reinterpret_cast<uintptr_t>(y) % 16 != 0 || reinterpret_cast<uintptr_t>(bias) % 16 != 0 ||
      !kernel_has_image(channel_bias_kernel<T>)) {
    return false;
  }
  const int64_t vectors = rows * lanes;
  if (vectors == 0) return true;
  channel_bias_kernel<T>
      <<<grid_stride_blocks(vectors, kGatherThreads, 16), kGatherThreads, 0, stream>>>(
          y, bias, static_cast<int>(lanes), vectors);
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace

bool video_resample_cuda(const void* x, void* out, KernelDtype dtype, int64_t batch,
                         int64_t channels, const VideoResample& map, cudaStream_t stream) {
  switch (dtype) {
    case KernelDtype::kFloat:
      return launch(static_cast<const float*>(x), static_cast<float*>(out), batch, channels, map,
                    stream);
    case KernelDtype::kBFloat16:
      return launch(static_cast<const __nv_bfloat16*>(x), static_cast<__nv_bfloat16*>(out), batch,
                    channels, map, stream);
    case KernelDtype::kHalf:  // not served
      return false;
  }
  return false;
}

bool channel_bias_cuda(void* y, const void* bias, KernelDtype dtype, int64_t rows, int64_t channels,
                       cudaStream_t stream) {
  switch (dtype) {
    case KernelDtype::kFloat:
      return launch_bias(static_cast<float*>(y), static_cast<const float*>(bias), rows, channels,
                         stream);
    case KernelDtype::kBFloat16:
      return launch_bias(static_cast<__nv_bfloat16*>(y), static_cast<const __nv_bfloat16*>(bias),
                         rows, channels, stream);
    case KernelDtype::kHalf:  // not served
      return false;
  }
  return false;
}

}  // namespace ditbench
