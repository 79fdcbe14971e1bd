#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "optimizations/kernels/float_convert.cuh"
#include "optimizations/kernels/fp8_tensor_cuda.h"
#include "optimizations/kernels/launch.cuh"
#include "optimizations/quant/fp8_rows.cuh"

namespace ditbench {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 8;  // 16-bit elements per 16-byte load

// 448 / max(amax, fp8_rows::kMinAmax) by IEEE division (as ATen divides tensors), 1 for an
// all-zero tensor.
__device__ __forceinline__ float scale_of(float amax) {
  return amax > 0.f ? __fdiv_rn(448.f, fmaxf(amax, fp8_rows::kMinAmax)) : 1.f;
}

// The vector `v` of the (b, h) plane of x: its row s = v / vecs_per_row, column block v % ....
__device__ __forceinline__ int64_t offset_of(const Bhsd& t, int64_t bh, int64_t v, int vecs) {
  const int64_t b = bh / t.heads, h = bh - b * t.heads;
  const int64_t s = v / vecs, c = v - s * vecs;
  return b * t.batch_stride + h * t.head_stride + s * t.seq_stride + c * kVec;
}

// Grid: x strides over the vectors of one (b, h) plane, y = b * H + h.
template <typename T>
__global__ void __launch_bounds__(kThreads) amax_kernel(Bhsd x, float* amax) {
  __shared__ float partial[kThreads / 32];
  const int vecs = static_cast<int>(x.dim / kVec);
  const int64_t plane = x.seq * vecs;
  const T* base = static_cast<const T*>(x.data);
  float m = 0.f;
  for (int64_t v = blockIdx.x * int64_t{kThreads} + threadIdx.x; v < plane;
       v += int64_t{gridDim.x} * kThreads) {
    const uint4 raw =
        __ldg(reinterpret_cast<const uint4*>(base + offset_of(x, blockIdx.y, v, vecs)));
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < kVec; ++j) m = fmaxf(m, fabsf(to_float(e[j])));
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2)
    m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, offset));
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, partial[w]);
    // Non-negative floats order as their bit patterns do.
    atomicMax(reinterpret_cast<unsigned int*>(amax), __float_as_uint(m));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    quantize_kernel(Bhsd x, const float* amax, Bhsd out, float* scale_out, float* descale_out) {
  const float scale = scale_of(*amax);
  if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) {
    *scale_out = scale;
    *descale_out = __fdiv_rn(1.f, scale);
  }
  const int vecs = static_cast<int>(x.dim / kVec);
  const int64_t plane = x.seq * vecs;
  const T* base = static_cast<const T*>(x.data);
  auto* values = static_cast<__nv_fp8_storage_t*>(const_cast<void*>(out.data));
  for (int64_t v = blockIdx.x * int64_t{kThreads} + threadIdx.x; v < plane;
       v += int64_t{gridDim.x} * kThreads) {
    const uint4 raw =
        __ldcs(reinterpret_cast<const uint4*>(base + offset_of(x, blockIdx.y, v, vecs)));
    const T* e = reinterpret_cast<const T*>(&raw);
    alignas(8) __nv_fp8_storage_t q[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      q[j] = __nv_cvt_float_to_fp8(__fmul_rn(to_float(e[j]), scale), __NV_SATFINITE, __NV_E4M3);
    }
    *reinterpret_cast<uint2*>(values + offset_of(out, blockIdx.y, v, vecs)) =
        *reinterpret_cast<const uint2*>(q);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    dequantize_kernel(const __nv_fp8_storage_t* values, int64_t vecs, const float* scale, T* out) {
  const float factor = __fdiv_rn(1.f, *scale);
  for (int64_t v = blockIdx.x * int64_t{kThreads} + threadIdx.x; v < vecs;
       v += int64_t{gridDim.x} * kThreads) {
    const uint2 raw = __ldcs(reinterpret_cast<const uint2*>(values) + v);
    const auto* q = reinterpret_cast<const __nv_fp8_storage_t*>(&raw);
    alignas(16) T r[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const float f = __half2float(__half(__nv_cvt_fp8_to_halfraw(q[j], __NV_E4M3)));
      r[j] = from_float<T>(__fmul_rn(f, factor));
    }
    __stcs(reinterpret_cast<uint4*>(out) + v, *reinterpret_cast<const uint4*>(r));
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Rows of whole vectors of kVec elements, aligned to a vector, every stride a whole number of
// vectors.
bool servable(const Bhsd& t, int element_bytes) {
  return t.dim > 0 && t.dim % kVec == 0 && t.batch * t.heads <= 65535 &&
         reinterpret_cast<uintptr_t>(t.data) % (kVec * element_bytes) == 0 &&
         t.batch_stride % kVec == 0 && t.head_stride % kVec == 0 && t.seq_stride % kVec == 0;
}

dim3 grid_of(const Bhsd& t) {
  const int64_t plane = t.seq * (t.dim / kVec);
  const int64_t blocks = (plane + kThreads - 1) / kThreads;
  // Enough blocks per (b, h) plane to fill the GPU with a few planes; each walks a grid stride.
  return dim3(static_cast<unsigned>(blocks < 64 ? (blocks > 0 ? blocks : 1) : 64),
              static_cast<unsigned>(t.batch * t.heads));
}

}  // namespace

bool e4m3_amax_cuda(Bhsd x, bool half, float* amax, cudaStream_t stream) {
  if (!servable(x, 2)) return false;
  if (x.batch * x.heads * x.seq == 0) return true;
  if (half) {
    if (!has_image<amax_kernel<__half>>()) return false;
    amax_kernel<__half><<<grid_of(x), kThreads, 0, stream>>>(x, amax);
  } else {
    if (!has_image<amax_kernel<__nv_bfloat16>>()) return false;
    amax_kernel<__nv_bfloat16><<<grid_of(x), kThreads, 0, stream>>>(x, amax);
  }
  return true;
}

bool e4m3_quantize_cuda(Bhsd x, bool half, const float* amax, Bhsd out_layout, float* scale,
                        float* descale, cudaStream_t stream) {
  if (!servable(x, 2) || !servable(out_layout, 1) || out_layout.batch != x.batch ||
      out_layout.heads != x.heads || out_layout.seq != x.seq || out_layout.dim != x.dim) {
    return false;
  }
  // Even an empty tensor gets its scales (one block writes them).
  const dim3 grid = x.batch * x.heads * x.seq == 0 ? dim3(1, 1) : grid_of(x);
  if (half) {
    if (!has_image<quantize_kernel<__half>>()) return false;
    quantize_kernel<__half><<<grid, kThreads, 0, stream>>>(x, amax, out_layout, scale, descale);
  } else {
    if (!has_image<quantize_kernel<__nv_bfloat16>>()) return false;
    quantize_kernel<__nv_bfloat16>
        <<<grid, kThreads, 0, stream>>>(x, amax, out_layout, scale, descale);
  }
  return true;
}

bool e4m3_dequantize_cuda(const void* values, int64_t n, const float* scale, bool half, void* out,
                          cudaStream_t stream) {
  if (n % kVec != 0 || reinterpret_cast<uintptr_t>(values) % 8 != 0 || !aligned16(out)) {
    return false;
  }
  if (n == 0) return true;
  const int64_t vecs = n / kVec;
  int64_t blocks = (vecs + kThreads - 1) / kThreads;
  if (blocks > 4096) blocks = 4096;
  const auto* in = static_cast<const __nv_fp8_storage_t*>(values);
  if (half) {
    if (!has_image<dequantize_kernel<__half>>()) return false;
    dequantize_kernel<__half><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        in, vecs, scale, static_cast<__half*>(out));
  } else {
    if (!has_image<dequantize_kernel<__nv_bfloat16>>()) return false;
    dequantize_kernel<__nv_bfloat16><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        in, vecs, scale, static_cast<__nv_bfloat16*>(out));
  }
  return true;
}

}  // namespace ditbench
