#include "optimizations/kernels/fused.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "optimizations/kernels/rows_operand.h"
#endif

namespace ditbench {
namespace {

std::atomic<bool>& enabled_flag() {
  static std::atomic<bool> flag{[] {
    const char* env = std::getenv("DITBENCH_FUSED_KERNELS");
    return !(env && std::strcmp(env, "0") == 0);
  }()};
  return flag;
}

#ifdef DITBENCH_HAS_CUDA
cudaStream_t current_stream(const at::Tensor& t) {
  return at::cuda::getCurrentCUDAStream(t.device().index());
}
#endif

}  // namespace

#ifdef DITBENCH_HAS_CUDA
bool as_rows(const at::Tensor& t, const at::Tensor& like, bool rows, RowsBf16& out) {
  const int64_t dims = rows ? 3 : 2;
  if (!t.defined() || t.dim() != dims || t.scalar_type() != at::kBFloat16 ||
      t.device() != like.device() || t.size(dims - 1) != like.size(2) ||
      (t.size(0) != like.size(0) && t.size(0) != 1) || (rows && t.size(1) != like.size(1)) ||
      t.stride(dims - 1) != 1) {
    return false;
  }
  out.data = t.data_ptr();
  out.batch_stride = t.size(0) == 1 ? 0 : t.stride(0);
  out.row_stride = rows && t.size(1) > 1 ? t.stride(1) : 0;
  return true;
}
#endif

bool fused_kernels_enabled() { return enabled_flag().load(); }
void set_fused_kernels_enabled(bool enabled) { enabled_flag().store(enabled); }

std::optional<KernelDtype> kernel_dtype(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return KernelDtype::kFloat;
    case at::kHalf:
      return KernelDtype::kHalf;
    case at::kBFloat16:
      return KernelDtype::kBFloat16;
    default:
      return std::nullopt;
  }
}

bool fused_kernels_serve(const at::Tensor& x) {
#ifdef DITBENCH_HAS_CUDA
  return fused_kernels_enabled() && x.defined() && x.is_cuda() && x.scalar_type() == at::kBFloat16;
#else
  (void)x;
  return false;
#endif
}

