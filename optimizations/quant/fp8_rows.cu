#include <algorithm>

#include "optimizations/kernels/launch.cuh"
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

  __device__ __forceinline__ uint4 fetch(int64_t row, int vec) const {
    return __ldcs(reinterpret_cast<const uint4*>(x + row * row_stride) + vec);
  }
  __device__ __forceinline__ uint4 finish(uint4 raw, int) const { return raw; }
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
  const float inverse = fp8_rows::inverse_of(s);
  if (threadIdx.x == 0) scale[row] = s;
  for (int64_t c = threadIdx.x; c < cols; c += kScalarThreads)
    row_out[c] = to_e4m3(to_float(in[c]), inverse);
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
  if (rows > 0x7fffffff || !has_image<quantize_rows_fp8_scalar_kernel<T>>()) return false;
  quantize_rows_fp8_scalar_kernel<T><<<static_cast<unsigned>(rows), kScalarThreads, 0, stream>>>(
      static_cast<const T*>(x), cols, row_stride, static_cast<__nv_fp8_storage_t*>(out), scale);
  return true;
}

// The signalled quantizer. Block b takes the units (rows_per_flag rows each) b, b + gridDim.x, ...
// in order and streams their rows through `stages` row buffers of shared memory, filled by bulk
// copies (the copy engine of the SM, cp.async.bulk) up to `stages` rows ahead, so that a few SMs
// keep ~200 KB each in flight. The block takes kRows rows a step: each thread loads its kVpt
// vectors of each from the buffers (which the copies may then refill), the block reduces the
// rows' amax together (one barrier a step: the warp maxima alternate between two slots), and
// each thread rounds and stores its own vectors. A unit's counter is raised once all its rows
// are stored: at the next step's barrier.
constexpr int kSignalThreads = 1024;
constexpr int kSignalMaxVpt = 4;  // vectors a thread and row at most: rows of up to 4096 vectors
constexpr int kSignalMaxStages = 8;

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// Where the rows of a block go: unit by unit (every `stride`-th), row by row.
struct UnitWalk {
  int64_t rows, unit;
  int rows_per_flag, within = 0;
  int64_t stride;

  __device__ int64_t row() const { return unit * rows_per_flag + within; }
  __device__ bool done() const { return row() >= rows; }
  __device__ bool last_of_unit() const { return within + 1 == rows_per_flag || row() + 1 == rows; }
  __device__ void advance() {
    if (last_of_unit()) {
      unit += stride;
      within = 0;
    } else {
      ++within;
    }
  }
};

// Rows a block takes a step: as many as keep each thread at 8 vectors in registers, at most 4.
constexpr int signalled_rows_a_step(int vpt) { return vpt <= 2 ? 4 : 8 / vpt; }

template <typename T, int kVpt>
__global__ void __launch_bounds__(kSignalThreads, 1)
    quantize_rows_signalled_kernel(const T* __restrict__ x, int64_t rows, int vecs,
                                   int64_t row_stride, int stages,
                                   __nv_fp8_storage_t* __restrict__ out, float* __restrict__ scale,
                                   int* __restrict__ ready, int rows_per_flag) {
  constexpr int kRows = signalled_rows_a_step(kVpt);
  constexpr int kWarps = kSignalThreads / 32;
  using V = fp8_rows::Vec<T>;
  extern __shared__ __align__(128) uint4 buffers[];  // [stages][vecs]
  __shared__ __align__(8) uint64_t full[kSignalMaxStages];
  __shared__ float partial[2][kRows][kWarps];
  const uint32_t row_bytes = static_cast<uint32_t>(vecs) * 16;
  UnitWalk fill{rows, blockIdx.x, rows_per_flag, 0, gridDim.x};
  UnitWalk take = fill;
  // Thread 0 issues the bulk copy of the row `fill` is at into buffer `stage`.
  auto issue = [&](int stage) {
    const uint32_t bar = smem_address(&full[stage]);
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(row_bytes)
                 : "memory");
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::
            "r"(smem_address(buffers + static_cast<int64_t>(stage) * vecs)),
        "l"(x + fill.row() * row_stride), "r"(row_bytes), "r"(bar)
        : "memory");
    fill.advance();
  };
  auto signal = [&](int64_t unit) {
    __threadfence();  // release: the unit's values and scales before its count
    atomicAdd(ready + unit,
              static_cast<int>(min(int64_t{rows_per_flag}, rows - unit * rows_per_flag)));
  };
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_address(&full[s])));
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    for (int s = 0; s < stages && !fill.done(); ++s) issue(s);
  }
  __syncthreads();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  int64_t pending[kRows];  // units whose rows were all stored in the step before
