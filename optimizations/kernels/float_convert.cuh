#pragma once
// Widening to float32 and rounding (to nearest even) back to the kernels' 16-bit types (and
// float32 itself), and a vector of them moved in one access, shared by the CUDA kernels of this
// folder.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace ditbench {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Two values rounded to bfloat16 (to nearest even) and widened back, with one paired conversion
// (cvt.rn.bf16x2.f32) where two single ones would each take a slot of the SM's conversion unit.
__device__ __forceinline__ void round_bf16_pair(float& a, float& b) {
  const float2 r = __bfloat1622float2(__floats2bfloat162_rn(a, b));
  a = r.x, b = r.y;
}

// LayerNorm + modulate of kVec values as the bfloat16 ops round them (diffusers'
// norm(x) * (1 + scale) + shift): v = bf16(bf16((v - mean) * rstd) * one_plus_scale) + shift,
// the sum left to the caller's store to round.
template <int kVec>
__device__ __forceinline__ void normalize_modulate(float (&v)[kVec], float mean, float rstd,
                                                   const float (&one_plus_scale)[kVec],
                                                   const float (&shift)[kVec]) {
#pragma unroll
  for (int j = 0; j < kVec; j += 2) {
    float normed0 = (v[j] - mean) * rstd, normed1 = (v[j + 1] - mean) * rstd;
    round_bf16_pair(normed0, normed1);
    float scaled0 = normed0 * one_plus_scale[j], scaled1 = normed1 * one_plus_scale[j + 1];
    round_bf16_pair(scaled0, scaled1);
    v[j] = scaled0 + shift[j], v[j + 1] = scaled1 + shift[j + 1];
  }
}

// kVec values of T loaded or stored in one access (16 bytes for the 16-byte vectors).
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

}  // namespace ditbench
