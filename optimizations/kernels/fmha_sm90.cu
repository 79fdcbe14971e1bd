// The checks and the dispatch of fmha_sm90_cuda.h; the kernels are in fmha_sm90_<variant>.cu.
#include <cstdint>

#include "optimizations/kernels/fmha_sm90_cuda.h"
#include "optimizations/kernels/launch.cuh"

namespace ditbench {
namespace {

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// TMA wants 16-byte aligned bases and strides (8 bf16 elements); CuTe's strides are int.
std::string operand_problem(const char* name, const void* data, int64_t token, int64_t head,
                            int64_t batch) {
  if (!aligned16(data)) return std::string(name) + " is not 16-byte aligned";
  for (int64_t stride : {token, head, batch}) {
    if (stride % 8 != 0 || stride <= 0 || stride >= (int64_t(1) << 31)) {
      return std::string(name) + "'s strides (" + std::to_string(token) + ", " +
             std::to_string(head) + ", " + std::to_string(batch) +
             ") are not positive multiples of 8 elements below 2^31";
    }
  }
  return {};
}

}  // namespace

const std::vector<std::pair<FmhaVariant, std::string>>& fmha_variants() {
  static const std::vector<std::pair<FmhaVariant, std::string>> variants = {
      {FmhaVariant::kCooperative128x128, "coop_128x128"},
      {FmhaVariant::kPingpong128x128, "pingpong_128x128"},
      {FmhaVariant::kPingpong128x128QueryRegisters, "pingpong_128x128_qreg"},
      {FmhaVariant::kPingpong128x128QueryRegistersCluster2, "pingpong_128x128_qreg_c2x1"},
  };
  return variants;
}

std::string fmha_sm90_check(const FmhaProblem& p) {
#ifndef DITBENCH_HAS_CUTLASS_FMHA
  (void)p;
  return "built without CUTLASS's Hopper FMHA headers (scripts/fetch-cutlass.sh)";
#else
  const int capability = current_compute_capability();
  if (capability < 0) return "no CUDA device";
  if (capability != 90) {
    return "needs compute capability 9.0 (sm_90a), not " + std::to_string(capability / 10) + "." +
           std::to_string(capability % 10);
  }
  if (p.head_dim != 128) return "head dim " + std::to_string(p.head_dim) + " (built for 128)";
  if (p.half) return "fp16 (built for bf16)";
  if (p.batch < 1 || p.heads < 1 || p.queries < 1 || p.keys < 1) return "an empty problem";
  if (p.queries % 8 != 0) return std::to_string(p.queries) + " queries, not a multiple of 8";
  if (p.batch * p.heads * p.queries >= (int64_t(1) << 31) || p.keys >= (int64_t(1) << 31)) {
    return "sizes past 2^31";
  }
  for (auto why :
       {operand_problem("q", p.q.data, p.q.token_stride, p.q.head_stride, p.q.batch_stride),
        operand_problem("k", p.k.data, p.k.token_stride, p.k.head_stride, p.k.batch_stride),
        operand_problem("v", p.v.data, p.v.token_stride, p.v.head_stride, p.v.batch_stride),
        operand_problem("out", p.out, p.out_token_stride, p.out_head_stride, p.out_batch_stride)}) {
    if (!why.empty()) return why;
  }
  if (p.lse == nullptr) return "no log-sum-exp buffer";
  return {};
#endif
}

std::string fmha_sm90_forward(const FmhaProblem& p, FmhaVariant variant, cudaStream_t stream) {
  switch (variant) {
    case FmhaVariant::kCooperative128x128:
      return fmha_sm90_coop_128x128(p, stream);
    case FmhaVariant::kPingpong128x128:
      return fmha_sm90_pingpong_128x128(p, stream);
    case FmhaVariant::kPingpong128x128QueryRegisters:
      return fmha_sm90_pingpong_128x128_qreg(p, stream);
    case FmhaVariant::kPingpong128x128QueryRegistersCluster2:
      return fmha_sm90_pingpong_128x128_qreg_c2x1(p, stream);
  }
  return "unknown FMHA variant";
}

FmhaLaunchShape fmha_sm90_launch_shape(FmhaVariant variant) {
  switch (variant) {
    case FmhaVariant::kCooperative128x128:
      return fmha_sm90_coop_128x128_launch_shape();
    case FmhaVariant::kPingpong128x128:
      return fmha_sm90_pingpong_128x128_launch_shape();
    case FmhaVariant::kPingpong128x128QueryRegisters:
      return fmha_sm90_pingpong_128x128_qreg_launch_shape();
    case FmhaVariant::kPingpong128x128QueryRegistersCluster2:
      return fmha_sm90_pingpong_128x128_qreg_c2x1_launch_shape();
  }
  return {};
}

FmhaVariant fmha_sm90_single_block_form(FmhaVariant variant) {
  return variant == FmhaVariant::kPingpong128x128QueryRegistersCluster2
             ? FmhaVariant::kPingpong128x128QueryRegisters
             : variant;
}

}  // namespace ditbench
