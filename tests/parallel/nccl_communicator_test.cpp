// NcclCommunicator on the GPU machine: the same hand-derived values and the same parity with
// single-rank attention as the in-process tests, over NCCL between GPUs. Skipped without NCCL or
// with fewer than 2 GPUs.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <mutex>
#include <thread>

#include "optimizations/parallel/context_parallel.h"
#include "optimizations/parallel/sequence_shard.h"

#if defined(DITBENCH_HAS_NCCL)
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "optimizations/parallel/captured_graph.h"
#include "optimizations/parallel/nccl_communicator.h"
#endif

namespace ditbench {
namespace {

#if defined(DITBENCH_HAS_NCCL)

int gpu_count() { return static_cast<int>(c10::cuda::device_count()); }

LaunchOptions nccl(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  LaunchOptions options;
  options.backend = CommBackend::kNccl;
  options.comm.timeout = timeout;
  return options;
}

#define REQUIRE_GPUS(n) \
  if (gpu_count() < (n)) GTEST_SKIP() << "needs " << (n) << " GPUs, found " << gpu_count()

// The error that ends a launch of `fn` on 2 GPUs over NCCL ("" when it ends without one).
std::string nccl_launch_error(const std::function<void(int rank, Communicator& comm)>& fn,
                              std::chrono::milliseconds timeout) {
  try {
    launch_ranks(2, fn, nccl(timeout));
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// DITBENCH_PEER_COPIES for the launches of one scope: unset (send_recv between rank threads over
// the copy engines, the default) or "0" (over NCCL's kernels, as between processes).
struct PeerCopies {
  explicit PeerCopies(bool on) {
    if (on) {
      unsetenv("DITBENCH_PEER_COPIES");
    } else {
      setenv("DITBENCH_PEER_COPIES", "0", 1);
    }
  }
  ~PeerCopies() { unsetenv("DITBENCH_PEER_COPIES"); }
};

// Point-to-point work on the communicator made by ncclCommInitRank (not only on split ones), over
// NCCL's kernels. It once hung on 4 GPUs; the cause was the launch's closing NCCL barrier (now a
// host barrier).
TEST(NcclCommunicator, CollectivesAndSendRecvByHand) {
  REQUIRE_GPUS(2);
  PeerCopies off(false);
  const int n = std::min(gpu_count(), 4);
  launch_ranks(
      n,
      [n](int rank, Communicator& comm) {
        EXPECT_EQ(comm.send_recv_transport(), "nccl");
        auto on_gpu = at::TensorOptions().device(at::kCUDA, rank);
        auto input = at::zeros({n, 2}, at::kLong);
        for (int p = 0; p < n; ++p) {
          for (int j = 0; j < 2; ++j) input[p][j] = 100 * rank + 10 * p + j;
        }
        auto out = comm.all_to_all(input.to(on_gpu.dtype(at::kLong))).cpu();
        for (int p = 0; p < n; ++p) {
          for (int j = 0; j < 2; ++j) EXPECT_EQ(out[p][j].item<int64_t>(), 100 * p + 10 * rank + j);
        }
        auto gathered = comm.all_gather(at::full({1, 2}, rank, on_gpu.dtype(at::kFloat))).cpu();
        EXPECT_TRUE(
            at::equal(gathered, at::arange(n, at::kFloat).repeat_interleave(2).view({n, 2})));
        auto sum = at::full({3}, rank + 1.0, on_gpu.dtype(at::kFloat));
        comm.all_reduce_sum(sum);
        EXPECT_TRUE(at::equal(sum.cpu(), at::full({3}, n * (n + 1) / 2.0, at::kFloat)));
        const int next = (rank + 1) % n, prev = (rank + n - 1) % n;
        auto incoming = at::zeros({4}, on_gpu.dtype(at::kBFloat16));
        auto work =
            comm.send_recv(at::full({4}, rank, on_gpu.dtype(at::kBFloat16)), next, incoming, prev);
        work->wait();
        EXPECT_TRUE(at::equal(incoming.cpu(), at::full({4}, prev, at::kBFloat16)));
        auto group = comm.subgroup(rank % 2, rank);
        auto members = group->all_gather(at::full({1}, rank, on_gpu.dtype(at::kLong))).cpu();
        EXPECT_EQ(members.numel(), (n + 1 - rank % 2) / 2);
        EXPECT_EQ(members[group->rank()].item<int64_t>(), rank);
        comm.barrier();
      },
      nccl());
}

LocalAttentionResult math_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& key_mask, bool) {
  auto scores = at::matmul(q.to(at::kFloat), k.to(at::kFloat).transpose(-2, -1)) /
                std::sqrt(static_cast<double>(q.size(-1)));
  if (key_mask.defined()) {
    scores = scores.masked_fill(key_mask.logical_not().unsqueeze(1).unsqueeze(1), -INFINITY);
  }
  auto lse = at::logsumexp(scores, -1);
  return {at::matmul(at::exp(scores - lse.unsqueeze(-1)), v.to(at::kFloat)).to(q.scalar_type()),
          lse};
}

// Ulysses, ring and USP over NCCL on 2 or 4 GPUs against math attention on one, in float32;
// Ulysses alone in `ulysses_chunks` pipelined head groups.
void expect_context_parallel_matches_single_rank(int ulysses_chunks = 1) {
  const int n = gpu_count() >= 4 ? 4 : 2;
  at::manual_seed(11);
  const int64_t S = 1001;  // not divisible: padded
  auto q = at::randn({2, 8, S, 64}), k = at::randn({2, 8, S, 64}), v = at::randn({2, 8, S, 64});
  auto mask = at::ones({2, S}, at::kBool);
  mask[0].narrow(0, 600, S - 600).fill_(false);
  auto expected = math_attention(q, k, v, mask, false).out;
  for (int ulysses : {n, 1, 2}) {
    if (ulysses == 2 && n != 4) continue;  // USP needs 2 x 2
    std::mutex mutex;
    double worst = 0;
    launch_ranks(
        n,
        [&](int rank, Communicator& world) {
          auto groups = make_parallel_groups(world, 1, ulysses, n / ulysses);
          std::unique_ptr<ContextParallelAttention> cp =
              ulysses == n && ulysses_chunks > 1
                  ? std::make_unique<UlyssesAttention>(*groups.ulysses, ulysses_chunks)
                  : make_context_parallel_attention(groups, 8);
          const int shard = groups.sequence_rank();
          auto dev = at::Device(at::kCUDA, rank);
          auto out = cp->attend(shard_sequence(q, 2, shard, n).local.to(dev),
                                shard_sequence(k, 2, shard, n).local.to(dev),
                                shard_sequence(v, 2, shard, n).local.to(dev),
                                shard_key_mask(mask, 2, S, shard, n, dev), &math_attention);
          auto full = gather_sequence(out, 2, S, *groups.sequence).cpu();
          double diff = (full - expected).abs().max().item<double>();
          std::lock_guard<std::mutex> lock(mutex);
          worst = std::max(worst, diff);
        },
        nccl());
    EXPECT_LT(worst, 1e-4) << "ulysses degree " << ulysses << " of " << n;
  }
}

// Over NCCL's send/recv kernels, as between processes (peer copies: the next test).
TEST(NcclCommunicator, UlyssesRingAndUspMatchSingleRank) {
  REQUIRE_GPUS(2);
  PeerCopies off(false);
  expect_context_parallel_matches_single_rank();
}

// send_recv and all_to_all_into over the copy engines between rank threads (the default): blocks
// round the ring of the world and of a subgroup arrive whole while the stream is busy, as does an
// all-to-all, a size disagreement stops both ranks with an error naming the sizes, and Ulysses
// (also in pipelined head groups), ring and USP attention still match one rank.
TEST(NcclCommunicator, PeerCopiesCarrySendRecvAndTheRingMatchesSingleRank) {
  REQUIRE_GPUS(2);
  PeerCopies on(true);
  const int n = std::min(gpu_count(), 4);
  launch_ranks(
      n,
      [n](int rank, Communicator& world) {
        auto* nccl_comm = dynamic_cast<NcclCommunicator*>(&world);
        ASSERT_TRUE(nccl_comm && nccl_comm->copies_to_peers());
        auto on_gpu = at::TensorOptions().device(at::kCUDA, rank).dtype(at::kBFloat16);
        auto group = world.subgroup(rank % 2, rank);
        for (Communicator* comm : {&world, group.get()}) {
          const int size = comm->size(), me = comm->rank();
          if (size < 2) continue;
          // all_to_all over the copy engines delivers what NCCL's all_to_all does, while the
          // stream is busy.
          auto input = at::randn({3 * size, 4096}, on_gpu.dtype(at::kFloat)).add_(me);
          auto expected = comm->all_to_all(input).cpu();
          auto into = at::empty_like(input);
          auto exchange = comm->all_to_all_into(input, into);
          auto load = at::randn({2048, 2048}, on_gpu);
          for (int i = 0; i < 4; ++i) load = at::matmul(load, load).div_(64);
          exchange->wait();
          EXPECT_TRUE(at::equal(into.cpu(), expected))
              << "rank " << rank << ", group of " << size << ": all_to_all_into";
          const int next = (me + 1) % size, prev = (me + size - 1) % size;
          auto block = at::full({1 << 20}, me, on_gpu);
          for (int hop = 1; hop < size; ++hop) {
            auto incoming = at::empty_like(block);
            auto work = comm->send_recv(block, next, incoming, prev);
            auto busy = at::randn({2048, 2048}, on_gpu);
            for (int i = 0; i < 4; ++i) busy = at::matmul(busy, busy).div_(64);
            work->wait();
            const int origin = (me + size - hop) % size;
            EXPECT_TRUE(at::equal(incoming.cpu(), at::full({1 << 20}, origin, at::kBFloat16)))
                << "rank " << rank << ", group of " << size << ", hop " << hop;
            block = incoming;
          }
          // Rows at a pitch (k of a packed [B, S, 3, H, D] projection) arrive packed densely.
          auto packed = [](int r) {
            return at::arange(64 * 3 * 4 * 32, at::kFloat).add(1e5 * r).view({1, 64, 3, 4, 32});
          };
          auto k = packed(me).to(on_gpu.dtype(at::kFloat)).select(2, 1);
          auto k_in = at::empty(k.sizes(), k.options());
          comm->send_recv(k, next, k_in, prev)->wait();
          EXPECT_TRUE(at::equal(k_in.cpu(), packed(prev).select(2, 1)))
              << "rank " << rank << ", group of " << size << ": pitched rows";
        }
      },
      nccl());
  const std::string error = nccl_launch_error(
      [](int rank, Communicator& comm) {
        auto on_gpu = at::TensorOptions().device(at::kCUDA, rank);
        auto incoming = at::empty({rank == 0 ? 8 : 4}, on_gpu);
        comm.send_recv(at::zeros({4}, on_gpu), 1 - rank, incoming, 1 - rank)->wait();
      },
      std::chrono::seconds(30));
  EXPECT_NE(error.find("bytes but rank"), std::string::npos) << error;
  expect_context_parallel_matches_single_rank();
  expect_context_parallel_matches_single_rank(2);  // Ulysses' exchanges beside its attention
}

// Rank 1 fails before its first call; rank 0's all_to_all on the world communicator must end with
// the stop instead of waiting for rank 1 to connect (it did not while the world communicator was
// blocking; it passed on 4 H200s once it was nonblocking).
TEST(NcclCommunicator, ThrowingRankAbortsThePeers) {
  REQUIRE_GPUS(2);
  const auto started = std::chrono::steady_clock::now();
  const std::string error = nccl_launch_error(
      [](int rank, Communicator& comm) {
        if (rank == 1) throw std::runtime_error("boom on gpu 1");
        comm.all_to_all(at::zeros({2}, at::TensorOptions().device(at::kCUDA, rank)));
        comm.barrier();  // blocks until the watchdog aborts the communicator
      },
      std::chrono::seconds(20));
  EXPECT_NE(error.find("rank 1: boom on gpu 1"), std::string::npos) << error;
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(15));
}

// Mid-generation: both ranks have worked together on the world and a split communicator, then
// rank 1 fails. Rank 0's collectives are queued behind a peer that never comes; its wait for the
// stream (as each denoising step begins) must end with the stop, and the host copy after it
// must not hang (a blocking copy held up the stop on 2 H100s before synchronize polled).
TEST(NcclCommunicator, SynchronizeEndsWhenAPeerFailsMidRun) {
  REQUIRE_GPUS(2);
  const auto started = std::chrono::steady_clock::now();
  const std::string error = nccl_launch_error(
      [](int rank, Communicator& comm) {
        auto sub = comm.subgroup(0, rank);
        auto x = at::ones({4}, at::TensorOptions().device(at::kCUDA, rank));
        comm.all_reduce_sum(x);
        sub->all_reduce_sum(x);
        sub->synchronize("step 0");
        ASSERT_EQ(x.cpu()[0].item<float>(), 4.0f);
        if (rank == 1) throw std::runtime_error("boom at step 1");
        auto y = sub->all_to_all(x);
        sub->all_reduce_sum(y);
        sub->synchronize("step 1");
        (void)y.cpu();
      },
      std::chrono::seconds(20));
  EXPECT_NE(error.find("rank 1: boom at step 1"), std::string::npos) << error;
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(15));
}

// A peer that stalls (alive, never joining) is a timeout that names the rank and the operation,
// on the rank that waited; the in-process tests check the same on the CPU.
TEST(NcclCommunicator, TimeoutNamesTheRankAndTheOperation) {
  REQUIRE_GPUS(2);
  const std::string error = nccl_launch_error(
      [](int rank, Communicator& comm) {
        auto x = at::ones({4}, at::TensorOptions().device(at::kCUDA, rank));
        comm.all_reduce_sum(x);
        comm.synchronize("warm-up");
        if (rank == 1) {
          std::this_thread::sleep_for(std::chrono::seconds(5));
          return;
        }
        auto y = comm.all_gather(x);
        comm.synchronize("step 1");
      },
      std::chrono::seconds(1));
  // The watchdog (all_gather in flight) or the wait for the stream (step 1), whichever polls
  // first past the deadline.
  EXPECT_TRUE(error.find("rank 0 timed out in all_gather after 1s") != std::string::npos ||
              error.find("rank 0 timed out in step 1 after 1s") != std::string::npos)
      << error;
}

// A collective captured into a CUDA graph is not the watchdog's to wait for at capture time (its
// event would complete only inside a launch); each launch is watched instead. Both ranks capture
// an all-reduce and replay it once together; then rank 1 stalls and rank 0's second replay never
// completes: the watchdog stops it with an error naming the rank and the graph, which ends rank
// 0's next wait.
TEST(NcclCommunicator, StuckGraphReplayNamesTheRankAndTheGraph) {
  REQUIRE_GPUS(2);
  const std::string error = nccl_launch_error(
      [](int rank, Communicator& comm) {
        auto x = at::ones({4}, at::TensorOptions().device(at::kCUDA, rank));
        comm.all_reduce_sum(x);  // eager first: NCCL connects outside the capture
        comm.synchronize("warm-up");
        const auto device = static_cast<c10::DeviceIndex>(rank);
        const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(device);
        const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, device);
        at::cuda::CUDAEvent ready;
        ready.record(current);
        ready.block(side);
        CapturedGraph graph;
        {
          c10::cuda::CUDAStreamGuard guard(side);
          graph.begin(at::cuda::graph_pool_handle());
          comm.all_reduce_sum(x);
          graph.end();
        }
        graph.launch("graph replay of the test graph");
        comm.synchronize("step 0");
        EXPECT_EQ(x.cpu()[0].item<float>(), 4.0f);  // 2 on each rank after the warm-up, summed
        if (rank == 1) {
          std::this_thread::sleep_for(std::chrono::seconds(5));
          return;
        }
        graph.launch("graph replay of the test graph");
        // No wait of the rank's own until the watchdog's deadline has passed: the stop is the
        // watchdog's, for the launch.
        std::this_thread::sleep_for(std::chrono::seconds(3));
        comm.synchronize("step 1");
      },
      std::chrono::seconds(1));
  EXPECT_NE(error.find("rank 0 timed out in graph replay of the test graph (collectives inside: "
                       "all_reduce_sum) after 1s"),
            std::string::npos)
      << error;
}

#else

TEST(NcclCommunicator, NotBuilt) { GTEST_SKIP() << "this build has no NCCL"; }

#endif

}  // namespace
}  // namespace ditbench