#pragma unroll
  for (int r = 0; r < kRows; ++r) pending[r] = -1;
  for (int64_t i = 0; !take.done(); i += kRows) {
    V v[kRows][kVpt];
    int64_t row[kRows], finished[kRows];
    float* slot = &partial[(i / kRows) & 1][0][0];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float amax = 0.f;
      row[r] = finished[r] = -1;
      if (!take.done()) {
        row[r] = take.row();
        if (take.last_of_unit()) finished[r] = take.unit;
        take.advance();
        const int stage = static_cast<int>((i + r) % stages);
        const uint32_t parity = static_cast<uint32_t>(((i + r) / stages) & 1);
        asm volatile(
            "{\n"
            ".reg .pred ready;\n"
            "wait:\n"
            "mbarrier.try_wait.parity.shared::cta.b64 ready, [%0], %1;\n"
            "@!ready bra wait;\n"
            "}\n" ::"r"(smem_address(&full[stage])),
            "r"(parity)
            : "memory");
        const uint4* buffer = buffers + static_cast<int64_t>(stage) * vecs;
#pragma unroll
        for (int j = 0; j < kVpt; ++j) {
          const int c = threadIdx.x + j * kSignalThreads;
          v[r][j].raw = c < vecs ? buffer[c] : make_uint4(0, 0, 0, 0);
          amax = fmaxf(amax, v[r][j].amax());
        }
      }
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2)
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
      if (lane == 0) slot[r * kWarps + warp] = amax;
    }
    __syncthreads();  // the buffers are read; the warp maxima are in; the step before is stored
    if (threadIdx.x == 0) {
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (pending[r] >= 0) signal(pending[r]);
      }
      // The buffers' generic reads before the copy engine's writes into them.
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        if (row[r] >= 0 && !fill.done()) issue(static_cast<int>((i + r) % stages));
      }
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      pending[r] = finished[r];
      if (row[r] < 0) continue;
      float amax = 0.f;
      for (int w = 0; w < kWarps; ++w) amax = fmaxf(amax, slot[r * kWarps + w]);
      const float s = fp8_rows::scale_of(amax), inverse = fp8_rows::inverse_of(s);
      __nv_fp8_storage_t* out_row = out + row[r] * vecs * V::kSize;
#pragma unroll
      for (int j = 0; j < kVpt; ++j) {
        const int c = threadIdx.x + j * kSignalThreads;
        if (c < vecs) v[r][j].store_e4m3(out_row + static_cast<int64_t>(c) * V::kSize, inverse);
      }
      if (threadIdx.x == 0) scale[row[r]] = s;
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (pending[r] >= 0) signal(pending[r]);
    }
  }
}

template <typename T>
bool launch_signalled(const void* x, int64_t rows, int64_t cols, int64_t row_stride, void* out,
                      float* scale, int* ready, int rows_per_flag, int blocks,
                      cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t vecs = cols / kVec;
  if (!fp8_rows::aligned16(x) || !fp8_rows::aligned16(out) || cols % kVec != 0 ||
      row_stride % kVec != 0 || vecs == 0 || vecs > int64_t{kSignalThreads} * kSignalMaxVpt ||
      blocks < 2 || blocks % 2 != 0 || rows_per_flag < 1) {
    return false;
  }
  if (rows == 0) return true;
  const int64_t vpt = (vecs + kSignalThreads - 1) / kSignalThreads;
  const auto kernel = vpt <= 1   ? quantize_rows_signalled_kernel<T, 1>
                      : vpt <= 2 ? quantize_rows_signalled_kernel<T, 2>
                                 : quantize_rows_signalled_kernel<T, 4>;
  if (!kernel_has_image(kernel)) return false;
  int device = 0, smem_per_sm = 0, smem_per_block = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device);
  cudaDeviceGetAttribute(&smem_per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  // As many row buffers as fit beside the static shared memory (~1 KB), at least a step's rows;
  // and over half an SM's shared memory in any case: one block per SM, never beside a GEMM block.
  const int64_t row_bytes = vecs * 16;
  const int stages = static_cast<int>(
      std::min<int64_t>(kSignalMaxStages, (smem_per_block - 8 * 1024) / row_bytes));
  if (stages < signalled_rows_a_step(static_cast<int>(vpt))) return false;  // a step's rows
  const int smem = static_cast<int>(std::max<int64_t>(stages * row_bytes, smem_per_sm / 2 + 1));
  if (smem > smem_per_block - 8 * 1024 ||
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) !=
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
  config.blockDim = dim3(kSignalThreads);
  config.dynamicSmemBytes = static_cast<size_t>(smem);
  config.stream = stream;
  config.attrs = &cluster;
  config.numAttrs = 1;
  if (cudaLaunchKernelEx(&config, kernel, static_cast<const T*>(x), rows, static_cast<int>(vecs),
                         row_stride, stages, static_cast<__nv_fp8_storage_t*>(out), scale, ready,
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
