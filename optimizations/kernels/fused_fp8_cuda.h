#pragma once
// Launchers of the producers that end in the FP8 row quantization (fused_fp8.cu): instead of
// writing a bfloat16 activation that the next FP8 Linear reads back to quantize, they write its
// e4m3 rows and per-row scales (optimizations/quant/fp8_rows.cuh rounds them, exactly as
// quantize_rows_fp8 would the bfloat16 activation). Raw pointers, element strides; each returns
// false (launching nothing) when it cannot serve the shape or this build has no kernel image for
// the current device, so the caller takes the unfused path.
#include <cuda_runtime.h>

#include <cstdint>

#include "optimizations/kernels/fused_cuda.h"

namespace ditbench {

// layer_norm_modulate_cuda's result (same rounding, same reduction order) quantized per row:
// values: contiguous [B * S, D] e4m3, scale: [B * S] floats; full: contiguous [B, S, D] bfloat16
// of the unquantized result, or null to skip writing it.
bool layer_norm_modulate_fp8_cuda(RowsBf16 x, RowsBf16 shift, RowsBf16 scale, void* full,
                                  void* values, float* row_scale, int64_t batch, int64_t seq,
                                  int64_t dim, float eps, cudaStream_t stream);

// Rows [prefix | gelu_tanh(h)] quantized per row, where gelu_tanh rounds to bfloat16 as
// at::gelu(h, "tanh") does: prefix [M, P] (row stride prefix_stride; P may be 0, prefix null),
// h [M, H] (row stride h_stride), all bfloat16. values: contiguous [M, P + H] e4m3, scale: [M].
bool gelu_tanh_fp8_cuda(const void* prefix, int64_t prefix_cols, int64_t prefix_stride,
                        const void* h, int64_t h_cols, int64_t h_stride, int64_t rows, void* values,
                        float* row_scale, cudaStream_t stream);

}  // namespace ditbench
