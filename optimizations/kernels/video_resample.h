#pragma once
// Causal nearest-neighbour up-sampling and replicate padding of channels-last video activations
// in one gather (video_resample_cuda.h), for the causal 3-D VAE decoders: the copy in front of
// every 3x3x3 convolution, and the up-sampler's interpolation with it; and the convolutions' bias
// added over the channels of a channels-last output.
#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "optimizations/kernels/video_resample_map.h"

namespace ditbench {

// Causal up-sampling of a [N, C, F, H, W] clip by `scale` (time, height, width), the first frame
// staying single (F -> 1 + s_t (F - 1)), then replicate padding: `pad_frames` copies of the first
// frame in front, `pad_height` rows and `pad_width` columns on each side.
struct CausalResample {
  std::array<int64_t, 3> scale{1, 1, 1};
  int64_t pad_frames = 0, pad_height = 0, pad_width = 0;

  bool identity() const {
    return scale == std::array<int64_t, 3>{1, 1, 1} && pad_frames == 0 && pad_height == 0 &&
           pad_width == 0;
  }
  // [N, C, F', H', W'] of an input of these sizes.
  std::vector<int64_t> output_sizes(at::IntArrayRef input) const;
};

// The kernels' index map of `resample` for an input of these sizes ([N, C, F, H, W]); nothing
// when a size or scale of the input or output exceeds the kernels' 32-bit indices.
std::optional<VideoResample> video_resample_map(at::IntArrayRef input,
                                                const CausalResample& resample);

// `resample` of x in one kernel, for x: channels-last ([N, C, F, H, W] in
// at::MemoryFormat::ChannelsLast3d) float32 or bfloat16 on a GPU, C a multiple of 16 bytes;
// the result is channels-last. Undefined when the kernel does not serve (fused_kernels_enabled()
// off, no CUDA, another layout or dtype): the caller runs ATen's interpolation and padding, which
// give the same values (a copy).
at::Tensor try_causal_resample(const at::Tensor& x, const CausalResample& resample);

// y += bias over y's channels (dim 1) in place, for y: channels-last [N, C, F, H, W] float32 or
// bfloat16 on a GPU and bias: [C] of its dtype and device, C a multiple of 16 bytes whose 16-byte
// vectors divide 256: what ATen adds after a cuDNN convolution (in float32, rounded once), in one
// vectorized pass. False, changing nothing, when the kernel does not serve.
bool try_add_channel_bias_(const at::Tensor& y, const at::Tensor& bias);

}  // namespace ditbench
