#pragma once
// One CUTLASS FMHA forward kernel (fmha_sm90_cuda.h) per tile shape and schedule, bf16 operands,
// head dim 128, float32 accumulation of both products. Keys past the last full block are masked
// in the softmax (CUTLASS's ResidualFusion: only the last key block pays for it); queries past
// the last full tile are clipped by the TMA loads and stores. Each fmha_sm90_*.cu instantiates
// one kernel: CUTLASS's as its builder makes it (`Built`), or with the mainloop of
// fmha_sm90_qreg.cuh (`QueryRegisters`), alone or on a cluster of two blocks sharing their key and
// value loads (fmha_sm90_cluster.cuh).
#include "optimizations/kernels/fmha_sm90_cuda.h"

#ifdef DITBENCH_HAS_CUTLASS_FMHA
#include <cutlass/cutlass.h>
#include <cutlass/kernel_hardware_info.h>
#include <cute/tensor.hpp>

#include "hopper_fmha/collective/fmha_fusion.hpp"
#include "hopper_fmha/device/device_universal.hpp"
#include "hopper_fmha/kernel/fmha_kernel_builder.hpp"
#include "optimizations/kernels/fmha_sm90_cluster.cuh"
#include "optimizations/kernels/fmha_sm90_qreg.cuh"
#endif

#include <algorithm>
#include <array>
#include <atomic>

namespace ditbench {
namespace fmha_detail {

#ifdef DITBENCH_HAS_CUTLASS_FMHA
using Element = cutlass::bfloat16_t;
// (S, D, (B, H)) by (token stride, 1, (batch stride, head stride)) for q, k, v and out.
using Stride = cute::tuple<int, cute::_1, cute::tuple<int, int>>;
using Fusion = cutlass::fmha::collective::ResidualFusion;
template <int kBlockQ, int kBlockK, class Schedule, class... Options>
using Builder = cutlass::fmha::kernel::FmhaBuilder<
    Element, float, float, cute::Shape<cute::Int<kBlockQ>, cute::Int<kBlockK>, cute::_128>, Stride,
    Stride, Stride, Fusion, Schedule, Options...>;

// CUTLASS's kernel for the tile shape and schedule (cooperative or ping-pong).
template <int kBlockQ, int kBlockK, class Schedule>
using Built = typename Builder<kBlockQ, kBlockK, Schedule>::Kernel;

// The same kernel with Q held in registers (fmha_sm90_qreg.cuh). CUTLASS's ping-pong schedule is
// the cooperative one made persistent with Q loaded by a warp of its own (its builder), and so is
// this one's.
// `Mainloop`: QueryRegistersMainloop, or SharedKeysMainloop for blocks in pairs.
template <int kBlockQ, int kBlockK, template <class, class> class Mainloop>
struct QueryRegistersPingpong {
  using Persistent =
      cutlass::fmha::kernel::Option<cutlass::fmha::kernel::Tag::kIsPersistent, cute::true_type>;
  using LoadsQSeparately =
      cutlass::fmha::kernel::Option<cutlass::fmha::kernel::Tag::kLoadsQSeparately, cute::true_type>;
  using B = Builder<kBlockQ, kBlockK, cutlass::gemm::KernelTmaWarpSpecializedCooperative,
                    Persistent, LoadsQSeparately>;
  using Kernel = cutlass::fmha::kernel::FmhaKernelTmaWarpSpecialized<
      Mainloop<typename B::CollectiveMainloop, Fusion>, typename B::CollectiveEpilogue,
      typename B::TileScheduler, Persistent, LoadsQSeparately>;
  using type = std::conditional_t<cute::size(typename Kernel::ClusterShape{}) == 1, Kernel,
                                  ClusterKernel<Kernel>>;
};

template <class Kernel>
struct Forward {
  using StrideLse = cute::tuple<cute::_1, cute::tuple<int, int>>;  // (S, (B, H))
  using Operation = cutlass::device::Universal<Kernel>;

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
    if (arguments.hw_info.sm_count < 1) return "no cluster of this kernel fits the device";
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

  // The current device and the blocks the persistent schedule launches: one per SM, or for a
  // kernel of clusters as many whole clusters as the device holds at once (an SM left over in a
  // GPC cannot take a cluster's block), asked once per device.
  static cutlass::KernelHardwareInfo hardware() {
    cutlass::KernelHardwareInfo info;
    cudaGetDevice(&info.device_id);
    info.sm_count = cutlass::KernelHardwareInfo::query_device_multiprocessor_count(info.device_id);
    if constexpr (kCluster > 1) info.sm_count = resident_blocks(info.device_id);
    return info;
  }

  static constexpr int kCluster = cute::size(typename Kernel::ClusterShape{});

  // Blocks of whole clusters resident at once on `device`, 0 where none fits or it cannot tell.
  static int resident_blocks(int device) {
    static std::array<std::atomic<int>, 64> known{};  // 0: not asked yet, -1: none
    if (device < 0 || device >= static_cast<int>(known.size())) return 0;
    if (known[device].load() == 0) {
      const int blocks = kCluster * clusters();
      known[device].store(blocks > 0 ? blocks : -1);
    }
    return std::max(known[device].load(), 0);
  }

  // cudaOccupancyMaxActiveClusters for the kernel's launch: its block, cluster and shared memory.
  static int clusters() {
    const void* kernel = reinterpret_cast<const void*>(cutlass::device_kernel<Kernel>);
    const int smem = Kernel::SharedStorageSize;
    cudaLaunchAttribute shape{};
    shape.id = cudaLaunchAttributeClusterDimension;
    shape.val.clusterDim.x = kCluster, shape.val.clusterDim.y = 1, shape.val.clusterDim.z = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(kCluster, 1, 1), config.blockDim = Kernel::get_block_shape();
    config.dynamicSmemBytes = smem, config.attrs = &shape, config.numAttrs = 1;
    int clusters = 0;
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) !=
            cudaSuccess ||
        cudaOccupancyMaxActiveClusters(&clusters, kernel, &config) != cudaSuccess) {
      cudaGetLastError();  // cleared: the launch reports that no cluster fits
      return 0;
    }
    return clusters;
  }
};
#endif

}  // namespace fmha_detail

// Defines the launcher `name` as the kernel `...` (a type of fmha_detail), or as a refusal in a
// build without CUTLASS's FMHA headers.
#ifdef DITBENCH_HAS_CUTLASS_FMHA
#define DITBENCH_FMHA_KERNEL(name, ...)                                                 \
  std::string fmha_sm90_##name(const FmhaProblem& problem, cudaStream_t stream) {       \
    using namespace fmha_detail;                                                        \
    return Forward<__VA_ARGS__>::run(problem, stream);                                  \
  }                                                                                     \
  FmhaLaunchShape fmha_sm90_##name##_launch_shape() {                                   \
    using namespace fmha_detail;                                                        \
    return {Forward<__VA_ARGS__>::kCluster, Forward<__VA_ARGS__>::hardware().sm_count}; \
  }
#else
#define DITBENCH_FMHA_KERNEL(name, ...)                                              \
  std::string fmha_sm90_##name(const FmhaProblem&, cudaStream_t) {                   \
    return "built without CUTLASS's Hopper FMHA headers (scripts/fetch-cutlass.sh)"; \
  }                                                                                  \
  FmhaLaunchShape fmha_sm90_##name##_launch_shape() { return {}; }
#endif

}  // namespace ditbench
