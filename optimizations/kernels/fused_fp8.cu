#include <cstdlib>
#include <type_traits>

#include "optimizations/kernels/float_convert.cuh"
#include "optimizations/kernels/fused_fp8_cuda.h"
#include "optimizations/kernels/vec_dispatch.h"
#include "optimizations/quant/fp8_rows.cuh"

namespace ditbench {
namespace {

using bf16 = __nv_bfloat16;
using BfVec = fp8_rows::Vec<bf16>;

constexpr int kVec = 8;  // bfloat16 elements per 16-byte vector

__device__ __forceinline__ void widen(const uint4& raw, float (&v)[kVec]) {
  const bf16* e = reinterpret_cast<const bf16*>(&raw);
#pragma unroll
  for (int j = 0; j < kVec; ++j) v[j] = __bfloat162float(e[j]);
}

__device__ __forceinline__ uint4 narrow(const float (&v)[kVec]) {
  uint4 raw;
  bf16* e = reinterpret_cast<bf16*>(&raw);
#pragma unroll
  for (int j = 0; j < kVec; ++j) e[j] = __float2bfloat16_rn(v[j]);
  return raw;
}

__device__ __forceinline__ const bf16* row_of(RowsBf16 t, int64_t b, int64_t s) {
  return static_cast<const bf16*>(t.data) + b * t.batch_stride + s * t.row_stride;
}

// ---- LayerNorm + modulate ending in the row quantization ----
// The same layout and arithmetic as fused.cu's layer_norm_modulate_kernel (128 threads a row,
// thread t owning the vectors t, t + 128, ...; the row sums reduced by a warp butterfly and then
// warp by warp in order), so the bfloat16 values it quantizes are that kernel's output. The
// output row stays in registers while its amax is reduced.
//
// A block takes kRows consecutive tokens of one sample at a time (a group), reducing the rows'
// sums together: one barrier-bounded block reduction serves kRows rows, each row's sum the same
// sequence of additions as with kRows = 1 (bit for bit the same output).

constexpr int kLnThreads = 128;
constexpr int kLnWarps = kLnThreads / 32;
constexpr int kLnMaxVecs = 8;  // rows of up to 128 * 8 * 8 = 8192

// The sums (Max = false) or maxima (Max = true) of each of v's kRows values over the block, every
// thread getting them. `partial` holds kLnWarps * kRows floats.
template <bool Max, int kRows>
__device__ __forceinline__ void block_reduce(float (&v)[kRows], float* partial) {
  auto op = [](float a, float b) { return Max ? fmaxf(a, b) : a + b; };
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) v[r] = op(v[r], __shfl_xor_sync(0xffffffffu, v[r], offset));
  }
  if (threadIdx.x % 32 == 0) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) partial[threadIdx.x / 32 * kRows + r] = v[r];
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    float total = Max ? partial[r] : 0.f;
#pragma unroll
    for (int w = Max ? 1 : 0; w < kLnWarps; ++w) total = op(total, partial[w * kRows + r]);
    v[r] = total;
  }
  __syncthreads();
}

template <int kVecs, int kRows>
__global__ void __launch_bounds__(kLnThreads)
    layer_norm_modulate_quantize_kernel(RowsBf16 x, RowsBf16 shift, RowsBf16 scale,
                                        bf16* __restrict__ full,
                                        __nv_fp8_storage_t* __restrict__ values,
                                        float* __restrict__ row_scale, int64_t batch, int64_t seq,
                                        int dim, float eps) {
  __shared__ float partial[kLnWarps * kRows];
  uint4 one_plus_scale[kVecs], shift_raw[kVecs];  // the sample's modulation vectors
  const int vecs = dim / kVec;
  const float inv_dim = 1.f / static_cast<float>(dim);
  const int64_t groups_per_sample = (seq + kRows - 1) / kRows;
  int64_t loaded_batch = -1;
  // The next group's vectors, loaded while this group is reduced (its loads stay in flight
  // across the block reductions instead of starting after them).
  uint4 next[kRows][kVecs];
  // (sample, first token) of the group loaded next, advanced by the grid stride without a
  // 64-bit division a group.
  int64_t next_b = blockIdx.x / groups_per_sample,
          next_s = (blockIdx.x - next_b * groups_per_sample) * kRows;
  auto load_group = [&]() {
    if (next_b >= batch) return;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const bool valid = next_s + r < seq;
      const bf16* in = row_of(x, next_b, valid ? next_s + r : next_s);
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        const int c = threadIdx.x + i * kLnThreads;
        next[r][i] = valid && c < vecs ? __ldcs(reinterpret_cast<const uint4*>(in + c * kVec))
                                       : make_uint4(0, 0, 0, 0);  // zeros add nothing
      }
    }
  };
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kRows;
  load_group();
  for (int64_t group = blockIdx.x; group < batch * groups_per_sample; group += gridDim.x) {
    const int64_t b = next_b, s = next_s;
    if (b != loaded_batch) {
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        const int c = threadIdx.x + i * kLnThreads;
        if (c >= vecs) continue;
        float v[kVec];
        widen(*reinterpret_cast<const uint4*>(row_of(scale, b, 0) + c * kVec), v);
#pragma unroll
        for (int j = 0; j < kVec; ++j) v[j] = 1.f + v[j];
        one_plus_scale[i] = narrow(v);
        shift_raw[i] = *reinterpret_cast<const uint4*>(row_of(shift, b, 0) + c * kVec);
      }
      loaded_batch = b;
    }
    BfVec out[kRows][kVecs];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int i = 0; i < kVecs; ++i) out[r][i].raw = next[r][i];
    }
    for (next_s += stride; next_s >= groups_per_sample * kRows && next_b < batch;
         next_s -= groups_per_sample * kRows) {
      ++next_b;
    }
    load_group();
    float mean[kRows], rstd[kRows], amax[kRows];  // mean and rstd first hold the row's sums
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      mean[r] = 0.f;
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        float v[kVec];
        widen(out[r][i].raw, v);
