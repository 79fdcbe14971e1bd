#pragma once
// The attention backend registry: the reference (math), ATen's own choice (sdpa), ATen's fused
// kernels called directly (flash, efficient, cudnn), cuDNN's FP8 attention through the cuDNN
// frontend (cudnn_fp8, optimizations/attention/cudnn_fp8.h) and CUTLASS's Hopper FMHA kernels
// (cutlass_fmha, optimizations/attention/cutlass_fmha.h). A backend either serves a
// configuration exactly (masked keys included) or says why it cannot; nothing falls back silently.
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "optimizations/attention/attention.h"

namespace ditbench {

// Whether a backend (or a quantization mode) can serve a configuration, and if not, why
// ("flash takes fp16/bf16, not float32"). Runners record `reason` as the skip reason.
struct BackendCheck {
  bool ok = true;
  std::string reason;
};

class AttentionBackend {
 public:
  virtual ~AttentionBackend() = default;
  virtual const std::string& name() const = 0;
  // Whether this backend can run attention over [B, H, S, head_dim] tensors of `dtype` on
  // `device`, with a key mask when has_mask. On CUDA the fused kernels also ask ATen's own
  // admission checks (compute capability, alignment, cuDNN version) and report what they say.
  virtual BackendCheck can_serve(const at::Device& device, at::ScalarType dtype, int64_t head_dim,
                                 bool has_mask) const = 0;
  // q: [B, H, Sq, D], k/v: [B, H, Sk, D], key_mask: [B, Sk] bool or undefined.
  // Returns out [B, H, Sq, D] in q's dtype and, when need_lse, lse [B, H, Sq] float32 (natural
  // log of the sum of exp(q.k / sqrt(D)) over the attended keys). Notes what served in this
  // thread's attention log. Call only after can_serve said ok.
  virtual LocalAttentionResult run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const at::Tensor& key_mask, bool need_lse) const = 0;
};

// Registered names, in listing order: math, sdpa, flash, efficient, cudnn, cudnn_fp8,
// cutlass_fmha.
const std::vector<std::string>& attention_backend_names();

// The backend registered as `name`; throws InputError naming the known backends otherwise.
const AttentionBackend& attention_backend(const std::string& name);

// can_serve of the named backend (InputError for an unknown name).
BackendCheck check_backend(const std::string& name, const at::Device& device, at::ScalarType dtype,
                           int64_t head_dim, bool has_mask);

// An empty tensor of x's sizes in `dtype`, dense in x's dimension order: a [B, H, S, D] view of
// [B, S, H, D] storage (head stride below token stride, as models hand q, k, v over) gets
// [B, S, H, D] storage, anything else row-major storage. Kernels write their output in it.
at::Tensor dense_like(const at::Tensor& x, at::ScalarType dtype);

// "float32", "bf16", "fp16", "float64", else ATen's name: how skip reasons name a dtype.
std::string attention_dtype_name(at::ScalarType dtype);

// An attention kernel that takes no mask: (q, k, v, need_lse) -> result.
using UnmaskedAttentionFn = std::function<LocalAttentionResult(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool need_lse)>;

// Exact masked attention through a kernel that takes no mask: when every sample attends to the
// same keys they are gathered once (index_select on the key dim) and the kernel runs once;
// otherwise it runs per sample on that sample's keys. A sample with no valid key gets zeros and
// lse -inf, as the masked softmax defines it.
// key_mask: [B, Sk] bool or undefined (then the kernel runs on everything).
LocalAttentionResult attend_by_key_selection(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& key_mask,
                                             bool need_lse, const UnmaskedAttentionFn& kernel);

// The float32 reference with the log-sum-exp, chunked over queries so that at most
// max_scores_per_chunk scores (256 MiB by default) exist at a time at any sequence length. Any
// device, any floating dtype.
LocalAttentionResult math_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& key_mask, bool need_lse,
                                    int64_t max_scores_per_chunk = int64_t{1} << 26);

}  // namespace ditbench
