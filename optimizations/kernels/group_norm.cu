#include <cuda_bf16.h>

#include "optimizations/kernels/float_convert.cuh"
#include "optimizations/kernels/group_norm_cuda.h"
#include "optimizations/kernels/video_resample.cuh"

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

// One block per (sample, group) ng: the partial sums merged in float64 into {mean, rstd}; the
// sums are of x - x0 with x0 = x[(ng / groups) * sample_stride + (ng % groups) * group_stride],
// the group's first element.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    group_statistics(const T* __restrict__ x, const float2* __restrict__ partial,
                     float2* __restrict__ stats, int64_t group_elements, int64_t chunks, float eps,
                     int64_t groups, int64_t sample_stride, int64_t group_stride) {
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
  const double mean =
      shifted_mean +
      to_float(x[blockIdx.x / groups * sample_stride + blockIdx.x % groups * group_stride]);
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

template <typename T>
bool launch(const T* x, T* out, const T* weight, const T* bias, float* workspace, int64_t batch,
            int64_t channels, int64_t spatial, int64_t groups, float eps, bool silu,
            cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const bool vectors = spatial % kVec == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                       reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (!kernel_has_image(group_partial_sums<T, 1>) || !kernel_has_image(group_statistics<T>) ||
      !kernel_has_image(vectors ? group_norm_apply<T, kVec> : group_norm_apply<T, 1>)) {
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
      x, partial, stats, group_elements, chunks, eps, groups, groups * group_elements,
      group_elements);
  const int vec = vectors ? kVec : 1;
  const int64_t packs = batch * channels * spatial / vec;
  const unsigned blocks = grid_stride_blocks(packs, kThreads, 16);
  if (vectors) {
    group_norm_apply<T, kVec><<<blocks, kThreads, 0, stream>>>(
        x, out, weight, bias, stats, channels, spatial, channels / groups, packs, silu);
  } else {
    group_norm_apply<T, 1><<<blocks, kThreads, 0, stream>>>(
        x, out, weight, bias, stats, channels, spatial, channels / groups, packs, silu);
  }
  return cudaGetLastError() == cudaSuccess;
}

// ---- channels-last (NDHWC) ----

// Positions of one sample a statistics block sums (about 4 * kChunk elements in all).
int64_t ndhwc_positions_per_block(int64_t channels) {
  const int64_t p = 4 * kChunk / channels;
  return p > 0 ? p : 1;
}

// Grid (chunks, N): block (k, n) sums x - x0 (x0: the group's first element) and its square over
// positions [k * positions_per_block, (k + 1) * positions_per_block) of sample n, for every group
// at once, into partial[(n * G + g) * chunks + k]. Thread t reads channel vector t % lanes of
// every (kThreads / lanes)-th position; the block's sums per channel, then per group, are added
// in a fixed order (deterministic). Dynamic shared memory: (2 kVec kThreads + 2 C) floats.
template <typename T, int kVec>
__global__ void __launch_bounds__(kThreads)
    group_partial_sums_ndhwc(const T* __restrict__ x, float2* __restrict__ partial,
                             int64_t positions, int channels, int channels_per_group,
                             int64_t positions_per_block, int64_t chunks) {
  extern __shared__ float shared[];
  const int lanes = channels / kVec, rows = kThreads / lanes;
  const int lane = threadIdx.x % lanes, row = threadIdx.x / lanes;
  const T* sample = x + blockIdx.y * positions * channels;
  float x0[kVec], sum[kVec], squares[kVec];
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const int c = lane * kVec + j;
    x0[j] = to_float(sample[c / channels_per_group * channels_per_group]);
    sum[j] = 0.f, squares[j] = 0.f;
  }
  if (row < rows) {
    const int64_t begin = blockIdx.x * positions_per_block;
    const int64_t end =
        begin + positions_per_block < positions ? begin + positions_per_block : positions;
    for (int64_t pos = begin + row; pos < end; pos += rows) {
      const Pack<T, kVec> in =
          *reinterpret_cast<const Pack<T, kVec>*>(sample + pos * channels + lane * kVec);
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        const float d = to_float(in.v[j]) - x0[j];
        sum[j] += d;
        squares[j] += d * d;
      }
    }
  }
  float* mine = shared + threadIdx.x * 2 * kVec;  // zeros from threads past the last row
