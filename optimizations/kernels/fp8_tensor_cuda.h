#pragma once
// Launchers of the per-tensor e4m3 kernels of cudnn_fp8 (fp8_tensor.cu): the amax of a [B, H, S,
// D] operand read through its strides (q, k, v are column ranges of one projection), its scaled
// rounding to e4m3 into a dense buffer, and the dequantization of the attention's e4m3 output.
// Raw pointers and element strides; each returns false (launching nothing) when it cannot serve
// (D not a multiple of 8, unaligned rows, no kernel image for the device), so the caller takes the
// ATen chain, whose rounding they reproduce bit for bit:
//   scale = 448 / amax (1 when amax is 0), descale = 1 / scale, e4m3 = rne_satfinite(x * scale),
//   dequantized = bf16/fp16(e4m3 * (1 / scale_out)), every operation in float32, IEEE.
#include <cuda_runtime.h>

#include <cstdint>

namespace ditbench {

// Element strides of a [B, H, S, D] operand whose D is contiguous.
struct Bhsd {
  const void* data = nullptr;
  int64_t batch = 0, heads = 0, seq = 0, dim = 0;
  int64_t batch_stride = 0, head_stride = 0, seq_stride = 0;
};

// amax[0] = max(amax[0], max |x|): x bfloat16 (half = false) or float16. amax must hold 0 (or a
// lower bound) before the call.
bool e4m3_amax_cuda(Bhsd x, bool half, float* amax, cudaStream_t stream);

// out (strides of `out_layout`, its data the e4m3 buffer) = rne_satfinite(x * scale) with
// scale = 448 / amax[0]; writes scale[0] and descale[0] too.
bool e4m3_quantize_cuda(Bhsd x, bool half, const float* amax, Bhsd out_layout, float* scale,
                        float* descale, cudaStream_t stream);

// out[i] = round(float(values[i]) * (1 / scale[0])) for i < n: values e4m3, out bfloat16 (half =
// false) or float16, both dense in the same layout.
bool e4m3_dequantize_cuda(const void* values, int64_t n, const float* scale, bool half, void* out,
                          cudaStream_t stream);

}  // namespace ditbench
