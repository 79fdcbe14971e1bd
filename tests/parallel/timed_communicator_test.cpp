// TimedCommunicator forwards every operation unchanged and sums its time, subgroups included,
// into one counter per rank, in all and per step; take() starts a new sum.
#include <gtest/gtest.h>

#include <mutex>
#include <thread>

#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/timed_communicator.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "optimizations/parallel/captured_graph.h"
#endif

namespace ditbench {
namespace {

TEST(TimedCommunicator, ForwardsResultsAndCountsTimeOfItsSubgroups) {
  std::mutex mutex;
  std::vector<double> first(2), second(2);
  launch_ranks(2, [&](int rank, Communicator& comm) {
    auto counter = std::make_shared<CommTimeCounter>();
    TimedCommunicator timed(comm, counter);
    // all_gather through the wrapper: [1] per rank -> [2] in rank order.
    auto gathered = timed.all_gather(at::full({1}, static_cast<float>(rank)));
    EXPECT_TRUE(at::equal(gathered, at::tensor({0.0f, 1.0f})));
    auto sub = timed.subgroup(0, rank);
    auto sum = at::full({3}, 1.0f);
    sub->all_reduce_sum(sum);
    EXPECT_TRUE(at::equal(sum, at::full({3}, 2.0f)));
    auto to_send = at::full({2}, static_cast<float>(rank));
    auto received = at::empty({2});
    sub->send_recv(to_send, 1 - rank, received, 1 - rank)->wait();
    EXPECT_TRUE(at::equal(received, at::full({2}, static_cast<float>(1 - rank))));
    // all_to_all_into through the wrapper: chunk p of [2, 1] to rank p.
    auto exchanged = at::empty({2, 1});
    timed.all_to_all_into(at::tensor({10.0f * rank, 10.0f * rank + 1}).view({2, 1}), exchanged)
        ->wait();
    EXPECT_TRUE(at::equal(exchanged, at::tensor({0.0f + rank, 10.0f + rank}).view({2, 1})));
    const double measured = counter->take().total_s;
    const double after_take = counter->take().total_s;
    std::lock_guard<std::mutex> lock(mutex);
    first[static_cast<size_t>(rank)] = measured;
    second[static_cast<size_t>(rank)] = after_take;
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_GT(first[r], 0) << "rank " << r;
    EXPECT_EQ(second[r], 0) << "rank " << r;
  }
}

TEST(TimedCommunicator, AttributesSpansToTheStepTheyBeganIn) {
  std::mutex mutex;
  std::vector<CommTimes> taken(2);
  launch_ranks(2, [&](int rank, Communicator& comm) {
    auto counter = std::make_shared<CommTimeCounter>();
    TimedCommunicator timed(comm, counter);
    auto t = at::ones({4});
    timed.all_reduce_sum(t);  // before the steps: total only
    counter->set_step(0);
    timed.all_reduce_sum(t);
    counter->set_step(-1);
    counter->set_step(2);  // step 1 had no communication
    // The peer sleeps before it joins, so this rank's wait in step 2 is at least 50 ms.
    if (rank == 1) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    timed.all_reduce_sum(t);
    timed.barrier();
    counter->set_step(-1);
    std::lock_guard<std::mutex> lock(mutex);
    taken[static_cast<size_t>(rank)] = counter->take();
  });
  for (int r = 0; r < 2; ++r) {
    const CommTimes& t = taken[static_cast<size_t>(r)];
    ASSERT_EQ(t.steps_s.size(), 3u) << "rank " << r;
    EXPECT_GT(t.steps_s[0], 0) << "rank " << r;
    EXPECT_EQ(t.steps_s[1], 0) << "rank " << r;
    EXPECT_GT(t.steps_s[2], 0) << "rank " << r;
    EXPECT_GT(t.total_s, t.steps_s[0] + t.steps_s[2]) << "rank " << r;
  }
  EXPECT_GE(taken[0].steps_s[2], 0.05);
}

#ifdef DITBENCH_HAS_CUDA
// A span recorded while the stream is captured into a CUDA graph becomes a pair of event nodes of
// the graph, which get fresh events before each launch: every launch is timed into the step it
// was launched in (two launches in one step count twice), also after a take(), and nothing is
// left out.
TEST(CommTimeCounterCuda, SpansInsideAGraphAreTimedAtEveryLaunch) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const at::Device gpu(at::kCUDA, 0);
  c10::cuda::CUDAGuard device_guard(gpu.index());
  c10::cuda::CUDAStreamGuard stream_guard(c10::cuda::getStreamFromPool(false, gpu.index()));
  CommTimeCounter counter;
  const at::Tensor a = at::randn({2048, 2048}, gpu);
  at::Tensor b;
  auto timed_work = [&] {  // a few milliseconds of GPU work inside one span
    const size_t span = counter.begin(gpu);
    b = a;
    for (int i = 0; i < 4; ++i) b = at::matmul(b, a).div_(64.0);
    counter.end(span);
  };
  timed_work();  // eager: timed as always, and cuBLAS is set up outside the capture
  const CommTimes eager = counter.take();
  EXPECT_GT(eager.total_s, 0);

  CapturedGraph graph;
  graph.begin(at::cuda::graph_pool_handle());
  timed_work();
  graph.end();
  EXPECT_EQ(counter.take().total_s, 0) << "a capture runs nothing";
  // One launch in each step of `steps`, then what the counter took.
  auto launch_in_steps = [&](const std::vector<int>& steps) {
    for (int step : steps) {
      counter.set_step(step);
      graph.launch("graph replay of the test graph");
    }
    counter.set_step(-1);
    CommTimes taken = counter.take();
    EXPECT_EQ(taken.not_measured, "");
    return taken;
  };
  const CommTimes replayed = launch_in_steps({0, 1, 1});
  ASSERT_EQ(replayed.steps_s.size(), 2u);
  EXPECT_GT(replayed.steps_s[0], 0);
  EXPECT_GT(replayed.steps_s[1], 1.5 * replayed.steps_s[0]) << "two launches, twice the time";
  EXPECT_NEAR(replayed.total_s, replayed.steps_s[0] + replayed.steps_s[1], 1e-9);
  // The events taken are gone; the graph's nodes record into the next launch's.
  const CommTimes again = launch_in_steps({0});
  ASSERT_EQ(again.steps_s.size(), 1u);
  EXPECT_GT(again.steps_s[0], 0);
}
#endif

TEST(ParallelScope, InstallsTheGroupsForThisThreadOnly) {
  EXPECT_EQ(current_parallel_groups(), nullptr);
  launch_ranks(2, [&](int, Communicator& comm) {
    ParallelGroups groups = make_parallel_groups(comm, 1, 1, 2);
    {
      ParallelScope scope(&groups);
      EXPECT_EQ(current_parallel_groups(), &groups);
      ASSERT_NE(current_sequence_group(), nullptr);
      EXPECT_EQ(current_sequence_group()->size(), 2);
    }
    EXPECT_EQ(current_parallel_groups(), nullptr);
  });
  // A one-rank layout has no sequence group to shard over.
  launch_ranks(1, [&](int, Communicator& comm) {
    ParallelGroups groups = make_parallel_groups(comm, 1, 1, 1);
    ParallelScope scope(&groups);
    EXPECT_EQ(current_sequence_group(), nullptr);
  });
}

}  // namespace
}  // namespace ditbench
