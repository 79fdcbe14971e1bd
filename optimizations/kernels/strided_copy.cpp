#include "optimizations/kernels/strided_copy.h"

#include <vector>

#include "optimizations/kernels/fused.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "optimizations/kernels/strided_copy_cuda.h"
#endif

namespace ditbench {

std::optional<CopyLayout> copy_layout(at::IntArrayRef sizes, at::IntArrayRef src_strides,
                                      at::IntArrayRef dst_strides) {
  struct Dim {
    int64_t size, src, dst;
  };
  std::vector<Dim> dims;
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] != 1) dims.push_back({sizes[d], src_strides[d], dst_strides[d]});
  }
  CopyLayout layout;
  // The run contiguous in both, from the innermost dimension out.
  while (!dims.empty() && dims.back().src == layout.inner && dims.back().dst == layout.inner) {
    layout.inner *= dims.back().size;
    dims.pop_back();
  }
  if (layout.inner == 1 && !dims.empty()) return std::nullopt;
  // Outer dimensions, merged where a dimension steps over exactly the next one in both.
  std::vector<Dim> merged;
  for (const Dim& dim : dims) {
    if (!merged.empty() && merged.back().src == dim.src * dim.size &&
        merged.back().dst == dim.dst * dim.size) {
      merged.back() = {merged.back().size * dim.size, dim.src, dim.dst};
    } else {
      merged.push_back(dim);
    }
  }
  if (merged.size() > static_cast<size_t>(kMaxCopyOuterDims)) return std::nullopt;
  layout.outer = static_cast<int>(merged.size());
  for (size_t d = 0; d < merged.size(); ++d) {
    layout.sizes[d] = merged[d].size;
    layout.src_strides[d] = merged[d].src;
    layout.dst_strides[d] = merged[d].dst;
  }
  return layout;
}

bool try_copy_strided(at::Tensor& dst, const at::Tensor& src) {
#ifdef DITBENCH_HAS_CUDA
  if (!fused_kernels_enabled() || !dst.is_cuda() || !src.is_cuda() ||
      dst.device() != src.device() || dst.sizes() != src.sizes() ||
      dst.scalar_type() != src.scalar_type() || dst.numel() == 0) {
    return false;
  }
  const auto layout = copy_layout(src.sizes(), src.strides(), dst.strides());
  if (!layout) return false;
  const int64_t elem = src.element_size();
  auto aligned = [](int64_t bytes) { return bytes % 16 == 0; };
  if (!aligned(layout->inner * elem) || reinterpret_cast<uintptr_t>(src.data_ptr()) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(dst.data_ptr()) % 16 != 0) {
    return false;
  }
  StridedCopy copy;
  copy.outer = layout->outer;
  copy.inner_vectors = layout->inner * elem / 16;
  for (int d = 0; d < layout->outer; ++d) {
    copy.sizes[d] = layout->sizes[d];
    copy.src_strides[d] = layout->src_strides[d] * elem;
    copy.dst_strides[d] = layout->dst_strides[d] * elem;
    if (!aligned(copy.src_strides[d]) || !aligned(copy.dst_strides[d])) return false;
  }
  c10::cuda::CUDAGuard guard(src.device());
  return strided_copy_cuda(src.data_ptr(), dst.data_ptr(), copy,
                           at::cuda::getCurrentCUDAStream(src.device().index()));
#else
  (void)dst;
  (void)src;
  return false;
#endif
}

void copy_strided(at::Tensor& dst, const at::Tensor& src) {
  if (!try_copy_strided(dst, src)) dst.copy_(src);
}

at::Tensor dense(const at::Tensor& t) {
  if (t.is_contiguous()) return t;
  at::Tensor out = at::empty(t.sizes(), t.options());
  copy_strided(out, t);
  return out;
}

}  // namespace ditbench
