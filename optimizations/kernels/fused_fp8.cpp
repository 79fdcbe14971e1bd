#include "optimizations/kernels/fused_fp8.h"

#include "optimizations/kernels/fused.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "optimizations/kernels/fused_fp8_cuda.h"
#include "optimizations/kernels/rows_operand.h"
#endif

namespace ditbench {
namespace {

#ifdef DITBENCH_HAS_CUDA
// t: [..., K] with unit stride over K whose rows are evenly spaced (one row stride walks them
// all); the stride, or -1 when they are not.
int64_t uniform_row_stride(const at::Tensor& t) {
  if (t.dim() < 1 || t.stride(-1) != 1) return -1;
  if (t.dim() == 1) return t.size(0);
  int64_t stride = -1;  // the innermost leading dim's stride, which the outer ones must extend
  int64_t span = 0;     // elements one step of the next outer dim must cover
  for (int64_t d = t.dim() - 2; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (stride < 0) {
      stride = t.stride(d);
    } else if (t.stride(d) != span) {
      return -1;
    }
    span = t.stride(d) * t.size(d);
  }
  return stride < 0 ? t.size(-1) : stride;
}

Fp8Rows empty_rows(int64_t rows, int64_t cols, const at::Tensor& like) {
  return {at::empty({rows, cols}, like.options().dtype(at::kFloat8_e4m3fn)),
          at::empty({rows, 1}, like.options().dtype(at::kFloat))};
}
#endif

}  // namespace

QuantizedActivation try_layer_norm_modulate_fp8(const at::Tensor& x, const at::Tensor& shift,
                                                const at::Tensor& scale, double eps,
                                                bool keep_full) {
  QuantizedActivation out;
#ifdef DITBENCH_HAS_CUDA
  RowsBf16 x_rows, shift_rows, scale_rows;
  if (!fused_kernels_serve(x) || x.dim() != 3 || !as_rows(x, x, true, x_rows) ||
      !as_rows(shift, x, false, shift_rows) || !as_rows(scale, x, false, scale_rows)) {
    return out;
  }
  c10::cuda::CUDAGuard guard(x.device());
  const int64_t batch = x.size(0), seq = x.size(1), dim = x.size(2);
  auto rows = empty_rows(batch * seq, dim, x);
  at::Tensor full = keep_full ? at::empty(x.sizes(), x.options()) : at::Tensor();  // [B, S, D]
  if (!layer_norm_modulate_fp8_cuda(
          x_rows, shift_rows, scale_rows, keep_full ? full.data_ptr() : nullptr,
          rows.values.data_ptr(), rows.scale.data_ptr<float>(), batch, seq, dim,
          static_cast<float>(eps), at::cuda::getCurrentCUDAStream(x.device().index()))) {
    return out;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  out.full = full;
  out.fp8 = rows;
  out.shape = x.sizes().vec();
  out.dtype = x.scalar_type();
#else
  (void)x, (void)shift, (void)scale, (void)eps, (void)keep_full;
#endif
  return out;
}

QuantizedActivation try_gelu_tanh_fp8(const at::Tensor& h, const at::Tensor& prefix) {
  QuantizedActivation out;
#ifdef DITBENCH_HAS_CUDA
  if (!fused_kernels_serve(h) || h.dim() < 1) return out;
  const int64_t h_stride = uniform_row_stride(h);
  int64_t prefix_cols = 0, prefix_stride = 0;
  if (prefix.defined()) {
    if (prefix.scalar_type() != at::kBFloat16 || prefix.device() != h.device() ||
        prefix.dim() != h.dim() ||
        prefix.sizes().slice(0, h.dim() - 1) != h.sizes().slice(0, h.dim() - 1)) {
      return out;
    }
    prefix_cols = prefix.size(-1);
    prefix_stride = uniform_row_stride(prefix);
    if (prefix_stride < 0) return out;
  }
  if (h_stride < 0) return out;
  const int64_t rows = h.numel() / std::max<int64_t>(h.size(-1), 1);
  const int64_t cols = prefix_cols + h.size(-1);
  c10::cuda::CUDAGuard guard(h.device());
  auto q = empty_rows(rows, cols, h);
  if (!gelu_tanh_fp8_cuda(prefix_cols ? prefix.data_ptr() : nullptr, prefix_cols, prefix_stride,
                          h.data_ptr(), h.size(-1), h_stride, rows, q.values.data_ptr(),
                          q.scale.data_ptr<float>(),
                          at::cuda::getCurrentCUDAStream(h.device().index()))) {
    return out;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  out.fp8 = q;
  out.shape = h.sizes().vec();
  out.shape.back() = cols;
  out.dtype = h.scalar_type();
#else
  (void)h, (void)prefix;
#endif
  return out;
}

}  // namespace ditbench