#pragma unroll
        for (int j = 0; j < kVec; ++j) mean[r] += v[j];
      }
    }
    block_reduce<false>(mean, partial);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      mean[r] *= inv_dim;
      rstd[r] = 0.f;
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        if (threadIdx.x + i * kLnThreads >= vecs) continue;
        float v[kVec];
        widen(out[r][i].raw, v);
#pragma unroll
        for (int j = 0; j < kVec; ++j) rstd[r] += (v[j] - mean[r]) * (v[j] - mean[r]);
      }
    }
    block_reduce<false>(rstd, partial);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      rstd[r] = rsqrtf(rstd[r] * inv_dim + eps);
      amax[r] = 0.f;
      const int64_t row = b * seq + s + r;
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        const int c = threadIdx.x + i * kLnThreads;
        if (c >= vecs) continue;
        float v[kVec], m[kVec], sh[kVec];
        widen(out[r][i].raw, v);
        widen(one_plus_scale[i], m);
        widen(shift_raw[i], sh);
        normalize_modulate(v, mean[r], rstd[r], m, sh);
        out[r][i].raw = narrow(v);  // the bfloat16 result, as layer_norm_modulate stores it
        amax[r] = fmaxf(amax[r], out[r][i].amax());
        if (full && s + r < seq)
          *reinterpret_cast<uint4*>(full + row * dim + c * kVec) = out[r][i].raw;
      }
    }
    block_reduce<true>(amax, partial);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int64_t row = b * seq + s + r;
      if (s + r < seq) {
        fp8_rows::store_held_row<bf16, kVecs>(out[r], vecs, values + row * dim, row_scale + row,
                                              amax[r]);
      }
    }
  }
}

// ---- GELU (tanh) ending in the row quantization, after an optional prefix ----

// at::gelu(x, "tanh") on CUDA for bfloat16: 0.5 x (1 + tanh(u)) with u = sqrt(2 / pi) (x +
// 0.044715 x^3) in float32, rounded once to bfloat16. tanh(u) is computed as 2 / (1 + e^(-2u)) - 1
// with the hardware's base-2 exponential and reciprocal (each within a few float32 units in the
// last place), and rounded to float32 as tanhf's result is, so 1 + tanh(u) cancels as ATen's does
// for negative x (a multiple of 2^-24 there, 0 past u ~ -9); the bfloat16 results differ from
// ATen's only where the two tanh differ in their last bit and that bit decides the rounding.
// Eight arithmetic instructions and two special-function ones an element; tanhf takes ~25.
__device__ __forceinline__ float gelu_tanh(float x) {
  // -2u log2(e) = x (kLinear + kCubic x^2)
  constexpr double kBeta = M_SQRT2 * M_2_SQRTPI * 0.5, kLog2e = 1.4426950408889634;
  constexpr float kLinear = static_cast<float>(-2.0 * kBeta * kLog2e);
  constexpr float kCubic = static_cast<float>(-2.0 * kBeta * kLog2e * 0.044715);
  const float exponent = x * fmaf(kCubic, x * x, kLinear);
  float power, inverse;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(power) : "f"(exponent));       // e^(-2u), inf past 2^128
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(inverse) : "f"(1.f + power));  // 0 for inf
  const float tanh_u = fmaf(2.f, inverse, -1.f);                         // rounded once
  return 0.5f * x * (1.f + tanh_u);
}

// Rows [prefix | gelu_tanh(h)], vector by vector (P a whole number of vectors).
struct PrefixGeluRows {
  using Elem = bf16;
  const bf16* prefix;
  int64_t prefix_stride;
  int prefix_vecs;
  const bf16* h;
  int64_t h_stride;

