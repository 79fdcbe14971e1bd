#pragma once
// Launchers of the fused bf16 kernels for the memory-bound chains around a DiT block's GEMMs
// (fused.cu). Raw pointers and element strides, no LibTorch types: fused.cpp checks the tensors
// and calls these. Each returns false (launching nothing) when it cannot serve the shape or this
// build has no kernel image for the current device, so the caller takes the ATen path.
//
// Numerics: every value is computed in float32 and rounded to bfloat16 exactly where the ATen
// chain the model runs otherwise rounds (one rounding per eager op), so the fused result equals
// the chain's up to the order of the row reductions.
#include <cuda_runtime.h>

#include <cstdint>

namespace ditbench {

// A [B, S, D] bfloat16 operand: rows of D contiguous elements, any batch and row stride.
struct RowsBf16 {
  const void* data = nullptr;
  int64_t batch_stride = 0;  // elements
  int64_t row_stride = 0;    // elements
};

// out[b, s] = LayerNorm(x[b, s]) * (1 + scale[b]) + shift[b]: LayerNorm without affine, biased
// variance, eps added before the rsqrt. shift/scale: [B, D] rows (batch_stride used, row_stride
// ignored). out: contiguous [B, S, D].
bool layer_norm_modulate_cuda(RowsBf16 x, RowsBf16 shift, RowsBf16 scale, void* out, int64_t batch,
                              int64_t seq, int64_t dim, float eps, cudaStream_t stream);

// out[b, s] = x[b, s] + gate[b] * y[b, s]. gate: [B, D] rows. out: contiguous [B, S, D].
bool gate_residual_cuda(RowsBf16 x, RowsBf16 y, RowsBf16 gate, void* out, int64_t batch,
                        int64_t seq, int64_t dim, cudaStream_t stream);

// Element strides of a [B, S, H, Dh] bfloat16 operand whose heads are contiguous within a token
// (H * Dh consecutive elements): between batches and between tokens. A contiguous tensor has
// {S * H * Dh, H * Dh}; a column range of a packed [B, S, 3 * H * Dh] projection has token
// stride 3 * H * Dh.
struct QkStrides {
  int64_t batch = 0;
  int64_t token = 0;
};

// For q and k ([B, S, H, Dh] with strides `in`, the same for both): RMSNorm over Dh with weight
// ([Dh], bfloat16), then on the rows s < rope_rows the interleaved rotary embedding with cos/sin
// tables ([rope_rows, Dh] float32, contiguous; null when rope_rows is 0), into q_out and k_out
// (strides `out`). Outputs may alias the inputs (in place, in == out).
bool qk_rms_norm_rope_cuda(const void* q, const void* k, void* q_out, void* k_out, QkStrides in,
                           QkStrides out, const void* weight_q, const void* weight_k,
                           const float* cos, const float* sin, int64_t batch, int64_t seq,
                           int64_t heads, int64_t head_dim, int64_t rope_rows, float eps,
                           cudaStream_t stream);

}  // namespace ditbench
