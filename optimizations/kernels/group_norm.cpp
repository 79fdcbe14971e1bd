#include "optimizations/kernels/group_norm.h"

#include "optimizations/kernels/fused.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "optimizations/kernels/group_norm_cuda.h"
#endif

namespace ditbench {

at::Tensor try_group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                          const at::Tensor& bias, double eps, bool silu,
                          const CausalResample& then) {
#ifdef DITBENCH_HAS_CUDA
  if (!fused_kernels_enabled() || !x.defined() || !x.is_cuda() || x.dim() < 2 || x.numel() == 0 ||
      groups <= 0 || x.size(1) % groups != 0) {
    return {};
  }
  const bool channels_last =
      x.dim() == 5 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast3d);
  if (!(channels_last || (x.is_contiguous() && then.identity()))) return {};
  const auto dtype = kernel_dtype(x.scalar_type());
  if (!dtype || *dtype == KernelDtype::kHalf) return {};
  const int64_t channels = x.size(1);
  for (const at::Tensor* p : {&weight, &bias}) {
    if (!p->defined() || p->scalar_type() != x.scalar_type() || p->device() != x.device() ||
        !p->is_contiguous() || p->numel() != channels) {
      return {};
    }
  }
  const int64_t batch = x.size(0), spatial = x.numel() / (batch * channels);
  c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream(x.device().index());
  if (channels_last) {
    const auto map = video_resample_map(x.sizes(), then);
    if (!map) return {};
    auto workspace =
        at::empty({group_norm_ndhwc_workspace_floats(batch, channels, spatial, groups)},
                  x.options().dtype(at::kFloat));
    auto out = at::empty(then.output_sizes(x.sizes()),
                         x.options().memory_format(at::MemoryFormat::ChannelsLast3d));
    if (!group_norm_ndhwc_cuda(x.data_ptr(), out.data_ptr(), weight.data_ptr(), bias.data_ptr(),
                               workspace.data_ptr<float>(), *dtype, batch, channels, groups,
                               static_cast<float>(eps), silu, *map, stream)) {
      return {};
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
  }
  auto workspace = at::empty({group_norm_workspace_floats(batch, channels, spatial, groups)},
                             x.options().dtype(at::kFloat));
  auto out = at::empty_like(x);
  if (!group_norm_cuda(x.data_ptr(), out.data_ptr(), weight.data_ptr(), bias.data_ptr(),
                       workspace.data_ptr<float>(), *dtype, batch, channels, spatial, groups,
                       static_cast<float>(eps), silu, stream)) {
    return {};
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
#else
  (void)x, (void)groups, (void)weight, (void)bias, (void)eps, (void)silu, (void)then;
  return {};
#endif
}

}  // namespace ditbench
