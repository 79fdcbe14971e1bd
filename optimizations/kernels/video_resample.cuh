#pragma once
// Device helpers of the channels-last video kernels (video_resample.cu, the channels-last
// GroupNorm of group_norm.cu): one block per output row of one frame of one sample, threads over
// the row's positions and 16-byte channel vectors ("lanes"), each output position mapped to the
// input position it reads by a VideoResample.
#include <cuda_runtime.h>

#include <cstdint>

#include "optimizations/kernels/launch.cuh"
#include "optimizations/kernels/video_resample_cuda.h"

namespace ditbench {

constexpr int kGatherThreads = 256;

// Calls op(lane, in, out) for every 16-byte vector (kVec elements, channel vector `lane` of
// `lanes`) of the output row of this block: grid (x: H', y: N * F'), `out` the vector's place in
// the output and `in` the input vector it maps to. When the lanes divide the block, each thread
// keeps one lane (per-channel values can stay in registers) and walks the row's positions
// without dividing.
template <int kVec, typename T, typename Op>
__device__ __forceinline__ void for_each_row_vector(const VideoResample& map, int lanes,
                                                    const T* __restrict__ x, T* __restrict__ out,
                                                    Op&& op) {
  const int out_frames = map.out_frames(), out_width = map.out_width();
  const int sample = static_cast<int>(blockIdx.y) / out_frames;
  const int frame = static_cast<int>(blockIdx.y) % out_frames;
  const int64_t channels = static_cast<int64_t>(lanes) * kVec;
  const T* source =
      x + ((static_cast<int64_t>(sample) * map.frames + map.source_frame(frame)) * map.height +
           map.source_row(static_cast<int>(blockIdx.x))) *
              map.width * channels;
  T* row = out + (static_cast<int64_t>(blockIdx.y) * map.out_height() + blockIdx.x) * out_width *
                     channels;
  if (kGatherThreads % lanes == 0) {
    const int lane = threadIdx.x % lanes, step = kGatherThreads / lanes;
#pragma unroll 4
    for (int w = threadIdx.x / lanes; w < out_width; w += step) {
      op(lane, source + map.source_column(w) * channels + lane * kVec,
         row + (static_cast<int64_t>(w) * lanes + lane) * kVec);
    }
  } else {
    for (int i = threadIdx.x; i < out_width * lanes; i += kGatherThreads) {
      const int w = i / lanes, lane = i - w * lanes;
      op(lane, source + map.source_column(w) * channels + lane * kVec,
         row + static_cast<int64_t>(i) * kVec);
    }
  }
}

// The launch grid of a row gather over `batch` samples; false when it does not fit (more than
// 65,535 output frames in all, or a row of 2^31 vectors).
inline bool gather_grid(const VideoResample& map, int64_t batch, int64_t lanes, dim3* grid) {
  const int64_t frames = batch * map.out_frames();
  if (frames > 65535 || static_cast<int64_t>(map.out_width()) * lanes >= (int64_t{1} << 31)) {
    return false;
  }
  *grid = dim3(static_cast<unsigned>(map.out_height()), static_cast<unsigned>(frames));
  return true;
}

}  // namespace ditbench
