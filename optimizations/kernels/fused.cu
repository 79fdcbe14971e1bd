#include <cuda_bf16.h>

#include <type_traits>

#include "optimizations/kernels/float_convert.cuh"
#include "optimizations/kernels/fused_cuda.h"
#include "optimizations/kernels/launch.cuh"
#include "optimizations/kernels/vec_dispatch.h"

namespace ditbench {
namespace {

using bf16 = __nv_bfloat16;

constexpr int kVec = 8;           // bfloat16 elements per 16-byte access
constexpr int kRowThreads = 128;  // threads of a row kernel's block
constexpr int kRowWarps = kRowThreads / 32;
constexpr int kMaxRowVecs = 8;  // 16-byte vectors per thread: rows of up to 128 * 8 * 8 = 8192

__device__ __forceinline__ uint4 load16(const bf16* p) {
  return *reinterpret_cast<const uint4*>(p);
}

// Rows are held as raw 16-byte vectors (4 registers for 8 values) and widened when used, which
// keeps a 3072-wide row and its modulation in registers without limiting occupancy.
__device__ __forceinline__ void widen(const uint4& raw, float (&v)[kVec]) {
  const bf16* e = reinterpret_cast<const bf16*>(&raw);
#pragma unroll
  for (int j = 0; j < kVec; ++j) v[j] = __bfloat162float(e[j]);
}

__device__ __forceinline__ void load8(const bf16* p, float (&v)[kVec]) { widen(load16(p), v); }

__device__ __forceinline__ uint4 narrow(const float (&v)[kVec]) {
  uint4 raw;
  bf16* e = reinterpret_cast<bf16*>(&raw);
#pragma unroll
  for (int j = 0; j < kVec; ++j) e[j] = __float2bfloat16_rn(v[j]);
  return raw;
}

__device__ __forceinline__ void store8(bf16* p, const float (&v)[kVec]) {
  *reinterpret_cast<uint4*>(p) = narrow(v);
}

template <int kWidth>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
  for (int offset = kWidth / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  }
  return v;
}

// Sum over the block; `partial` holds one float per warp and is free again on return.
__device__ __forceinline__ float block_sum(float v, float* partial) {
  v = group_sum<32>(v);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int w = 0; w < kRowWarps; ++w) total += partial[w];
  __syncthreads();
  return total;
}

__device__ __forceinline__ const bf16* row_of(RowsBf16 t, int64_t b, int64_t s) {
  return static_cast<const bf16*>(t.data) + b * t.batch_stride + s * t.row_stride;
}

// Row kernels: a block walks rows b*S + s with a grid stride (each block's rows stay in one batch
// for long stretches, so the [B, D] modulation rows are loaded once per batch into registers).
// Thread t owns the 16-byte vectors t, t + 128, ... of a row: kVecs of them.

// LayerNorm (no affine) + modulate. The chain it replaces rounds to bfloat16 after the norm, after
// 1 + scale, after the product and after the shift.
template <int kVecs>
__global__ void __launch_bounds__(kRowThreads)
    layer_norm_modulate_kernel(RowsBf16 x, RowsBf16 shift, RowsBf16 scale, bf16* __restrict__ out,
                               int64_t batch, int64_t seq, int dim, float eps) {
  __shared__ float partial[kRowWarps];
  const int vecs = dim / kVec;
  const float inv_dim = 1.f / static_cast<float>(dim);
  uint4 one_plus_scale[kVecs], shift_raw[kVecs];
  int64_t loaded_batch = -1;
  for (int64_t row = blockIdx.x; row < batch * seq; row += gridDim.x) {
    const int64_t b = row / seq, s = row - b * seq;
    if (b != loaded_batch) {
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        const int c = threadIdx.x + i * kRowThreads;
        if (c >= vecs) continue;
        float v[kVec];
        load8(row_of(scale, b, 0) + c * kVec, v);
#pragma unroll
        for (int j = 0; j < kVec; ++j) v[j] = 1.f + v[j];
        one_plus_scale[i] = narrow(v);
        shift_raw[i] = load16(row_of(shift, b, 0) + c * kVec);
      }
      loaded_batch = b;
    }
    const bf16* in = row_of(x, b, s);
    uint4 raw[kVecs];
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      const int c = threadIdx.x + i * kRowThreads;
      raw[i] = c < vecs ? load16(in + c * kVec) : make_uint4(0, 0, 0, 0);  // zeros add nothing
    }
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      float v[kVec];
      widen(raw[i], v);
