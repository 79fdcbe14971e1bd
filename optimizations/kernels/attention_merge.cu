#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "optimizations/kernels/attention_merge_cuda.h"
#include "optimizations/kernels/float_convert.cuh"

namespace ditbench {
namespace {

constexpr int kThreads = 256;

// kVec consecutive elements: one 16-byte access when they fill it, else one element.
template <typename T, int kVec>
struct alignas(kVec * sizeof(T)) Chunk {
  T v[kVec];
};

template <typename T, int kVec>
__device__ __forceinline__ Chunk<T, kVec> load_chunk(const T* p) {
  return *reinterpret_cast<const Chunk<T, kVec>*>(p);
}

__device__ __forceinline__ int64_t offset_of(const Bhsd& t, int64_t b, int64_t h, int64_t s) {
  return b * t.batch_stride + h * t.head_stride + s * t.seq_stride;
}

// Thread i handles chunk i % chunks of query row i / chunks; rows are walked heads-inner when the
// output holds a token's heads next to each other (the [B, S, H, D] storage attention kernels
// write), so neighbouring threads touch neighbouring memory.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    merge_kernel(MergeParts parts, Bhsd out, float* __restrict__ lse_out, bool heads_inner) {
  const int64_t B = out.batch, H = out.heads, S = out.seq;
  const int64_t chunks = out.dim / kVec, total = B * H * S * chunks;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / chunks, c = (i - row * chunks) * kVec;
    int64_t b, h, s;
    if (heads_inner) {
      h = row % H, s = (row / H) % S, b = row / (H * S);
    } else {
      s = row % S, h = (row / S) % H, b = row / (S * H);
    }
    float lse[kMaxMergeParts];
    float top = -INFINITY;
#pragma unroll
    for (int p = 0; p < kMaxMergeParts; ++p) {
      if (p >= parts.count) break;
      lse[p] = static_cast<const float*>(parts.lse[p].data)[offset_of(parts.lse[p], b, h, s)];
      top = fmaxf(top, lse[p]);
    }
    float acc[kVec] = {};
    float weights = 0.f;
    if (top != -INFINITY) {
#pragma unroll
      for (int p = 0; p < kMaxMergeParts; ++p) {
        if (p >= parts.count) break;
        const float w = expf(lse[p] - top);
        if (!(w > 0.f)) continue;  // all keys masked (or negligible): its output is not read
        weights += w;
        const auto chunk = load_chunk<T, kVec>(static_cast<const T*>(parts.out[p].data) +
                                               offset_of(parts.out[p], b, h, s) + c);
#pragma unroll
        for (int j = 0; j < kVec; ++j) acc[j] += w * to_float(chunk.v[j]);
      }
    }
    Chunk<T, kVec> result;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      result.v[j] = from_float<T>(weights > 0.f ? acc[j] / weights : 0.f);
    }
    *reinterpret_cast<Chunk<T, kVec>*>(static_cast<T*>(const_cast<void*>(out.data)) +
                                       offset_of(out, b, h, s) + c) = result;
    if (c == 0 && lse_out) {
      lse_out[(b * H + h) * S + s] = weights > 0.f ? top + logf(weights) : -INFINITY;
    }
  }
}

template <typename T, int kVec>
bool launch(const MergeParts& parts, Bhsd out, float* lse_out, cudaStream_t stream) {
  static const int64_t resident = [] {
    int device = 0, sms = 0, per_sm = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, merge_kernel<T, kVec>, kThreads,
                                                      0) != cudaSuccess) {
      cudaGetLastError();  // clear "no kernel image" so later launches do not report it
      return int64_t{0};
    }
    return static_cast<int64_t>(sms) * (per_sm > 0 ? per_sm : 1);
  }();
  if (resident == 0) return false;
  const int64_t work = out.batch * out.heads * out.seq * (out.dim / kVec);
  if (work == 0) return true;
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  const bool heads_inner = out.head_stride < out.seq_stride;
  merge_kernel<T, kVec>
      <<<static_cast<unsigned>(blocks < resident ? blocks : resident), kThreads, 0, stream>>>(
          parts, out, lse_out, heads_inner);
  return true;
}

template <typename T>
bool launch_for(const MergeParts& parts, Bhsd out, float* lse_out, bool vector,
                cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  return vector ? launch<T, kVec>(parts, out, lse_out, stream)
                : launch<T, 1>(parts, out, lse_out, stream);
}

}  // namespace

bool merge_attention_cuda(const MergeParts& parts, KernelDtype dtype, Bhsd out, float* lse_out,
                          bool vector, cudaStream_t stream) {
  if (parts.count < 1 || parts.count > kMaxMergeParts) return false;
  switch (dtype) {
    case KernelDtype::kFloat:
      return launch_for<float>(parts, out, lse_out, vector, stream);
    case KernelDtype::kHalf:
      return launch_for<__half>(parts, out, lse_out, vector, stream);
    case KernelDtype::kBFloat16:
      return launch_for<__nv_bfloat16>(parts, out, lse_out, vector, stream);
  }
  return false;
}

}  // namespace ditbench