#pragma unroll
  for (int j = 0; j < kVec; ++j) mine[j] = sum[j], mine[kVec + j] = squares[j];
  __syncthreads();
  float* channel_sums = shared + 2 * kVec * kThreads;
  for (int c = threadIdx.x; c < channels; c += kThreads) {
    float s = 0.f, q = 0.f;
    for (int r = 0; r < rows; ++r) {
      const float* t = shared + (r * lanes + c / kVec) * 2 * kVec;
      s += t[c % kVec];
      q += t[kVec + c % kVec];
    }
    channel_sums[2 * c] = s, channel_sums[2 * c + 1] = q;
  }
  __syncthreads();
  const int groups = channels / channels_per_group;
  for (int g = threadIdx.x; g < groups; g += kThreads) {
    float s = 0.f, q = 0.f;
    for (int c = g * channels_per_group; c < (g + 1) * channels_per_group; ++c) {
      s += channel_sums[2 * c];
      q += channel_sums[2 * c + 1];
    }
    partial[(blockIdx.y * groups + g) * chunks + blockIdx.x] = make_float2(s, q);
  }
}

// affine[n * C + c] = {a, b} of group_norm_apply (a = rstd * weight, b = bias - mean * a) for
// every channel of sample n = blockIdx.x.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    group_affine(const T* __restrict__ weight, const T* __restrict__ bias,
                 const float2* __restrict__ stats, float2* __restrict__ affine, int channels,
                 int channels_per_group) {
  const float2* sample_stats = stats + blockIdx.x * (channels / channels_per_group);
  for (int c = threadIdx.x; c < channels; c += kThreads) {
    const float2 s = sample_stats[c / channels_per_group];
    const float a = s.y * to_float(weight[c]);
    affine[blockIdx.x * channels + c] = make_float2(a, to_float(bias[c]) - s.x * a);
  }
}

// The elementwise pass of group_norm_apply over channel vectors, one output row a block (grid
// H', N * F'), each output position reading the input position `map` gives it (replicate
// padding, or none).
template <typename T, int kVec>
__global__ void __launch_bounds__(kGatherThreads)
    group_norm_apply_ndhwc(const T* __restrict__ x, T* __restrict__ out,
                           const float2* __restrict__ affine, int lanes, VideoResample map,
                           bool silu) {
  const float2* sample_affine =
      affine + static_cast<int>(blockIdx.y) / map.out_frames() * lanes * kVec;
  auto normalize = [silu](const T* in, T* to, const float2* ab) {
    const Pack<T, kVec> v = *reinterpret_cast<const Pack<T, kVec>*>(in);
    Pack<T, kVec> res;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      float y = to_float(from_float<T>(to_float(v.v[j]) * ab[j].x + ab[j].y));
      if (silu) y = y / (1.f + expf(-y));
      res.v[j] = from_float<T>(y);
    }
    *reinterpret_cast<Pack<T, kVec>*>(to) = res;
  };
  if (kGatherThreads % lanes == 0) {  // one lane a thread: its channels' {a, b} in registers
    float2 ab[kVec];
    const int lane = threadIdx.x % lanes;
#pragma unroll
    for (int j = 0; j < kVec; ++j) ab[j] = sample_affine[lane * kVec + j];
    for_each_row_vector<kVec>(map, lanes, x, out,
                              [&](int, const T* in, T* to) { normalize(in, to, ab); });
  } else {
    for_each_row_vector<kVec>(map, lanes, x, out, [&](int lane, const T* in, T* to) {
      normalize(in, to, sample_affine + lane * kVec);
    });
  }
}

