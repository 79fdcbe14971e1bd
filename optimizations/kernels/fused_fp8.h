#pragma once
// Producers that hand the next FP8 Linear its e4m3 rows (optimizations/quant/quant.h,
// QuantizedActivation) instead of a bfloat16 activation it would read back to quantize: one
// kernel computes the activation and quantizes it per row from registers, with the rounding of
// quantize_rows_fp8 applied to the bfloat16 values the unfused chain would store. They serve
// what fused_kernels_serve() serves (bfloat16 CUDA tensors, switch on); otherwise, and for
// shapes they do not handle, the results are undefined and the caller takes its unfused path
// (the chain, then quantize_rows_fp8), which on the CPU is the exact emulation.
#include <ATen/ATen.h>

#include "optimizations/quant/quant.h"

namespace ditbench {

// try_layer_norm_modulate(x, shift, scale, eps) quantized per row. x: [B, S, D] with unit
// stride over D; shift, scale: [B, D]. Returns e4m3 rows [B * S, D] with scales [B * S, 1] and,
// with keep_full, the bfloat16 result [B, S, D] as `full` (the same values
// try_layer_norm_modulate returns); shape and dtype describe [B, S, D] bfloat16. `fp8` is
// undefined when the kernel does not serve.
QuantizedActivation try_layer_norm_modulate_fp8(const at::Tensor& x, const at::Tensor& shift,
                                                const at::Tensor& scale, double eps,
                                                bool keep_full);

// quantize_rows_fp8 of cat({prefix, at::gelu(h, "tanh")}, -1) in one pass, without writing the
// GELU output or the concatenation. h: [..., H]; prefix: [..., P] over the same leading dims, or
// undefined (P = 0). Returns e4m3 rows [M, P + H] (M = the product of the leading dims) with
// `full` undefined; `fp8` undefined when the kernel does not serve (P and H multiples of 8, rows
// addressable with one stride).
QuantizedActivation try_gelu_tanh_fp8(const at::Tensor& h, const at::Tensor& prefix = {});

}  // namespace ditbench
