#include "optimizations/kernels/video_resample.h"

#include "optimizations/kernels/fused.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "optimizations/kernels/video_resample_cuda.h"
#endif

namespace ditbench {

std::vector<int64_t> CausalResample::output_sizes(at::IntArrayRef input) const {
  return {input[0], input[1], 1 + scale[0] * (input[2] - 1) + pad_frames,
          scale[1] * input[3] + 2 * pad_height, scale[2] * input[4] + 2 * pad_width};
}

std::optional<VideoResample> video_resample_map(at::IntArrayRef input,
                                                const CausalResample& resample) {
  constexpr int64_t kLimit = int64_t{1} << 30;
  for (int64_t size : resample.output_sizes(input)) {
    if (size > kLimit) return std::nullopt;
  }
  for (int64_t size :
       {input[2], input[3], input[4], resample.scale[0], resample.scale[1], resample.scale[2],
        resample.pad_frames, resample.pad_height, resample.pad_width}) {
    if (size > kLimit || size < 0) return std::nullopt;
  }
  for (int64_t scale : resample.scale) {
    if (scale < 1) return std::nullopt;
  }
  VideoResample map;
  map.frames = static_cast<int>(input[2]);
  map.height = static_cast<int>(input[3]);
  map.width = static_cast<int>(input[4]);
  map.scale_t = static_cast<int>(resample.scale[0]);
  map.scale_h = static_cast<int>(resample.scale[1]);
  map.scale_w = static_cast<int>(resample.scale[2]);
  map.pad_t = static_cast<int>(resample.pad_frames);
  map.pad_h = static_cast<int>(resample.pad_height);
  map.pad_w = static_cast<int>(resample.pad_width);
  return map;
}

at::Tensor try_causal_resample(const at::Tensor& x, const CausalResample& resample) {
#ifdef DITBENCH_HAS_CUDA
  if (!fused_kernels_enabled() || !x.defined() || !x.is_cuda() || x.dim() != 5 || x.numel() == 0 ||
      !x.is_contiguous(at::MemoryFormat::ChannelsLast3d)) {
    return {};
  }
  const auto dtype = kernel_dtype(x.scalar_type());
  if (!dtype || *dtype == KernelDtype::kHalf) return {};
  const auto map = video_resample_map(x.sizes(), resample);
  if (!map) return {};
  c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty(resample.output_sizes(x.sizes()),
                       x.options().memory_format(at::MemoryFormat::ChannelsLast3d));
  if (!video_resample_cuda(x.data_ptr(), out.data_ptr(), *dtype, x.size(0), x.size(1), *map,
                           at::cuda::getCurrentCUDAStream(x.device().index()))) {
    return {};
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
#else
  (void)x, (void)resample;
  return {};
#endif
}

bool try_add_channel_bias_(const at::Tensor& y, const at::Tensor& bias) {
#ifdef DITBENCH_HAS_CUDA
  if (!fused_kernels_enabled() || !y.defined() || !y.is_cuda() || y.dim() != 5 ||
      !y.is_contiguous(at::MemoryFormat::ChannelsLast3d) || !bias.defined() ||
      bias.scalar_type() != y.scalar_type() || bias.device() != y.device() ||
      !bias.is_contiguous() || bias.numel() != y.size(1)) {
    return false;
  }
  const auto dtype = kernel_dtype(y.scalar_type());
  if (!dtype || *dtype == KernelDtype::kHalf) return false;
  c10::cuda::CUDAGuard guard(y.device());
  if (!channel_bias_cuda(y.data_ptr(), bias.data_ptr(), *dtype, y.numel() / y.size(1), y.size(1),
                         at::cuda::getCurrentCUDAStream(y.device().index()))) {
    return false;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return true;
#else
  (void)y, (void)bias;
  return false;
#endif
}

}  // namespace ditbench
