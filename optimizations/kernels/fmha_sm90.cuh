#pragma once
// One CUTLASS FMHA forward kernel (fmha_sm90_cuda.h) per tile shape and schedule, bf16 operands,
// head dim 128, float32 accumulation of both products. Keys past the last full block are masked
// in the softmax (CUTLASS's ResidualFusion: only the last key block pays for it); queries past
// the last full tile are clipped by the TMA loads and stores. Each fmha_sm90_*.cu instantiates
// one kernel.
#include "optimizations/kernels/fmha_sm90_cuda.h"

#ifdef DITBENCH_HAS_CUTLASS_FMHA
#include <cutlass/cutlass.h>
#include <cutlass/kernel_hardware_info.h>
#include <cute/tensor.hpp>

#include "hopper_fmha/collective/fmha_fusion.hpp"
#include "hopper_fmha/device/device_universal.hpp"
#include "hopper_fmha/kernel/fmha_kernel_builder.hpp"
#endif

namespace ditbench {
namespace fmha_detail {

#ifdef DITBENCH_HAS_CUTLASS_FMHA
template <class TileShape, class Schedule>
struct Forward {
  using Element = cutlass::bfloat16_t;
  // (S, D, (B, H)) by (token stride, 1, (batch stride, head stride)) for q, k, v and out.
  using Stride = cute::tuple<int, cute::_1, cute::tuple<int, int>>;
  using StrideLse = cute::tuple<cute::_1, cute::tuple<int, int>>;  // (S, (B, H))
  using Operation = cutlass::device::Universal<typename cutlass::fmha::kernel::FmhaBuilder<
      Element, float, float, TileShape, Stride, Stride, Stride,
      cutlass::fmha::collective::ResidualFusion, Schedule>::Kernel>;

  static Stride stride_of(int64_t token, int64_t batch, int64_t head) {
    return Stride{static_cast<int>(token), cute::_1{},
                  cute::make_tuple(static_cast<int>(batch), static_cast<int>(head))};
  }

  static std::string run(const FmhaProblem& p, cudaStream_t stream) {
    using cute::make_tuple;
    auto element = [](const void* ptr) { return static_cast<const Element*>(ptr); };
    typename Operation::Arguments arguments{
        make_tuple(static_cast<int>(p.batch), static_cast<int>(p.heads),
                   static_cast<int>(p.queries), static_cast<int>(p.keys),
                   static_cast<int>(p.head_dim)),
        {element(p.q.data), stride_of(p.q.token_stride, p.q.batch_stride, p.q.head_stride),
         element(p.k.data), stride_of(p.k.token_stride, p.k.batch_stride, p.k.head_stride),
         element(p.v.data), stride_of(p.v.token_stride, p.v.batch_stride, p.v.head_stride)},
        {static_cast<Element*>(p.out),
         stride_of(p.out_token_stride, p.out_batch_stride, p.out_head_stride), p.lse,
         StrideLse{cute::_1{},
                   make_tuple(static_cast<int>(p.heads * p.queries), static_cast<int>(p.queries))}},
        hardware()};
    if (Operation::can_implement(arguments) != cutlass::Status::kSuccess)
      return "CUTLASS's FMHA cannot implement this problem";
    Operation op;
    if (op.initialize(arguments, nullptr, stream) != cutlass::Status::kSuccess) {
      return std::string("CUTLASS's FMHA did not initialize: ") +
             cudaGetErrorString(cudaGetLastError());
    }
    if (op.run(stream) != cutlass::Status::kSuccess) {
      return std::string("CUTLASS's FMHA did not launch: ") +
             cudaGetErrorString(cudaGetLastError());
    }
    return {};
  }

  // The current device and its SM count (the persistent schedule launches one block per SM).
  static cutlass::KernelHardwareInfo hardware() {
    cutlass::KernelHardwareInfo info;
    cudaGetDevice(&info.device_id);
    info.sm_count = cutlass::KernelHardwareInfo::query_device_multiprocessor_count(info.device_id);
    return info;
  }
};
#endif

}  // namespace fmha_detail

// Defines the launcher `name` as the kernel of tile shape (Q block, K block, 128) and `schedule`,
// or as a refusal in a build without CUTLASS's FMHA headers.
#ifdef DITBENCH_HAS_CUTLASS_FMHA
#define DITBENCH_FMHA_KERNEL(name, block_q, block_k, schedule)                                   \
  std::string fmha_sm90_##name(const FmhaProblem& problem, cudaStream_t stream) {                \
    using namespace cute;                                                                        \
    return fmha_detail::Forward<Shape<Int<block_q>, Int<block_k>, _128>, schedule>::run(problem, \
                                                                                        stream); \
  }
#else
#define DITBENCH_FMHA_KERNEL(name, block_q, block_k, schedule)                       \
  std::string fmha_sm90_##name(const FmhaProblem&, cudaStream_t) {                   \
    return "built without CUTLASS's Hopper FMHA headers (scripts/fetch-cutlass.sh)"; \
  }
#endif

}  // namespace ditbench
