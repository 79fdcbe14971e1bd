#pragma once
// Fused CUDA kernels for the memory-bound chains between a DiT block's GEMMs: LayerNorm +
// modulate, QK RMSNorm + rotary embedding, and the gated residual add. Each replaces a chain of
// eager ATen ops (several reads and writes of a [B, S, D] activation) by one read and one write.
//
// One switch decides: a kernel serves only bfloat16 CUDA tensors of a shape it handles, in a
// build with CUDA, while fused_kernels_enabled(); otherwise the function returns an undefined
// tensor (or false) and the caller runs its ATen chain. The results equal the ATen chain's
// bfloat16 results up to the order of the row reductions (fused_cuda.h says how).
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

#include "optimizations/kernels/kernel_dtype.h"

namespace ditbench {

// On by default; the environment variable DITBENCH_FUSED_KERNELS=0 turns it off at start, so one
// binary can time both paths.
bool fused_kernels_enabled();
void set_fused_kernels_enabled(bool enabled);

// Whether `x` is a tensor the fused kernels may serve: the switch is on, this is a CUDA build and
// x is a bfloat16 CUDA tensor.
bool fused_kernels_serve(const at::Tensor& x);

// The launchers' element type for a tensor dtype: float32, float16, bfloat16; nothing otherwise.
std::optional<KernelDtype> kernel_dtype(at::ScalarType type);

// LayerNorm over D without affine (eps), then x̂ * (1 + scale[:, None]) + shift[:, None].
// x: [B, S, D] with unit stride over D; shift, scale: [B, D] -> [B, S, D], or undefined when the
// kernel does not serve these tensors.
at::Tensor try_layer_norm_modulate(const at::Tensor& x, const at::Tensor& shift,
                                   const at::Tensor& scale, double eps);

// x + gate[:, None] * y. x, y: [B, S, D] with unit stride over D; gate: [B, D] -> [B, S, D], or
// undefined when the kernel does not serve these tensors.
at::Tensor try_gate_residual(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y);

// RMSNorm over Dh with weight (eps) of q and of k, then the interleaved rotary embedding (cos,
// sin: [R, Dh] float32) on the rows s < R of both; R = 0 (cos, sin undefined) normalizes only.
// q, k: [B, S, H, Dh] with the same strides, heads contiguous within a token (contiguous, or
// column ranges of one packed [B, S, n * H * Dh] projection); weight_q, weight_k: [Dh] bfloat16.
// In place: returns false, touching nothing, when the kernel does not serve these tensors.
bool try_qk_rms_norm_rope_(at::Tensor& q, at::Tensor& k, const at::Tensor& weight_q,
                           const at::Tensor& weight_k, const at::Tensor& cos, const at::Tensor& sin,
                           double eps);
// The same into new contiguous tensors; both undefined when the kernel does not serve.
std::pair<at::Tensor, at::Tensor> try_qk_rms_norm_rope(const at::Tensor& q, const at::Tensor& k,
                                                       const at::Tensor& weight_q,
                                                       const at::Tensor& weight_k,
                                                       const at::Tensor& cos, const at::Tensor& sin,
                                                       double eps);

}  // namespace ditbench
