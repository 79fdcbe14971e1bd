#pragma once
// Fused attention forward for Hopper (sm_90a) from CUTLASS's FMHA collectives (the kernels CUTLASS
// ships as its example 88: TMA loads, warp-specialized WGMMA, online softmax in registers),
// unpacked from PyPI's nvidia-cutlass by scripts/fetch-cutlass.sh. Plain pointers and strides
// (in elements), no LibTorch: optimizations/attention/cutlass_fmha.cpp adapts tensors to it.
//   out[b, s, h, :] = softmax(q[b, s, h, :] . k[b, :, h, :] / sqrt(D)) v[b, :, h, :]
//   lse[b, h, s]    = log(sum_t exp(q[b, s, h, :] . k[b, t, h, :] / sqrt(D)))   (natural log)
// Every key is attended (no mask). Each variant is one kernel (a tile shape and schedule) in a
// file of its own, so that they compile in parallel.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ditbench {

// One operand [B, S, H, D] by its strides; D has unit stride.
struct FmhaOperand {
  const void* data = nullptr;
  int64_t token_stride = 0, head_stride = 0, batch_stride = 0;
};

struct FmhaProblem {
  int64_t batch = 0, heads = 0, queries = 0, keys = 0, head_dim = 0;
  bool half = false;  // fp16 operands, else bf16
  FmhaOperand q, k, v;
  void* out = nullptr;  // [B, Sq, H, D] by out's strides, q's dtype
  int64_t out_token_stride = 0, out_head_stride = 0, out_batch_stride = 0;
  float* lse = nullptr;  // [B, H, Sq] float32, contiguous
};

enum class FmhaVariant {
  // Two consumer warp groups of 64 query rows each share a 128-query tile, 128-key blocks; one
  // block per tile.
  kCooperative128x128,
  // The same tiles, persistent (a block per SM walks them), Q loaded by a producer warp of its
  // own: CUTLASS's "ping-pong" schedule for this kernel.
  kPingpong128x128,
  // The ping-pong kernel with each warp group's query rows held in registers for every
  // Q K^T product (fmha_sm90_qreg.cuh): the same results bit for bit, less shared-memory traffic.
  kPingpong128x128QueryRegisters,
  // That kernel on clusters of two blocks on neighbouring query tiles of a head, each key and
  // value block loaded half by each and multicast to both (fmha_sm90_cluster.cuh): the same
  // results bit for bit, half the L2 reads.
  kPingpong128x128QueryRegistersCluster2,
};

// Every variant with its name ("coop_128x128"), in declaration order.
const std::vector<std::pair<FmhaVariant, std::string>>& fmha_variants();

// The variant attention runs with for `keys` keys: on an H100 at HunyuanVideo's 480p shape
// CUTLASS's two kernels sustain the same rate within 0.5 % (ping-pong's 480p steps 0.3 % faster),
// and the ping-pong one with Q in registers 0.7-1.0 % more at the power limit, its 480p steps
// 0.7-0.9 % faster. That kernel on pairs of blocks sharing their K and V loads made the 480p step
// (25,640 keys) another 0.2-0.8 % faster on three H200s and the 720p step (119,056 keys) 0.4 %
// slower on one (bench/RESULTS.md): the pairs serve up to 2^16 keys, a boundary between the two
// measured sizes, not measured itself.
constexpr int64_t kFmhaPairsMaxKeys = int64_t(1) << 16;
constexpr FmhaVariant fmha_default_variant(int64_t keys) {
  return keys <= kFmhaPairsMaxKeys ? FmhaVariant::kPingpong128x128QueryRegistersCluster2
                                   : FmhaVariant::kPingpong128x128QueryRegisters;
}

// Empty when every variant can run `problem` on the current device, else why not (a build without
// CUTLASS's FMHA headers, a device other than compute capability 9.0, a head dim other than 128,
// fp16, a query count not a multiple of 8, strides not multiples of 8 elements or past 2^31,
// pointers not 16-byte aligned).
std::string fmha_sm90_check(const FmhaProblem& problem);

// How a variant's launch takes the tiles: `cluster` neighbouring query tiles of a head go to one
// cluster of blocks (each head's tiles padded to a whole number of clusters, the padding computed
// and dropped); `resident`: the blocks it runs at once on the current device, one per SM or whole
// clusters (0 where none fits).
struct FmhaLaunchShape {
  int cluster = 1;
  int resident = 0;
};
FmhaLaunchShape fmha_sm90_launch_shape(FmhaVariant variant);

// The variant of one-block clusters that computes the same bits as `variant` (itself where its
// clusters are of one block).
FmhaVariant fmha_sm90_single_block_form(FmhaVariant variant);

// Launches `variant` on `stream` after fmha_sm90_check said yes; returns the launch's error text,
// empty on success.
std::string fmha_sm90_forward(const FmhaProblem& problem, FmhaVariant variant, cudaStream_t stream);

// The launcher and the launch shape of each variant (fmha_sm90_<name>.cu), what
// fmha_sm90_forward and fmha_sm90_launch_shape dispatch to.
#define DITBENCH_FMHA_VARIANT_FUNCTIONS(name)                                    \
  std::string fmha_sm90_##name(const FmhaProblem& problem, cudaStream_t stream); \
  FmhaLaunchShape fmha_sm90_##name##_launch_shape();
DITBENCH_FMHA_VARIANT_FUNCTIONS(coop_128x128)
DITBENCH_FMHA_VARIANT_FUNCTIONS(pingpong_128x128)
DITBENCH_FMHA_VARIANT_FUNCTIONS(pingpong_128x128_qreg)
DITBENCH_FMHA_VARIANT_FUNCTIONS(pingpong_128x128_qreg_c2x1)
#undef DITBENCH_FMHA_VARIANT_FUNCTIONS

}  // namespace ditbench