at::Tensor try_layer_norm_modulate(const at::Tensor& x, const at::Tensor& shift,
                                   const at::Tensor& scale, double eps) {
#ifdef DITBENCH_HAS_CUDA
  RowsBf16 x_rows, shift_rows, scale_rows;
  if (!fused_kernels_serve(x) || x.dim() != 3 || !as_rows(x, x, true, x_rows) ||
      !as_rows(shift, x, false, shift_rows) || !as_rows(scale, x, false, scale_rows)) {
    return {};
  }
  c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty(x.sizes(), x.options());  // [B, S, D]
  if (!layer_norm_modulate_cuda(x_rows, shift_rows, scale_rows, out.data_ptr(), x.size(0),
                                x.size(1), x.size(2), static_cast<float>(eps), current_stream(x))) {
    return {};
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
#else
  (void)x, (void)shift, (void)scale, (void)eps;
  return {};
#endif
}

at::Tensor try_gate_residual(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y) {
#ifdef DITBENCH_HAS_CUDA
  RowsBf16 x_rows, y_rows, gate_rows;
  if (!fused_kernels_serve(x) || x.dim() != 3 || !as_rows(x, x, true, x_rows) ||
      !as_rows(y, x, true, y_rows) || !as_rows(gate, x, false, gate_rows)) {
    return {};
  }
  c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty(x.sizes(), x.options());  // [B, S, D]
  if (!gate_residual_cuda(x_rows, y_rows, gate_rows, out.data_ptr(), x.size(0), x.size(1),
                          x.size(2), current_stream(x))) {
    return {};
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
#else
  (void)x, (void)gate, (void)y;
  return {};
#endif
}

namespace {

#ifdef DITBENCH_HAS_CUDA
// The strides of a [B, S, H, Dh] operand whose heads are contiguous within a token (unit stride
// over Dh, stride Dh over H); false for any other layout. Strides of size-1 dims do not matter.
bool qk_strides_of(const at::Tensor& t, QkStrides& out) {
  const int64_t heads = t.size(2), head_dim = t.size(3);
  if ((head_dim > 1 && t.stride(3) != 1) || (heads > 1 && t.stride(2) != head_dim)) return false;
  out.batch = t.size(0) > 1 ? t.stride(0) : 0;
  out.token = t.size(1) > 1 ? t.stride(1) : 0;
  return true;
}

bool same_layout(const at::Tensor& a, const at::Tensor& b) {
  return b.defined() && b.sizes() == a.sizes() && b.strides() == a.strides() &&
         b.scalar_type() == at::kBFloat16 && b.device() == a.device();
}
#endif

// Launches the QK kernel from q, k into q_out, k_out (which may be q, k); false when it cannot.
bool qk_rms_norm_rope_into(const at::Tensor& q, const at::Tensor& k, at::Tensor& q_out,
                           at::Tensor& k_out, const at::Tensor& weight_q,
                           const at::Tensor& weight_k, const at::Tensor& cos, const at::Tensor& sin,
                           double eps) {
#ifdef DITBENCH_HAS_CUDA
  QkStrides in, out;
  if (!fused_kernels_serve(q) || q.dim() != 4 || !same_layout(q, k) || !same_layout(q_out, k_out) ||
      q_out.sizes() != q.sizes() || q_out.device() != q.device() || !qk_strides_of(q, in) ||
      !qk_strides_of(q_out, out)) {
    return false;
  }
  const int64_t head_dim = q.size(3);
  for (const auto* w : {&weight_q, &weight_k}) {
    if (!w->defined() || w->dim() != 1 || w->size(0) != head_dim ||
        w->scalar_type() != at::kBFloat16 || w->device() != q.device() || !w->is_contiguous()) {
      return false;
    }
  }
  int64_t rope_rows = 0;
  if (cos.defined() || sin.defined()) {
    for (const auto* t : {&cos, &sin}) {
      if (!t->defined() || t->dim() != 2 || t->size(1) != head_dim || t->size(0) > q.size(1) ||
          t->scalar_type() != at::kFloat || t->device() != q.device() || !t->is_contiguous()) {
        return false;
      }
    }
    if (sin.size(0) != cos.size(0)) return false;
    rope_rows = cos.size(0);
  }
  c10::cuda::CUDAGuard guard(q.device());
  if (!qk_rms_norm_rope_cuda(
          q.data_ptr(), k.data_ptr(), q_out.data_ptr(), k_out.data_ptr(), in, out,
          weight_q.data_ptr(), weight_k.data_ptr(), rope_rows ? cos.data_ptr<float>() : nullptr,
          rope_rows ? sin.data_ptr<float>() : nullptr, q.size(0), q.size(1), q.size(2), head_dim,
          rope_rows, static_cast<float>(eps), current_stream(q))) {
    return false;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return true;
#else
  (void)q, (void)k, (void)q_out, (void)k_out, (void)weight_q, (void)weight_k, (void)cos, (void)sin,
      (void)eps;
  return false;
#endif
}

}  // namespace

bool try_qk_rms_norm_rope_(at::Tensor& q, at::Tensor& k, const at::Tensor& weight_q,
                           const at::Tensor& weight_k, const at::Tensor& cos, const at::Tensor& sin,
                           double eps) {
  return qk_rms_norm_rope_into(q, k, q, k, weight_q, weight_k, cos, sin, eps);
}

std::pair<at::Tensor, at::Tensor> try_qk_rms_norm_rope(const at::Tensor& q, const at::Tensor& k,
                                                       const at::Tensor& weight_q,
                                                       const at::Tensor& weight_k,
                                                       const at::Tensor& cos, const at::Tensor& sin,
                                                       double eps) {
  if (!fused_kernels_serve(q)) return {};
  auto q_out = at::empty_like(q, at::MemoryFormat::Contiguous);  // [B, S, H, Dh]
  auto k_out = at::empty_like(k, at::MemoryFormat::Contiguous);
  if (!qk_rms_norm_rope_into(q, k, q_out, k_out, weight_q, weight_k, cos, sin, eps)) return {};
  return {q_out, k_out};
}

}  // namespace ditbench