template <typename T>
bool launch_ndhwc(const T* x, T* out, const T* weight, const T* bias, float* workspace,
                  int64_t batch, int64_t channels, int64_t groups, float eps, bool silu,
                  const VideoResample& map, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const int64_t lanes = channels / kVec;
  dim3 grid;
  if (channels % kVec != 0 || lanes > kThreads || reinterpret_cast<uintptr_t>(x) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(out) % 16 != 0 || !gather_grid(map, batch, lanes, &grid) ||
      !kernel_has_image(group_partial_sums_ndhwc<T, kVec>) ||
      !kernel_has_image(group_statistics<T>) || !kernel_has_image(group_affine<T>) ||
      !kernel_has_image(group_norm_apply_ndhwc<T, kVec>)) {
    return false;
  }
  const int64_t positions = static_cast<int64_t>(map.frames) * map.height * map.width;
  const int64_t groups_total = batch * groups, channels_per_group = channels / groups;
  if (groups_total == 0 || positions == 0 || grid.x == 0) return true;
  if (batch > 65535) return false;  // the statistics grid's y dimension
  const int64_t per_block = ndhwc_positions_per_block(channels);
  const int64_t chunks = (positions + per_block - 1) / per_block;
  auto* partial = reinterpret_cast<float2*>(workspace);
  auto* stats = partial + groups_total * chunks;
  auto* affine = stats + groups_total;
  const size_t shared = (2 * kVec * kThreads + 2 * channels) * sizeof(float);
  group_partial_sums_ndhwc<T, kVec>
      <<<dim3(static_cast<unsigned>(chunks), static_cast<unsigned>(batch)), kThreads, shared,
         stream>>>(x, partial, positions, static_cast<int>(channels),
                   static_cast<int>(channels_per_group), per_block, chunks);
  group_statistics<T><<<static_cast<unsigned>(groups_total), kThreads, 0, stream>>>(
      x, partial, stats, positions * channels_per_group, chunks, eps, groups, positions * channels,
      channels_per_group);
  group_affine<T><<<static_cast<unsigned>(batch), kThreads, 0, stream>>>(
      weight, bias, stats, affine, static_cast<int>(channels),
      static_cast<int>(channels_per_group));
  group_norm_apply_ndhwc<T, kVec>
      <<<grid, kGatherThreads, 0, stream>>>(x, out, affine, static_cast<int>(lanes), map, silu);
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace

int64_t group_norm_workspace_floats(int64_t batch, int64_t channels, int64_t spatial,
                                    int64_t groups) {
  const int64_t groups_total = batch * groups;
  return 2 * groups_total * (chunks_of(channels / groups * spatial) + 1);
}

bool group_norm_cuda(const void* x, void* out, const void* weight, const void* bias,
                     float* workspace, KernelDtype dtype, int64_t batch, int64_t channels,
                     int64_t spatial, int64_t groups, float eps, bool silu, cudaStream_t stream) {
  switch (dtype) {
    case KernelDtype::kFloat:
      return launch(static_cast<const float*>(x), static_cast<float*>(out),
                    static_cast<const float*>(weight), static_cast<const float*>(bias), workspace,
                    batch, channels, spatial, groups, eps, silu, stream);
    case KernelDtype::kBFloat16:
      return launch(static_cast<const __nv_bfloat16*>(x), static_cast<__nv_bfloat16*>(out),
                    static_cast<const __nv_bfloat16*>(weight),
                    static_cast<const __nv_bfloat16*>(bias), workspace, batch, channels, spatial,
                    groups, eps, silu, stream);
    case KernelDtype::kHalf:  // not served
      return false;
  }
  return false;
}

int64_t group_norm_ndhwc_workspace_floats(int64_t batch, int64_t channels, int64_t positions,
                                          int64_t groups) {
  const int64_t per_block = ndhwc_positions_per_block(channels);
  return 2 * batch * (groups * ((positions + per_block - 1) / per_block + 1) + channels);
}

bool group_norm_ndhwc_cuda(const void* x, void* out, const void* weight, const void* bias,
                           float* workspace, KernelDtype dtype, int64_t batch, int64_t channels,
                           int64_t groups, float eps, bool silu, const VideoResample& map,
                           cudaStream_t stream) {
  switch (dtype) {
    case KernelDtype::kFloat:
      return launch_ndhwc(static_cast<const float*>(x), static_cast<float*>(out),
                          static_cast<const float*>(weight), static_cast<const float*>(bias),
                          workspace, batch, channels, groups, eps, silu, map, stream);
    case KernelDtype::kBFloat16:
      return launch_ndhwc(static_cast<const __nv_bfloat16*>(x), static_cast<__nv_bfloat16*>(out),
                          static_cast<const __nv_bfloat16*>(weight),
                          static_cast<const __nv_bfloat16*>(bias), workspace, batch, channels,
                          groups, eps, silu, map, stream);
    case KernelDtype::kHalf:  // not served
      return false;
  }
  return false;
}

}  // namespace ditbench
