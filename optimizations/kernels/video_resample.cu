#include <cuda_bf16.h>

#include "optimizations/kernels/video_resample.cuh"
#include "optimizations/kernels/video_resample_cuda.h"

namespace ditbench {
namespace {

// Grid (x: blocks over one output frame's positions and channel vectors, y: N * F'): each thread
// copies 16-byte vectors of channels from the input position its output position maps to.
template <typename T>
__global__ void __launch_bounds__(kGatherThreads)
    video_resample_kernel(const T* __restrict__ x, T* __restrict__ out, int channels,
                          VideoResample map) {
  using Vec = uint4;  // 16 bytes
  constexpr int kVec = 16 / sizeof(T);
  const FramePacks packs(map, channels / kVec);
  const T* source = x + packs.source_frame_offset(channels);
  T* frame = out + packs.frame_offset(channels);
  for (int p = blockIdx.x * kGatherThreads + threadIdx.x; p < packs.count;
       p += gridDim.x * kGatherThreads) {
    const PackSource s = packs.source(p);
    *reinterpret_cast<Vec*>(frame + static_cast<int64_t>(p) * kVec) =
        *reinterpret_cast<const Vec*>(source + s.position * channels + s.lane * kVec);
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
      <<<grid, kGatherThreads, 0, stream>>>(x, out, static_cast<int>(channels), map);
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace

bool video_resample_cuda(const void* x, void* out, GatherDtype dtype, int64_t batch,
                         int64_t channels, const VideoResample& map, cudaStream_t stream) {
  switch (dtype) {
    case GatherDtype::float32:
      return launch(static_cast<const float*>(x), static_cast<float*>(out), batch, channels, map,
                    stream);
    case GatherDtype::bfloat16:
      return launch(static_cast<const __nv_bfloat16*>(x), static_cast<__nv_bfloat16*>(out), batch,
                    channels, map, stream);
  }
  return false;
}

}  // namespace ditbench