#pragma unroll
      for (int j = 0; j < kVec; ++j) sum += v[j];
    }
    const float mean = block_sum(sum, partial) * inv_dim;
    float squares = 0.f;
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      if (threadIdx.x + i * kRowThreads >= vecs) continue;
      float v[kVec];
      widen(raw[i], v);
#pragma unroll
      for (int j = 0; j < kVec; ++j) squares += (v[j] - mean) * (v[j] - mean);
    }
    const float rstd = rsqrtf(block_sum(squares, partial) * inv_dim + eps);
    bf16* o = out + row * dim;
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      const int c = threadIdx.x + i * kRowThreads;
      if (c >= vecs) continue;
      float v[kVec], m[kVec], sh[kVec];
      widen(raw[i], v);
      widen(one_plus_scale[i], m);
      widen(shift_raw[i], sh);
      normalize_modulate(v, mean, rstd, m, sh);
      store8(o + c * kVec, v);
    }
  }
}

// x + gate * y, the product rounded to bfloat16 before the add as the two eager ops do.
template <int kVecs>
__global__ void __launch_bounds__(kRowThreads)
    gate_residual_kernel(RowsBf16 x, RowsBf16 y, RowsBf16 gate, bf16* __restrict__ out,
                         int64_t batch, int64_t seq, int dim) {
  const int vecs = dim / kVec;
  uint4 gate_raw[kVecs];
  int64_t loaded_batch = -1;
  for (int64_t row = blockIdx.x; row < batch * seq; row += gridDim.x) {
    const int64_t b = row / seq, s = row - b * seq;
    if (b != loaded_batch) {
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        const int c = threadIdx.x + i * kRowThreads;
        if (c < vecs) gate_raw[i] = load16(row_of(gate, b, 0) + c * kVec);
      }
      loaded_batch = b;
    }
    const bf16* x_row = row_of(x, b, s);
    const bf16* y_row = row_of(y, b, s);
    uint4 x_raw[kVecs], y_raw[kVecs];
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      const int c = threadIdx.x + i * kRowThreads;
      if (c >= vecs) continue;
      x_raw[i] = load16(x_row + c * kVec);
      y_raw[i] = load16(y_row + c * kVec);
    }
    bf16* o = out + row * dim;
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      const int c = threadIdx.x + i * kRowThreads;
      if (c >= vecs) continue;
      float xv[kVec], yv[kVec], g[kVec];
      widen(x_raw[i], xv);
      widen(y_raw[i], yv);
      widen(gate_raw[i], g);
#pragma unroll
      for (int j = 0; j < kVec; j += 2) {
        float p0 = yv[j] * g[j], p1 = yv[j + 1] * g[j + 1];
        round_bf16_pair(p0, p1);  // the product rounded before the add, as the eager ops do
        xv[j] += p0, xv[j + 1] += p1;
      }
      store8(o + c * kVec, xv);
    }
  }
}

