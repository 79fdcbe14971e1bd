#include "optimizations/kernels/attention_merge.h"

#include "optimizations/kernels/fused.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "optimizations/kernels/attention_merge_cuda.h"
#endif

namespace ditbench {

#ifdef DITBENCH_HAS_CUDA
namespace {

Bhsd bhsd_of(const at::Tensor& t) {
  Bhsd b;
  b.data = t.data_ptr();
  b.batch = t.size(0), b.heads = t.size(1), b.seq = t.size(2), b.dim = t.dim() == 4 ? t.size(3) : 1;
  b.batch_stride = t.stride(0), b.head_stride = t.stride(1), b.seq_stride = t.stride(2);
  return b;
}

bool aligned16(const at::Tensor& t) {
  const int64_t bytes = t.element_size();
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 && (t.size(3) * bytes) % 16 == 0 &&
         (t.stride(0) * bytes) % 16 == 0 && (t.stride(1) * bytes) % 16 == 0 &&
         (t.stride(2) * bytes) % 16 == 0;
}

}  // namespace
#endif

std::pair<at::Tensor, at::Tensor> try_merge_attention_parts(const std::vector<at::Tensor>& outs,
                                                            const std::vector<at::Tensor>& lses,
                                                            const at::Tensor& into) {
#ifdef DITBENCH_HAS_CUDA
  if (outs.empty() || outs.size() != lses.size() || outs.size() > kMaxMergeParts) return {};
  const auto& first = outs[0];
  if (!fused_kernels_enabled() || !first.defined() || !first.is_cuda() || first.dim() != 4) {
    return {};
  }
  const auto dtype = kernel_dtype(first.scalar_type());
  if (!dtype) return {};
  const auto rows = first.sizes().slice(0, 3);
  MergeParts parts;
  bool vector = true;
  for (size_t i = 0; i < outs.size(); ++i) {
    const auto &out = outs[i], &lse = lses[i];
    if (!out.defined() || !lse.defined() || out.sizes() != first.sizes() ||
        out.scalar_type() != first.scalar_type() || out.device() != first.device() ||
        out.stride(3) != 1 || lse.dim() != 3 || lse.sizes() != rows ||
        lse.scalar_type() != at::kFloat || lse.device() != first.device()) {
      return {};
    }
    vector = vector && aligned16(out);
    parts.out[parts.count] = bhsd_of(out);
    parts.lse[parts.count] = bhsd_of(lse);
    ++parts.count;
  }
  if (into.defined() &&
      (into.sizes() != first.sizes() || into.scalar_type() != first.scalar_type() ||
       into.device() != first.device() || into.stride(3) != 1)) {
    return {};
  }
  c10::cuda::CUDAGuard guard(first.device());
  auto out = into.defined() ? into : at::empty_like(first);  // outs[0]'s layout where it is dense
  if (out.stride(3) != 1) out = at::empty(first.sizes(), first.options());
  vector = vector && aligned16(out);
  auto lse = at::empty(rows, first.options().dtype(at::kFloat));
  if (!merge_attention_cuda(parts, *dtype, bhsd_of(out), lse.data_ptr<float>(), vector,
                            at::cuda::getCurrentCUDAStream(first.device().index()))) {
    return {};
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out, lse};
#else
  (void)outs, (void)lses, (void)into;
  return {};
#endif
}

}  // namespace ditbench
