#include <algorithm>

#include "optimizations/quant/fp8_rows.cuh"
#include "optimizations/quant/fp8_rows_cuda.h"

namespace ditbench {
namespace {

using fp8_rows::to_e4m3;
using fp8_rows::to_float;

// Rows of T read with 16-byte streaming loads (each byte is read once).
template <typename T>
struct StridedRows {
  using Elem = T;
  const T* x;
  int64_t row_stride;  // elements

  __device__ __forceinline__ uint4 load(int64_t row, int vec) const {
    return __ldcs(reinterpret_cast<const uint4*>(x + row * row_stride) + vec);
  }
};

// The general case (rows that are not 16-byte vectors, or too long to hold): one block per row,
// read once for the amax and again, mostly from cache, to quantize.
constexpr int kScalarThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kScalarThreads)
    quantize_rows_fp8_scalar_kernel(const T* __restrict__ x, int64_t cols, int64_t row_stride,
                                    __nv_fp8_storage_t* __restrict__ out,
                                    float* __restrict__ scale) {
  __shared__ float partial[fp8_rows::kMaxWarps];
  const int64_t row = blockIdx.x;
  const T* in = x + row * row_stride;
  __nv_fp8_storage_t* row_out = out + row * cols;
  float amax = 0.f;
  for (int64_t c = threadIdx.x; c < cols; c += kScalarThreads) {
    amax = fmaxf(amax, fabsf(to_float(in[c])));
  }
  const float s = fp8_rows::scale_of(fp8_rows::block_max(amax, partial));
  if (threadIdx.x == 0) scale[row] = s;
  for (int64_t c = threadIdx.x; c < cols; c += kScalarThreads)
    row_out[c] = to_e4m3(to_float(in[c]), s);
}

template <typename T>
bool launch(const void* x, int64_t rows, int64_t cols, int64_t row_stride, void* out, float* scale,
            cudaStream_t stream) {
  if (rows == 0 || cols == 0) return true;
  constexpr int kVec = 16 / sizeof(T);
  const bool vectors = fp8_rows::aligned16(x) && fp8_rows::aligned16(out) && cols % kVec == 0 &&
                       row_stride % kVec == 0;
  if (vectors && fp8_rows::launch_held_rows(StridedRows<T>{static_cast<const T*>(x), row_stride},
                                            rows, cols / kVec, out, scale, stream)) {
    return true;
  }
  if (rows > 0x7fffffff || !fp8_rows::has_image<quantize_rows_fp8_scalar_kernel<T>>()) return false;
  quantize_rows_fp8_scalar_kernel<T><<<static_cast<unsigned>(rows), kScalarThreads, 0, stream>>>(
      static_cast<const T*>(x), cols, row_stride, static_cast<__nv_fp8_storage_t*>(out), scale);
  return true;
}

// The signalled quantizer: block b takes the units (rows_per_flag rows each) b, b + gridDim.x, ...
// and quantizes each with `groups` groups of `group_threads` threads (kSignalVecs vectors a
// thread), one row per group at a time, loading a group's next row while it reduces and stores
// the current one; a unit's counter is raised once, when all its rows are written.
constexpr int kSignalThreads = 1024;
constexpr int kSignalVecs = 4;
constexpr int kSignalMaxGroups = 15;  // named barriers 1..15; 0 is __syncthreads'

__device__ __forceinline__ void group_sync(int group, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(group + 1), "r"(threads) : "memory");
}