// RMSNorm of one head vector (Dh = kLanes * 8 elements spread over kLanes threads) as diffusers'
// RMSNorm with a bfloat16 weight computes it: x * rsqrt(mean(x^2) + eps) in float32, rounded,
// times the weight, rounded.
template <int kLanes>
__device__ __forceinline__ void rms_norm_head(float (&v)[kVec], const float (&weight)[kVec],
                                              float inv_dim, float eps) {
  float squares = 0.f;
#pragma unroll
  for (int j = 0; j < kVec; ++j) squares += v[j] * v[j];
  const float r = rsqrtf(group_sum<kLanes>(squares) * inv_dim + eps);
#pragma unroll
  for (int j = 0; j < kVec; j += 2) {
    float a = v[j] * r, b = v[j + 1] * r;
    round_bf16_pair(a, b);
    a *= weight[j], b *= weight[j + 1];
    round_bf16_pair(a, b);
    v[j] = a, v[j + 1] = b;
  }
}

// One token's cos and sin for a lane's 8 elements of a head.
struct RopeSlice {
  float c[kVec], s[kVec];
};

__device__ __forceinline__ RopeSlice load_rope(const float* cos, const float* sin) {
  const float4 c0 = reinterpret_cast<const float4*>(cos)[0];
  const float4 c1 = reinterpret_cast<const float4*>(cos)[1];
  const float4 s0 = reinterpret_cast<const float4*>(sin)[0];
  const float4 s1 = reinterpret_cast<const float4*>(sin)[1];
  return {{c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w},
          {s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w}};
}

// Interleaved rotary embedding of the pairs (v[2i], v[2i+1]): products and sum each rounded in
// float32 (no contraction into an FMA), as apply_rotary_emb's eager ops compute them.
__device__ __forceinline__ void rotate(float (&v)[kVec], const RopeSlice& r) {
#pragma unroll
  for (int j = 0; j < kVec; j += 2) {
    const float a = v[j], b = v[j + 1];
    v[j] = __fadd_rn(__fmul_rn(a, r.c[j]), __fmul_rn(-b, r.s[j]));
    v[j + 1] = __fadd_rn(__fmul_rn(b, r.c[j + 1]), __fmul_rn(a, r.s[j + 1]));
  }
}

// Groups of kLanes threads each take one (b, s, h) and do q and k of it, so the token's cos/sin
// slice is read once for both (and from L1 for the other heads of the token). The loop bound is
// uniform per warp, so the shuffles always see every lane; groups past the end only skip memory.
// Heads are contiguous within a token; tokens and batches follow the given strides, so q and k may
// be column ranges of one packed projection output.
template <int kLanes>
__global__ void __launch_bounds__(kRowThreads)
    qk_rms_norm_rope_kernel(const bf16* q, const bf16* k, bf16* q_out, bf16* k_out, QkStrides in,
                            QkStrides out, const bf16* __restrict__ weight_q,
                            const bf16* __restrict__ weight_k, const float* __restrict__ cos,
                            const float* __restrict__ sin, int64_t items, int64_t seq,
                            int64_t heads, int head_dim, int64_t rope_rows, float eps) {
  constexpr int kGroupsPerBlock = kRowThreads / kLanes;
  const int lane = threadIdx.x % kLanes;
  const float inv_dim = 1.f / static_cast<float>(head_dim);
  float wq[kVec], wk[kVec];
  load8(weight_q + lane * kVec, wq);
  load8(weight_k + lane * kVec, wk);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kGroupsPerBlock;
  const int64_t group = threadIdx.x / kLanes;
  // An item's place: its token's batch and row, and its lane's offset within the token.
  struct Place {
    int64_t b, s, within;
  };
  auto place_of = [&](int64_t item) {
    const int64_t token = item / heads, h = item - token * heads;
    const int64_t b = token / seq;
    return Place{b, token - b * seq, h * head_dim + lane * kVec};
  };
  // The next item's q and k, loaded while this one is normed (their loads stay in flight across
  // the group reductions), and its place (found once); zeros past the end.
  uint4 next_q = make_uint4(0, 0, 0, 0), next_k = next_q;
  Place next_place{0, 0, 0};
  auto load_item = [&](int64_t item) {
    if (item >= items) return;
    const Place p = next_place = place_of(item);
    const int64_t offset = p.b * in.batch + p.s * in.token + p.within;
    next_q = load16(q + offset);
    next_k = load16(k + offset);
  };
  load_item(static_cast<int64_t>(blockIdx.x) * kGroupsPerBlock + group);
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kGroupsPerBlock; base < items;
       base += stride) {
    const int64_t item = base + group;
    const bool active = item < items;
    float qv[kVec], kv[kVec];
    widen(next_q, qv);
    widen(next_k, kv);
    const Place p = next_place;  // this item's (stale past the end, where it is not used)
    load_item(item + stride);
    const bool rope = active && p.s < rope_rows;
    RopeSlice slice{};
    if (rope) {  // issued before the reductions too
      const int64_t table = p.s * head_dim + lane * kVec;
      slice = load_rope(cos + table, sin + table);
    }
    rms_norm_head<kLanes>(qv, wq, inv_dim, eps);
    rms_norm_head<kLanes>(kv, wk, inv_dim, eps);
    if (!active) continue;
    if (rope) {
      rotate(qv, slice);
      rotate(kv, slice);
    }
    const int64_t out_offset = p.b * out.batch + p.s * out.token + p.within;
    store8(q_out + out_offset, qv);
    store8(k_out + out_offset, kv);
  }
}

