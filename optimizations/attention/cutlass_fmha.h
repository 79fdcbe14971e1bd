#pragma once
// Attention through CUTLASS's Hopper FMHA kernels (optimizations/kernels/fmha_sm90_cuda.h):
// bf16, head dim 128, compute capability 9.0. Registered as the attention backend
// "cutlass_fmha". q, k and v are read in place through their strides (the column ranges of a
// packed projection included); the output is written token-major, as the models read it back. A
// key mask is served by running the kernel on the valid keys (attend_by_key_selection). The
// backend runs kFmhaDefaultVariant; DITBENCH_FMHA_KERNEL=<name> (a name of fmha_variants) picks
// another, an unknown name is an InputError naming the known ones.
#include <memory>

#include "optimizations/attention/backends.h"
#include "optimizations/kernels/fmha_sm90_cuda.h"

namespace ditbench {

// The backend for the registry.
std::unique_ptr<AttentionBackend> make_cutlass_fmha_backend();

// Unmasked attention by one FMHA variant (the backend runs kFmhaDefaultVariant): q [B, H, Sq, D],
// k, v [B, H, Sk, D] bf16 on a CUDA device. Operands whose layout the kernel cannot read
// (strides not multiples of 8 elements, unaligned bases) are copied token-major first; a query
// count that is not a multiple of 8 is padded with zero queries whose rows are dropped. Throws
// Unsupported with the kernel's reason when it cannot run at all (device, dtype, head dim).
LocalAttentionResult cutlass_fmha_attention(const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, bool need_lse,
                                            FmhaVariant variant = kFmhaDefaultVariant);

}  // namespace ditbench
