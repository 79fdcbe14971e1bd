#pragma once
// Device helpers of the channels-last video kernels (video_resample.cu, the channels-last
// GroupNorm of group_norm.cu): one block row (grid y) per output frame of one sample, threads over
// the frame's positions and 16-byte channel vectors ("lanes"), each output position mapped to the
// input position it reads by a VideoResample.
#include <cuda_runtime.h>

#include <cstdint>

#include "optimizations/kernels/video_resample_cuda.h"

namespace ditbench {

constexpr int kGatherThreads = 256;

// Where one thread's vector comes from: the input position (h * W + w within its frame) and the
// channel vector.
struct PackSource {
  int64_t position;
  int lane;
};

// The packs (output position, channel vector) of the output frame of block row blockIdx.y.
struct FramePacks {
  VideoResample map;
  int lanes, out_frames, out_width, count, sample, frame;

  __device__ FramePacks(const VideoResample& m, int lanes_)
      : map(m),
        lanes(lanes_),
        out_frames(m.out_frames()),
        out_width(m.out_width()),
        count(m.out_height() * m.out_width() * lanes_),
        sample(static_cast<int>(blockIdx.y) / m.out_frames()),
        frame(static_cast<int>(blockIdx.y) % m.out_frames()) {}
  // Element offsets of the input frame this output frame copies, and of the output frame.
  __device__ int64_t source_frame_offset(int channels) const {
    return (static_cast<int64_t>(sample) * map.frames + map.source_frame(frame)) * map.height *
           map.width * channels;
  }
  __device__ int64_t frame_offset(int channels) const {
    return static_cast<int64_t>(blockIdx.y) * (count / lanes) * channels;
  }
  __device__ PackSource source(int p) const {
    const int q = p / lanes;
    return {static_cast<int64_t>(map.source_row(q / out_width)) * map.width +
                map.source_column(q % out_width),
            p % lanes};
  }
};

// The launch grid of a gather over `batch` samples; false when it does not fit (more than 65,535
// output frames in all, or a frame of 2^31 vectors).
inline bool gather_grid(const VideoResample& map, int64_t batch, int64_t lanes, dim3* grid) {
  const int64_t frames = batch * map.out_frames();
  const int64_t packs = static_cast<int64_t>(map.out_height()) * map.out_width() * lanes;
  if (frames > 65535 || packs >= (int64_t{1} << 31)) return false;
  *grid = dim3(static_cast<unsigned>((packs + kGatherThreads - 1) / kGatherThreads),
               static_cast<unsigned>(frames));
  return true;
}

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

}  // namespace ditbench
