#pragma once
// Device code of the row-wise e4m3 quantization, shared by the row quantizer (fp8_rows.cu) and
// the producers that emit e4m3 directly (optimizations/kernels/fused_fp8.cu), so every path
// rounds as quantize_rows_fp8's ATen form does: scale = amax / 448 (1 for a zero row), value =
// round-to-nearest-even(clamp(x * (1 / scale), ±448)), the divisions and the product IEEE.
//
// A row is held in registers while its amax is reduced: a block of `threads` (a multiple of 32,
// at most 1024) quantizes one row at a time; thread t owns the 16-byte input vectors t,
// t + threads, ... of it, kVecs of them at most. One read of the input, one write of the e4m3
// values.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "optimizations/kernels/launch.cuh"

namespace ditbench {
namespace fp8_rows {

constexpr int kMaxThreads = 1024;
constexpr int kMaxWarps = kMaxThreads / 32;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// The smallest amax a scale is made from (quant.h's kFp8MinAmax): below it, 448 / amax and the
// reciprocal of amax / 448 would overflow float32, turning zeros into NaN (0 * inf).
constexpr float kMinAmax = 0x1p-112f;

// max(amax, kMinAmax) / 448 by IEEE division (as ATen divides by a tensor), 1 for an all-zero
// row.
__device__ __forceinline__ float scale_of(float amax) {
  return amax > 0.f ? __fdiv_rn(fmaxf(amax, kMinAmax), 448.f) : 1.f;
}

// 1 / scale by IEEE division: the rows are multiplied by it (one multiplication an element
// where a division would cost about ten instructions).
__device__ __forceinline__ float inverse_of(float scale) { return __frcp_rn(scale); }

// The saturating conversion of v * inverse (IEEE, not fused): the clamp to ±448 followed by
// round-to-nearest-even.
__device__ __forceinline__ __nv_fp8_storage_t to_e4m3(float v, float inverse) {
  return __nv_cvt_float_to_fp8(__fmul_rn(v, inverse), __NV_SATFINITE, __NV_E4M3);
}

// Maximum over the block. `partial` holds kMaxWarps floats; every thread gets the result.
// fmaxf drops NaN where ATen's max keeps it: rows holding NaN differ (their values are NaN
// either way only where the input is).
__device__ __forceinline__ float block_max(float v, float* partial) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int warps = (blockDim.x + 31) / 32;
  if (warps == 1) return v;
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float m = partial[0];
  for (int w = 1; w < warps; ++w) m = fmaxf(m, partial[w]);
  __syncthreads();  // partial may be reused
  return m;
}

// A 16-byte vector of E and the e4m3 bytes of its elements (16 / sizeof(E) of them).
template <typename E>
struct Vec {
  static constexpr int kSize = 16 / sizeof(E);
  uint4 raw;

  __device__ __forceinline__ float operator[](int j) const {
    return to_float(reinterpret_cast<const E*>(&raw)[j]);
  }
  __device__ __forceinline__ float amax() const {
    float m = 0.f;
#pragma unroll
    for (int j = 0; j < kSize; ++j) m = fmaxf(m, fabsf((*this)[j]));
    return m;
  }
  // Stores the kSize e4m3 bytes of the elements times `inverse` at out (aligned to kSize bytes),
  // converted two at a time.
  __device__ __forceinline__ void store_e4m3(__nv_fp8_storage_t* out, float inverse) const {
    alignas(16) __nv_fp8x2_storage_t q[kSize / 2];
#pragma unroll
    for (int j = 0; j < kSize / 2; ++j) {
      q[j] = __nv_cvt_float2_to_fp8x2(
          make_float2(__fmul_rn((*this)[2 * j], inverse), __fmul_rn((*this)[2 * j + 1], inverse)),
          __NV_SATFINITE, __NV_E4M3);
    }
    if constexpr (kSize == 8) {
      *reinterpret_cast<uint2*>(out) = *reinterpret_cast<const uint2*>(q);
    } else if constexpr (kSize == 4) {
      *reinterpret_cast<uint32_t*>(out) = *reinterpret_cast<const uint32_t*>(q);
    } else {
      *reinterpret_cast<uint4*>(out) = *reinterpret_cast<const uint4*>(q);
    }
  }
};

// Writes one row held in registers as e4m3 given the row's amax over the block: v[i] is the row's
// vector threadIdx.x + i * blockDim.x (those at or past `vecs` are ignored); thread 0 writes its
// scale.
template <typename E, int kVecs>
__device__ __forceinline__ void store_held_row(const Vec<E> (&v)[kVecs], int vecs,
                                               __nv_fp8_storage_t* __restrict__ out_row,
                                               float* __restrict__ scale_out, float row_amax) {
  constexpr int kSize = Vec<E>::kSize;
  const float scale = scale_of(row_amax), inverse = inverse_of(scale);
  if (threadIdx.x == 0) *scale_out = scale;
#pragma unroll
  for (int i = 0; i < kVecs; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < vecs) v[i].store_e4m3(out_row + static_cast<int64_t>(c) * kSize, inverse);
  }
}

