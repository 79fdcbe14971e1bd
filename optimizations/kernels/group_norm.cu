#include <cuda_bf16.h>

#include "optimizations/kernels/float_convert.cuh"
#include "optimizations/kernels/group_norm_cuda.h"

namespace ditbench {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 16384;  // elements of a group one statistics block sums

int64_t chunks_of(int64_t group_elements) { return (group_elements + kChunk - 1) / kChunk; }

// Block sums of a and b (float or double), left in every thread; `shared` holds 2 values per warp.
template <typename A>
__device__ __forceinline__ void block_sum2(A& a, A& b, A* shared) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
    a += __shfl_xor_sync(0xffffffffu, a, offset);
    b += __shfl_xor_sync(0xffffffffu, b, offset);
  }
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) shared[2 * warp] = a, shared[2 * warp + 1] = b;
  __syncthreads();
  a = 0, b = 0;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) a += shared[2 * w], b += shared[2 * w + 1];
}

template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

// Grid (chunks, N * G): block (k, ng) sums x - x0 and its square over chunk k of group ng
// (contiguous, group_elements long, a multiple of kVec) into partial[ng][k] = {sum, sum of
// squares}, reading kVec elements at a time.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    group_partial_sums(const T* __restrict__ x, float2* __restrict__ partial,
                       int64_t group_elements, int64_t chunks) {
  __shared__ float shared[2 * kThreads / 32];
  const T* group = x + blockIdx.y * group_elements;
  const float x0 = to_float(group[0]);
  const int64_t begin = blockIdx.x * kChunk;
  const int64_t end = begin + kChunk < group_elements ? begin + kChunk : group_elements;
  float sum = 0.f, squares = 0.f;
  for (int64_t i = begin + threadIdx.x * kVec; i < end; i += kThreads * kVec) {
    const Pack<T, kVec> in = *reinterpret_cast<const Pack<T, kVec>*>(group + i);
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const float d = to_float(in.v[j]) - x0;
      sum += d;
      squares += d * d;
    }
  }
  block_sum2(sum, squares, shared);
  if (threadIdx.x == 0) partial[blockIdx.y * chunks + blockIdx.x] = make_float2(sum, squares);
}

// One block per group: the partial sums merged in float64 into {mean, rstd}.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    group_statistics(const T* __restrict__ x, const float2* __restrict__ partial,
                     float2* __restrict__ stats, int64_t group_elements, int64_t chunks,
                     float eps) {
  __shared__ double shared[2 * kThreads / 32];
  double sum = 0, squares = 0;
  for (int64_t k = threadIdx.x; k < chunks; k += kThreads) {
    const float2 p = partial[blockIdx.x * chunks + k];
    sum += p.x;
    squares += p.y;
  }
  block_sum2(sum, squares, shared);
  if (threadIdx.x != 0) return;
  const double n = static_cast<double>(group_elements);
  const double shifted_mean = sum / n;
  double variance = squares / n - shifted_mean * shifted_mean;
  if (variance < 0) variance = 0;
  const double mean = shifted_mean + to_float(x[blockIdx.x * group_elements]);
  stats[blockIdx.x] = make_float2(static_cast<float>(mean),
                                  static_cast<float>(rsqrt(variance + static_cast<double>(eps))));
}

// Elementwise: kVec consecutive elements a thread (kVec divides S, so they share a channel).
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    group_norm_apply(const T* __restrict__ x, T* __restrict__ out, const T* __restrict__ weight,
                     const T* __restrict__ bias, const float2* __restrict__ stats, int64_t channels,
                     int64_t spatial, int64_t channels_per_group, int64_t packs, bool silu) {
  for (int64_t p = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x; p < packs;
       p += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t i = p * kVec;
    const int64_t nc = i / spatial;  // n * C + c
    const int64_t c = nc % channels;
    const float2 s = stats[nc / channels_per_group];  // groups are contiguous runs of channels
    const float a = s.y * to_float(weight[c]);
    const float b = to_float(bias[c]) - s.x * a;
    Pack<T, kVec> in = *reinterpret_cast<const Pack<T, kVec>*>(x + i), res;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      float y = to_float(from_float<T>(to_float(in.v[j]) * a + b));
      if (silu) y = y / (1.f + expf(-y));
      res.v[j] = from_float<T>(y);
    }
    *reinterpret_cast<Pack<T, kVec>*>(out + i) = res;
  }
}