template <typename T>
__global__ void __launch_bounds__(kSignalThreads, 1)
    quantize_rows_signalled_kernel(StridedRows<T> source, int64_t rows, int vecs, int group_threads,
                                   __nv_fp8_storage_t* __restrict__ out, float* __restrict__ scale,
                                   int* __restrict__ ready, int rows_per_flag) {
  using V = fp8_rows::Vec<T>;
  __shared__ float partial[fp8_rows::kMaxWarps];
  const int groups = blockDim.x / group_threads, group = threadIdx.x / group_threads;
  const int t = threadIdx.x - group * group_threads, warps = group_threads / 32;
  float* group_partial = partial + group * warps;
  const int64_t units = (rows + rows_per_flag - 1) / rows_per_flag;
  const int per_unit = (rows_per_flag + groups - 1) / groups;  // rows a group takes per unit
  const int64_t my_units =
      blockIdx.x < units ? (units - blockIdx.x + gridDim.x - 1) / gridDim.x : 0;
  // The group's n-th row, or -1 where its share of the unit runs past the unit or the rows.
  auto row_of = [&](int64_t n) -> int64_t {
    const int64_t unit = blockIdx.x + (n / per_unit) * gridDim.x;
    const int within = group + static_cast<int>(n % per_unit) * groups;
    const int64_t row = unit * rows_per_flag + within;
    return n < my_units * per_unit && within < rows_per_flag && row < rows ? row : -1;
  };
  auto load = [&](V(&v)[kSignalVecs], int64_t row) {
#pragma unroll
    for (int i = 0; i < kSignalVecs; ++i) {
      const int c = t + i * group_threads;
      v[i].raw = row >= 0 && c < vecs ? source.load(row, c) : make_uint4(0, 0, 0, 0);
    }
  };
  V cur[kSignalVecs];
  load(cur, row_of(0));
  for (int64_t n = 0; n < my_units * per_unit; ++n) {
    const int64_t row = row_of(n);
    V next[kSignalVecs];
    load(next, row_of(n + 1));  // in flight while this row is reduced and stored
    float amax = 0.f;
#pragma unroll
    for (int i = 0; i < kSignalVecs; ++i) amax = fmaxf(amax, cur[i].amax());  // zero past vecs
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2)
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
    if (t % 32 == 0) group_partial[t / 32] = amax;
    group_sync(group, group_threads);
    for (int w = 0; w < warps; ++w) amax = fmaxf(amax, group_partial[w]);
    if (row >= 0) {
      const float s = fp8_rows::scale_of(amax);
      const float inverse = __frcp_rn(s);
      __nv_fp8_storage_t* out_row = out + row * vecs * V::kSize;
#pragma unroll
      for (int i = 0; i < kSignalVecs; ++i) {
        const int c = t + i * group_threads;
        if (c < vecs) cur[i].store_e4m3(out_row + static_cast<int64_t>(c) * V::kSize, s, inverse);
      }
      if (t == 0) scale[row] = s;
    }
    group_sync(group, group_threads);  // group_partial is free again
    if ((n + 1) % per_unit == 0) {     // the unit's last rows: every group's stores issued
      __syncthreads();
      if (threadIdx.x == 0) {
        const int64_t unit = blockIdx.x + (n / per_unit) * gridDim.x;
        __threadfence();  // release: the unit's values and scales before its count
        atomicAdd(ready + unit,
                  static_cast<int>(std::min<int64_t>(rows_per_flag, rows - unit * rows_per_flag)));
      }
    }
#pragma unroll
    for (int i = 0; i < kSignalVecs; ++i) cur[i] = next[i];
  }
}

template <typename T>
bool launch_signalled(const void* x, int64_t rows, int64_t cols, int64_t row_stride, void* out,
                      float* scale, int* ready, int rows_per_flag, int blocks,
                      cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t vecs = cols / kVec;
  if (!fp8_rows::aligned16(x) || !fp8_rows::aligned16(out) || cols % kVec != 0 ||
      row_stride % kVec != 0 || vecs == 0 || vecs > int64_t{kSignalThreads} * kSignalVecs ||
      blocks < 2 || blocks % 2 != 0 || rows_per_flag < 1) {
    return false;
  }
  if (rows == 0) return true;
  constexpr auto kernel = quantize_rows_signalled_kernel<T>;
  if (!fp8_rows::has_image<kernel>()) return false;
  const int group_threads = fp8_rows::threads_for(vecs, kSignalVecs);
  const int groups = std::min(kSignalThreads / group_threads, kSignalMaxGroups);
  // Over half an SM's shared memory (unused): one block per SM, never beside a GEMM block.
  int device = 0, smem_per_sm = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device);
  const int smem = smem_per_sm / 2 + 1;
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) !=
      cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  cudaLaunchAttribute cluster;
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = 2;
  cluster.val.clusterDim.y = 1;
  cluster.val.clusterDim.z = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(blocks));
  config.blockDim = dim3(static_cast<unsigned>(groups * group_threads));
  config.dynamicSmemBytes = static_cast<size_t>(smem);
  config.stream = stream;
  config.attrs = &cluster;
  config.numAttrs = 1;
  const StridedRows<T> source{static_cast<const T*>(x), row_stride};
  if (cudaLaunchKernelEx(&config, kernel, source, rows, static_cast<int>(vecs), group_threads,
                         static_cast<__nv_fp8_storage_t*>(out), scale, ready,
                         rows_per_flag) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return true;
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

bool quantize_rows_fp8_signalled_cuda(const void* x, Fp8RowsInput dtype, int64_t rows, int64_t cols,
                                      int64_t row_stride, void* out, float* scale, int* ready,
                                      int rows_per_flag, int blocks, cudaStream_t stream) {
  switch (dtype) {
    case Fp8RowsInput::float32:
      return launch_signalled<float>(x, rows, cols, row_stride, out, scale, ready, rows_per_flag,
                                     blocks, stream);
    case Fp8RowsInput::float16:
      return launch_signalled<__half>(x, rows, cols, row_stride, out, scale, ready, rows_per_flag,
                                      blocks, stream);
    case Fp8RowsInput::bfloat16:
      return launch_signalled<__nv_bfloat16>(x, rows, cols, row_stride, out, scale, ready,
                                             rows_per_flag, blocks, stream);
  }
  return false;
}

}  // namespace ditbench