// Quantizes one row held in registers (laid out as for store_held_row): its amax reduced over the
// block, then stored.
template <typename E, int kVecs>
__device__ __forceinline__ void quantize_held_row(const Vec<E> (&v)[kVecs], int vecs,
                                                  __nv_fp8_storage_t* __restrict__ out_row,
                                                  float* __restrict__ scale_out, float* partial) {
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < kVecs; ++i) {
    if (threadIdx.x + i * blockDim.x < vecs) amax = fmaxf(amax, v[i].amax());
  }
  store_held_row<E, kVecs>(v, vecs, out_row, scale_out, block_max(amax, partial));
}

// Row quantization of what a Source yields: each block walks rows with a grid stride, holding a
// whole row in registers (every load in flight at once) and issuing the next row's loads before
// it transforms, reduces and quantizes this one, so they stay in flight across the block
// reduction. A Source has `using Elem` (the element type of its vectors), `uint4 fetch(int64_t
// row, int vec) const` (the row's raw 16-byte vector `vec`) and `uint4 finish(uint4 raw, int vec)
// const` (from it, the vector of values the unfused producer would have stored).
template <typename Source, int kVecs>
__global__ void __launch_bounds__(kMaxThreads)
    quantize_rows_held_kernel(Source source, int64_t rows, int vecs,
                              __nv_fp8_storage_t* __restrict__ out, float* __restrict__ scale) {
  using E = typename Source::Elem;
  __shared__ float partial[kMaxWarps];
  uint4 next[kVecs];
  auto fetch = [&](int64_t row) {
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      const int c = threadIdx.x + i * blockDim.x;
      next[i] = c < vecs && row < rows ? source.fetch(row, c) : make_uint4(0, 0, 0, 0);
    }
  };
  // Two rows of 8 vectors a thread would not fit in the 64 registers of 1024 threads: those
  // rows (over 32,768 bfloat16 columns) are loaded when their turn comes.
  constexpr bool kPrefetch = kVecs <= 4;
  if (kPrefetch) fetch(blockIdx.x);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    if (!kPrefetch) fetch(row);
    Vec<E> v[kVecs];
#pragma unroll
    for (int i = 0; i < kVecs; ++i) v[i].raw = next[i];
    if (kPrefetch) fetch(row + gridDim.x);
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      const int c = threadIdx.x + i * blockDim.x;
      if (c < vecs) v[i].raw = source.finish(v[i].raw, c);
    }
    quantize_held_row<E, kVecs>(v, vecs, out + row * vecs * Vec<E>::kSize, scale + row, partial);
  }
}

// Threads per row for rows of `vecs` vectors at kVecs per thread: a multiple of 32.
inline int threads_for(int64_t vecs, int vecs_per_thread) {
  const int64_t threads = (vecs + vecs_per_thread - 1) / vecs_per_thread;
  return static_cast<int>((threads + 31) / 32 * 32);
}

// Launches quantize_rows_held_kernel for `rows` rows of `vecs` vectors with kVecs vectors per
// thread (launch_held_rows picks it): as many blocks as are resident at once, never more than
// rows. Returns false (launching nothing) when this build has no kernel image for the device.
template <typename Source, int kVecs>
bool launch_held_rows_as(const Source& source, int64_t rows, int64_t vecs, void* out, float* scale,
                         cudaStream_t stream) {
  constexpr auto kernel = quantize_rows_held_kernel<Source, kVecs>;
  if (!has_image<kernel>()) return false;
  const int threads = threads_for(vecs, kVecs);
  // Resident blocks by block size (a multiple of 32 up to kMaxThreads), asked once each.
  static std::array<std::atomic<int64_t>, kMaxThreads / 32 + 1> resident_by_threads{};
  auto& known = resident_by_threads[threads / 32];
  int64_t resident = known.load(std::memory_order_relaxed);
  if (resident == 0) {
    resident = resident_blocks(kernel, threads);
    if (resident == 0) return false;
    known.store(resident, std::memory_order_relaxed);
  }
  kernel<<<static_cast<unsigned>(rows < resident ? rows : resident), threads, 0, stream>>>(
      source, rows, static_cast<int>(vecs), static_cast<__nv_fp8_storage_t*>(out), scale);
  return true;
}

// Rows of over 1024 vectors (the MLP's 12,288 and 15,360 columns) are held 8 vectors a thread
// without loading ahead, more rows resident; DITBENCH_FP8_LONG_ROWS=4 holds them 4 a thread with
// the next row loaded early, as shorter rows are (for comparison).
inline bool long_rows_by_4() {
  static const bool by_4 = [] {
    const char* env = std::getenv("DITBENCH_FP8_LONG_ROWS");
    return env != nullptr && env[0] == '4';
  }();
  return by_4;
}

template <typename Source>
bool launch_held_rows(const Source& source, int64_t rows, int64_t vecs, void* out, float* scale,
                      cudaStream_t stream) {
  if (rows == 0 || vecs == 0) return true;
  if (vecs <= int64_t{kMaxThreads} * 4 && (vecs <= 1024 || long_rows_by_4())) {
    return launch_held_rows_as<Source, 4>(source, rows, vecs, out, scale, stream);
  }
  if (vecs <= int64_t{kMaxThreads} * 8) {
    return launch_held_rows_as<Source, 8>(source, rows, vecs, out, scale, stream);
  }
  return false;
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace fp8_rows
}  // namespace ditbench