// ---- launch ----

// What a kernel needs to launch on the current device: whether this build has an image for it,
// and how many of its 128-thread blocks fit one SM.
struct KernelFit {
  bool has_image = false;
  int64_t resident_blocks = 0;  // on the whole device
};

template <typename Kernel>
KernelFit fit_of(Kernel kernel) {
  KernelFit fit;
  fit.resident_blocks = kernel_has_image(kernel) ? resident_blocks(kernel, kRowThreads) : 0;
  fit.has_image = fit.resident_blocks > 0;
  return fit;
}

// Blocks for a grid-stride kernel: as many as are resident at once, never more than there is
// work for, so no block waits for a second wave.
unsigned grid_blocks(const KernelFit& fit, int64_t work_blocks) {
  return static_cast<unsigned>(work_blocks < fit.resident_blocks ? work_blocks
                                                                 : fit.resident_blocks);
}

bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
bool aligned(RowsBf16 t) {
  return aligned(t.data) && t.batch_stride % kVec == 0 && t.row_stride % kVec == 0;
}

// Rows of `dim` elements split into 16-byte vectors over 128 threads: kVecs per thread.
bool row_shape_ok(int64_t dim) {
  return dim > 0 && dim % kVec == 0 && dim <= int64_t{kRowThreads} * kVec * kMaxRowVecs;
}
int vecs_per_thread(int64_t dim) {
  return static_cast<int>((dim / kVec + kRowThreads - 1) / kRowThreads);
}

template <int kVecs>
bool launch_layer_norm_modulate(RowsBf16 x, RowsBf16 shift, RowsBf16 scale, void* out,
                                int64_t batch, int64_t seq, int64_t dim, float eps,
                                cudaStream_t stream) {
  static const KernelFit fit = fit_of(layer_norm_modulate_kernel<kVecs>);
  if (!fit.has_image) return false;
  layer_norm_modulate_kernel<kVecs><<<grid_blocks(fit, batch * seq), kRowThreads, 0, stream>>>(
      x, shift, scale, static_cast<bf16*>(out), batch, seq, static_cast<int>(dim), eps);
  return true;
}

template <int kVecs>
bool launch_gate_residual(RowsBf16 x, RowsBf16 y, RowsBf16 gate, void* out, int64_t batch,
                          int64_t seq, int64_t dim, cudaStream_t stream) {
  static const KernelFit fit = fit_of(gate_residual_kernel<kVecs>);
  if (!fit.has_image) return false;
  gate_residual_kernel<kVecs><<<grid_blocks(fit, batch * seq), kRowThreads, 0, stream>>>(
      x, y, gate, static_cast<bf16*>(out), batch, seq, static_cast<int>(dim));
  return true;
}

