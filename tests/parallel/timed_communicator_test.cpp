// TimedCommunicator forwards every operation unchanged and sums its time, subgroups included,
// into one counter per rank; take_seconds() starts a new sum.
#include <gtest/gtest.h>

#include <mutex>

#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/timed_communicator.h"

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
    const double measured = counter->take_seconds();
    const double after_take = counter->take_seconds();
    std::lock_guard<std::mutex> lock(mutex);
    first[static_cast<size_t>(rank)] = measured;
    second[static_cast<size_t>(rank)] = after_take;
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_GT(first[r], 0) << "rank " << r;
    EXPECT_EQ(second[r], 0) << "rank " << r;
  }
}

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