template <typename Kernel>
bool has_image(Kernel kernel) {
  cudaFuncAttributes attributes;
  if (cudaFuncGetAttributes(&attributes, kernel) != cudaSuccess) {
    cudaGetLastError();  // no image for this device: the caller runs ATen's GroupNorm
    return false;
  }
  return true;
}

template <typename T>
bool launch(const T* x, T* out, const T* weight, const T* bias, float* workspace, int64_t batch,
            int64_t channels, int64_t spatial, int64_t groups, float eps, bool silu,
            cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const bool vectors = spatial % kVec == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (!has_image(group_partial_sums<T, 1>) || !has_image(group_statistics<T>) ||
      !has_image(vectors ? group_norm_apply<T, kVec> : group_norm_apply<T, 1>)) {
    return false;
  }
  const int64_t groups_total = batch * groups;
  const int64_t group_elements = channels / groups * spatial;
  if (groups_total == 0 || group_elements == 0) return true;
  if (groups_total > 65535) return false;  // the statistics grid's y dimension
  const int64_t chunks = chunks_of(group_elements);
  auto* partial = reinterpret_cast<float2*>(workspace);
  auto* stats = partial + groups_total * chunks;
  const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>(groups_total));
  if (vectors) {  // S, and so every group's length, a multiple of kVec
    group_partial_sums<T, kVec><<<grid, kThreads, 0, stream>>>(x, partial, group_elements, chunks);
  } else {
    group_partial_sums<T, 1><<<grid, kThreads, 0, stream>>>(x, partial, group_elements, chunks);
  }
  group_statistics<T><<<static_cast<unsigned>(groups_total), kThreads, 0, stream>>>(
      x, partial, stats, group_elements, chunks, eps);
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const int vec = vectors ? kVec : 1;
  const int64_t packs = batch * channels * spatial / vec;
  const int64_t wanted = (packs + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(wanted < 16LL * sms ? wanted : 16LL * sms);
  if (vectors) {
    group_norm_apply<T, kVec><<<blocks, kThreads, 0, stream>>>(
        x, out, weight, bias, stats, channels, spatial, channels / groups, packs, silu);
  } else {
    group_norm_apply<T, 1><<<blocks, kThreads, 0, stream>>>(
        x, out, weight, bias, stats, channels, spatial, channels / groups, packs, silu);
  }
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace

int64_t group_norm_workspace_floats(int64_t batch, int64_t channels, int64_t spatial,
                                    int64_t groups) {
  const int64_t groups_total = batch * groups;
  return 2 * groups_total * (chunks_of(channels / groups * spatial) + 1);
}

bool group_norm_cuda(const void* x, void* out, const void* weight, const void* bias,
                     float* workspace, NormDtype dtype, int64_t batch, int64_t channels,
                     int64_t spatial, int64_t groups, float eps, bool silu, cudaStream_t stream) {
  switch (dtype) {
    case NormDtype::float32:
      return launch(static_cast<const float*>(x), static_cast<float*>(out),
                    static_cast<const float*>(weight), static_cast<const float*>(bias), workspace,
                    batch, channels, spatial, groups, eps, silu, stream);
    case NormDtype::bfloat16:
      return launch(static_cast<const __nv_bfloat16*>(x), static_cast<__nv_bfloat16*>(out),
                    static_cast<const __nv_bfloat16*>(weight),
                    static_cast<const __nv_bfloat16*>(bias), workspace, batch, channels, spatial,
                    groups, eps, silu, stream);
  }
  return false;
}

}  // namespace ditbench
