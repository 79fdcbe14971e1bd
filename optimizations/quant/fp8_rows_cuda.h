#pragma once
// Row-wise e4m3 quantization in one CUDA kernel, the hot part of fp8_dynamic: ATen's op-by-op
// form makes four passes with a float32 intermediate. Rows of 16-byte vectors up to 8192 vectors
// long (65,536 bf16 elements) are read once into registers (fp8_rows.cuh), so the kernel moves
// each input byte once and each output byte once; other rows take a two-pass scalar kernel. Same
// numbers as quantize_rows_fp8's ATen form: scale = amax / 448 (1 for a zero row),
// value = round-to-nearest-even(clamp(x * (1 / scale), ±448)).
#include <cuda_runtime.h>

#include <cstdint>

namespace ditbench {

enum class Fp8RowsInput { float32, float16, bfloat16 };

// x: rows x cols elements with row stride `row_stride` (unit column stride); out: rows x cols
// e4m3 bytes, contiguous; scale: rows floats. Returns false (launching nothing) when this build
// has no kernel image for the current device, so callers can take the ATen path.
bool quantize_rows_fp8_cuda(const void* x, Fp8RowsInput dtype, int64_t rows, int64_t cols,
                            int64_t row_stride, void* out, float* scale, cudaStream_t stream);

// The same numbers, made to run beside a GEMM that reads them (fp8_gemm_cuda.h's rows_ready):
// `blocks` thread blocks (even; launched in clusters of two, one block per SM, so that they
// leave whole pairs of SMs to a GEMM of two-block clusters) take the units of rows_per_flag rows
// in order, block b the units b, b + blocks, ..., and once a unit's values and scales are
// visible device-wide add its row count to ready[unit] (zeroed beforehand). Rows of 16-byte
// vectors, at most 4096 of them; false (launching nothing) for other rows, an odd or zero
// `blocks`, or no kernel image for the device.
bool quantize_rows_fp8_signalled_cuda(const void* x, Fp8RowsInput dtype, int64_t rows, int64_t cols,
                                      int64_t row_stride, void* out, float* scale, int* ready,
                                      int rows_per_flag, int blocks, cudaStream_t stream);

}  // namespace ditbench
