#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "optimizations/quant/fp8_rows_cuda.h"

namespace ditbench {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ __nv_fp8_storage_t to_e4m3(float v, float s) {
  // IEEE division, as the ATen form computes it, so values round identically; the saturating
  // conversion is clamp to ±448 followed by round-to-nearest-even.
  return __nv_cvt_float_to_fp8(__fdiv_rn(v, s), __NV_SATFINITE, __NV_E4M3);
}

// One block per row: the row is read once for its amax and again (from cache) to quantize. With
// kVectorized, each thread moves 16 bytes of input at a time (the row must be 16-byte aligned
// and a whole number of such vectors long).
template <typename T, bool kVectorized>
__global__ void __launch_bounds__(kThreads)
    quantize_rows_fp8_kernel(const T* __restrict__ x, int64_t cols, int64_t row_stride,
                             __nv_fp8_storage_t* __restrict__ out, float* __restrict__ scale) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t row = blockIdx.x;
  const T* in = x + row * row_stride;
  __nv_fp8_storage_t* row_out = out + row * cols;
  float amax = 0.f;
  if constexpr (kVectorized) {
    const auto* in_vec = reinterpret_cast<const uint4*>(in);
    for (int64_t i = threadIdx.x; i < cols / kVec; i += kThreads) {
      const uint4 raw = in_vec[i];
      const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int j = 0; j < kVec; ++j) amax = fmaxf(amax, fabsf(to_float(e[j])));
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
      amax = fmaxf(amax, fabsf(to_float(in[c])));
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
  }
  __shared__ float warp_amax[kThreads / 32];
  if (threadIdx.x % 32 == 0) warp_amax[threadIdx.x / 32] = amax;
  __syncthreads();
  amax = warp_amax[0];
  for (int w = 1; w < kThreads / 32; ++w) amax = fmaxf(amax, warp_amax[w]);
  const float s = amax > 0.f ? __fdiv_rn(amax, 448.f) : 1.f;
  if (threadIdx.x == 0) scale[row] = s;
  if constexpr (kVectorized) {
    const auto* in_vec = reinterpret_cast<const uint4*>(in);
    for (int64_t i = threadIdx.x; i < cols / kVec; i += kThreads) {
      const uint4 raw = in_vec[i];
      const T* e = reinterpret_cast<const T*>(&raw);
      alignas(kVec) __nv_fp8_storage_t q[kVec];
#pragma unroll
      for (int j = 0; j < kVec; ++j) q[j] = to_e4m3(to_float(e[j]), s);
      if constexpr (kVec == 8) {
        reinterpret_cast<uint2*>(row_out)[i] = *reinterpret_cast<const uint2*>(q);
      } else {
        reinterpret_cast<uint32_t*>(row_out)[i] = *reinterpret_cast<const uint32_t*>(q);
      }
    }
  } else {
    for (int64_t c = threadIdx.x; c < cols; c += kThreads) row_out[c] = to_e4m3(to_float(in[c]), s);
  }
}

template <typename T, bool kVectorized>
bool launch_as(const void* x, int64_t rows, int64_t cols, int64_t row_stride, void* out,
               float* scale, cudaStream_t stream) {
  cudaFuncAttributes attributes;
  if (cudaFuncGetAttributes(&attributes, quantize_rows_fp8_kernel<T, kVectorized>) != cudaSuccess) {
    cudaGetLastError();  // clear "no kernel image" so later launches do not report it
    return false;
  }
  quantize_rows_fp8_kernel<T, kVectorized><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
      static_cast<const T*>(x), cols, row_stride, static_cast<__nv_fp8_storage_t*>(out), scale);
  return true;
}

template <typename T>
bool launch(const void* x, int64_t rows, int64_t cols, int64_t row_stride, void* out, float* scale,
            cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const bool aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(out) % 16 == 0 && cols % kVec == 0 &&
                       row_stride % kVec == 0;
  return aligned ? launch_as<T, true>(x, rows, cols, row_stride, out, scale, stream)
                 : launch_as<T, false>(x, rows, cols, row_stride, out, scale, stream);
}

}  // namespace

bool quantize_rows_fp8_cuda(const void* x, Fp8RowsInput dtype, int64_t rows, int64_t cols,
                            int64_t row_stride, void* out, float* scale, cudaStream_t stream) {
  switch (dtype) {
    case Fp8RowsInput::float32:
      return launch<float>(x, rows, cols, row_stride, out, scale, stream);
    case Fp8RowsInput::float16:
      return launch<__half>(x, rows, cols, row_stride, out, scale, stream);
    case Fp8RowsInput::bfloat16:
      return launch<__nv_bfloat16>(x, rows, cols, row_stride, out, scale, stream);
  }
  return false;
}

}  // namespace ditbench
