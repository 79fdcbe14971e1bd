#pragma once
// The index map of the channels-last video gathers (video_resample_cuda.h, group_norm_cuda.h), a
// plain struct shared by the host code and the kernels.
#ifdef __CUDACC__
#define DITBENCH_HOST_DEVICE __host__ __device__
#else
#define DITBENCH_HOST_DEVICE
#endif

namespace ditbench {

// Causal nearest-neighbour up-sampling of a [F, H, W] clip by (scale_t, scale_h, scale_w) in which
// the first frame stays single (F -> 1 + scale_t (F - 1), H -> scale_h H, W -> scale_w W), then
// replicate padding: pad_t copies of the first frame in front, pad_h rows and pad_w columns on
// each side. Every output position copies one input position.
struct VideoResample {
  int frames = 0, height = 0, width = 0;  // the input's
  int scale_t = 1, scale_h = 1, scale_w = 1;
  int pad_t = 0, pad_h = 0, pad_w = 0;

  DITBENCH_HOST_DEVICE int out_frames() const { return 1 + scale_t * (frames - 1) + pad_t; }
  DITBENCH_HOST_DEVICE int out_height() const { return scale_h * height + 2 * pad_h; }
  DITBENCH_HOST_DEVICE int out_width() const { return scale_w * width + 2 * pad_w; }
  // The input frame, row and column that output frame f, row h and column w copy.
  DITBENCH_HOST_DEVICE int source_frame(int f) const {
    const int up = clamp(f - pad_t, 1 + scale_t * (frames - 1));
    return up == 0 ? 0 : 1 + (up - 1) / scale_t;
  }
  DITBENCH_HOST_DEVICE int source_row(int h) const {
    return clamp(h - pad_h, scale_h * height) / scale_h;
  }
  DITBENCH_HOST_DEVICE int source_column(int w) const {
    return clamp(w - pad_w, scale_w * width) / scale_w;
  }
  DITBENCH_HOST_DEVICE static int clamp(int i, int size) {
    return i < 0 ? 0 : (i >= size ? size - 1 : i);
  }
};

}  // namespace ditbench