  __device__ __forceinline__ uint4 fetch(int64_t row, int vec) const {
    return vec < prefix_vecs
               ? __ldcs(reinterpret_cast<const uint4*>(prefix + row * prefix_stride) + vec)
               : __ldcs(reinterpret_cast<const uint4*>(h + row * h_stride) + (vec - prefix_vecs));
  }
  __device__ __forceinline__ uint4 finish(uint4 raw, int vec) const {
    if (vec < prefix_vecs) return raw;
    float v[kVec];
    widen(raw, v);
#pragma unroll
    for (int j = 0; j < kVec; ++j) v[j] = gelu_tanh(v[j]);
    return narrow(v);
  }
};

// ---- launch ----

bool aligned(RowsBf16 t) {
  return fp8_rows::aligned16(t.data) && t.batch_stride % kVec == 0 && t.row_stride % kVec == 0;
}

template <int kVecs, int kRows>
bool launch_layer_norm_modulate_fp8(RowsBf16 x, RowsBf16 shift, RowsBf16 scale, void* full,
                                    void* values, float* row_scale, int64_t batch, int64_t seq,
                                    int64_t dim, float eps, cudaStream_t stream) {
  constexpr auto kernel = layer_norm_modulate_quantize_kernel<kVecs, kRows>;
  static const int64_t resident = has_image<kernel>() ? resident_blocks(kernel, kLnThreads) : 0;
  if (resident == 0) return false;
  // As many blocks as are resident at once, each walking groups of rows with a grid stride (so
  // the [B, D] modulation rows are loaded once per batch), never more blocks than groups.
  const int64_t groups = batch * ((seq + kRows - 1) / kRows);
  kernel<<<static_cast<unsigned>(groups < resident ? groups : resident), kLnThreads, 0, stream>>>(
      x, shift, scale, static_cast<bf16*>(full), static_cast<__nv_fp8_storage_t*>(values),
      row_scale, batch, seq, static_cast<int>(dim), eps);
  return true;
}

// Rows a block reduces together: 2, or DITBENCH_LN_FP8_ROWS=1 (one row at a time, for
// comparison). Rows of more than 5 vectors a thread (over 5120 columns) go one at a time: two of
// them would spill registers (sm_90a).
int ln_rows_per_block() {
  static const int rows = [] {
    const char* env = std::getenv("DITBENCH_LN_FP8_ROWS");
    return env != nullptr && env[0] == '1' ? 1 : 2;
  }();
  return rows;
}

}  // namespace

bool layer_norm_modulate_fp8_cuda(RowsBf16 x, RowsBf16 shift, RowsBf16 scale, void* full,
                                  void* values, float* row_scale, int64_t batch, int64_t seq,
                                  int64_t dim, float eps, cudaStream_t stream) {
  if (batch * seq == 0) return true;
  if (dim <= 0 || dim % kVec != 0 || dim > int64_t{kLnThreads} * kVec * kLnMaxVecs || !aligned(x) ||
      !aligned(shift) || !aligned(scale) || !fp8_rows::aligned16(values) ||
      (full && !fp8_rows::aligned16(full))) {
    return false;
  }
  const int vecs_per_thread = static_cast<int>((dim / kVec + kLnThreads - 1) / kLnThreads);
  const bool pairs = ln_rows_per_block() == 2;
  return with_vecs(vecs_per_thread, [&](auto n) {
    constexpr int kVecs = decltype(n)::value;
    if constexpr (kVecs <= 5) {
      if (pairs) {
        return launch_layer_norm_modulate_fp8<kVecs, 2>(x, shift, scale, full, values, row_scale,
                                                        batch, seq, dim, eps, stream);
      }
    }
    return launch_layer_norm_modulate_fp8<kVecs, 1>(x, shift, scale, full, values, row_scale, batch,
                                                    seq, dim, eps, stream);
  });
}

bool gelu_tanh_fp8_cuda(const void* prefix, int64_t prefix_cols, int64_t prefix_stride,
                        const void* h, int64_t h_cols, int64_t h_stride, int64_t rows, void* values,
                        float* row_scale, cudaStream_t stream) {
  if (prefix_cols % kVec != 0 || h_cols % kVec != 0 || h_stride % kVec != 0 ||
      !fp8_rows::aligned16(h) || !fp8_rows::aligned16(values) ||
      (prefix_cols > 0 && (prefix_stride % kVec != 0 || !fp8_rows::aligned16(prefix)))) {
    return false;
  }
  const PrefixGeluRows source{static_cast<const bf16*>(prefix), prefix_stride,
                              static_cast<int>(prefix_cols / kVec), static_cast<const bf16*>(h),
                              h_stride};
  return fp8_rows::launch_held_rows(source, rows, (prefix_cols + h_cols) / kVec, values, row_scale,
                                    stream);
}

}  // namespace ditbench