template <int kLanes>
bool launch_qk(const void* q, const void* k, void* q_out, void* k_out, QkStrides in, QkStrides out,
               const void* weight_q, const void* weight_k, const float* cos, const float* sin,
               int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, int64_t rope_rows,
               float eps, cudaStream_t stream) {
  static const KernelFit fit = fit_of(qk_rms_norm_rope_kernel<kLanes>);
  if (!fit.has_image) return false;
  constexpr int kGroupsPerBlock = kRowThreads / kLanes;
  const int64_t items = batch * seq * heads;
  qk_rms_norm_rope_kernel<kLanes>
      <<<grid_blocks(fit, (items + kGroupsPerBlock - 1) / kGroupsPerBlock), kRowThreads, 0,
         stream>>>(static_cast<const bf16*>(q), static_cast<const bf16*>(k),
                   static_cast<bf16*>(q_out), static_cast<bf16*>(k_out), in, out,
                   static_cast<const bf16*>(weight_q), static_cast<const bf16*>(weight_k), cos, sin,
                   items, seq, heads, static_cast<int>(head_dim), rope_rows, eps);
  return true;
}

}  // namespace

bool layer_norm_modulate_cuda(RowsBf16 x, RowsBf16 shift, RowsBf16 scale, void* out, int64_t batch,
                              int64_t seq, int64_t dim, float eps, cudaStream_t stream) {
  if (batch * seq == 0) return true;
  if (!row_shape_ok(dim) || !aligned(x) || !aligned(shift) || !aligned(scale) || !aligned(out)) {
    return false;
  }
  return with_vecs<1, kMaxRowVecs>(vecs_per_thread(dim), [&](auto vecs) {
    return launch_layer_norm_modulate<decltype(vecs)::value>(x, shift, scale, out, batch, seq, dim,
                                                             eps, stream);
  });
}

bool gate_residual_cuda(RowsBf16 x, RowsBf16 y, RowsBf16 gate, void* out, int64_t batch,
                        int64_t seq, int64_t dim, cudaStream_t stream) {
  if (batch * seq == 0) return true;
  if (!row_shape_ok(dim) || !aligned(x) || !aligned(y) || !aligned(gate) || !aligned(out)) {
    return false;
  }
  return with_vecs<1, kMaxRowVecs>(vecs_per_thread(dim), [&](auto vecs) {
    return launch_gate_residual<decltype(vecs)::value>(x, y, gate, out, batch, seq, dim, stream);
  });
}

bool qk_rms_norm_rope_cuda(const void* q, const void* k, void* q_out, void* k_out, QkStrides in,
                           QkStrides out, const void* weight_q, const void* weight_k,
                           const float* cos, const float* sin, int64_t batch, int64_t seq,
                           int64_t heads, int64_t head_dim, int64_t rope_rows, float eps,
                           cudaStream_t stream) {
  if (batch * seq * heads == 0) return true;
  for (const int64_t s : {in.batch, in.token, out.batch, out.token})
    if (s % kVec != 0) return false;
  const void* pointers[] = {q, k, q_out, k_out, weight_q, weight_k};
  for (const void* p : pointers)
    if (!aligned(p)) return false;
  if (rope_rows > 0 && (!aligned(cos) || !aligned(sin))) return false;
  switch (head_dim) {
#define DITBENCH_CASE(dh)                                                                         \
  case dh:                                                                                        \
    return launch_qk<dh / kVec>(q, k, q_out, k_out, in, out, weight_q, weight_k, cos, sin, batch, \
                                seq, heads, head_dim, rope_rows, eps, stream);
    DITBENCH_CASE(8)
    DITBENCH_CASE(16)
    DITBENCH_CASE(32)
    DITBENCH_CASE(64)
    DITBENCH_CASE(128)
    DITBENCH_CASE(256)
#undef DITBENCH_CASE
  }
  return false;
}

}  // namespace ditbench
