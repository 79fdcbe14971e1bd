#pragma once
// FP8 attention: q, k, v quantized to e4m3 with one scale per tensor, then cuDNN's fused FP8
// forward (the frontend's sdpa_fp8 graph). Registered as the attention backend "cudnn_fp8".
#include <ATen/ATen.h>

#include <memory>

#include "optimizations/attention/backends.h"

namespace ditbench {

// A tensor quantized to e4m3 with one scale for all of it: data = e4m3(x * scale) with
// scale = 448 / amax(|x|) (1 when x is all zeros), so the largest magnitude lands on e4m3's
// largest finite value; descale = 1 / scale turns data back into x's units. The amax and both
// scales stay on x's device (float32, 0-dim): nothing waits for the GPU. The product is formed in
// float32 and rounded once to e4m3 (round to nearest even). On a GPU two kernels (amax, then
// scale and round, reading x through its strides) compute exactly what the ATen chain computes.
struct E4m3PerTensor {
  at::Tensor data;     // x's shape, Float8_e4m3fn, dense in x's dimension order
  at::Tensor scale;    // [] float32
  at::Tensor descale;  // [] float32
};
E4m3PerTensor quantize_e4m3_per_tensor(const at::Tensor& x);

// data * descale in `dtype`.
at::Tensor dequantize_e4m3(const E4m3PerTensor& x, at::ScalarType dtype);

// The FP8 attention's e4m3 output back in `dtype`: values * (1 / scale) formed in float32 and
// rounded once, in values' layout (one kernel on a GPU for a dense tensor). scale: [1] or []
// float32 on values' device.
at::Tensor dequantize_e4m3_output(const at::Tensor& values, const at::Tensor& scale,
                                  at::ScalarType dtype);

// Whether this build has the cuDNN frontend (the backend can serve at all); without it every
// check says "built without the cuDNN frontend".
bool cudnn_frontend_built();

// The "cudnn_fp8" backend for the registry.
std::unique_ptr<AttentionBackend> make_cudnn_fp8_backend();

}  // namespace ditbench
