// Sequence sharding with padding, its key masks and inverse, and the CFG batch split.
#include <gtest/gtest.h>

#include <mutex>

#include "models/common/error.h"
#include "optimizations/parallel/context_parallel.h"
#include "optimizations/parallel/sequence_shard.h"

namespace ditbench {
namespace {

TEST(ShardSequence, PadsTheTailAndSplitsContiguously) {
  auto x = at::arange(5, at::kFloat).view({1, 5, 1});  // [B, S, D], S = 5 over 2 ranks
  auto first = shard_sequence(x, 1, 0, 2), second = shard_sequence(x, 1, 1, 2);
  EXPECT_EQ(first.full_length, 5);
  EXPECT_EQ(first.padding, 1);
  EXPECT_TRUE(at::equal(first.local.flatten(), at::tensor({0.f, 1.f, 2.f})));
  EXPECT_TRUE(at::equal(second.local.flatten(), at::tensor({3.f, 4.f, 0.f})));
  auto exact = shard_sequence(at::arange(6).view({1, 6}), 1, 2, 3);
  EXPECT_EQ(exact.padding, 0);
  EXPECT_TRUE(at::equal(exact.local.flatten(), at::tensor({4, 5}, at::kLong)));
}

// A [1, n] bool mask from 0/1 values (at::tensor has no bool overload on CPU).
at::Tensor mask_row(std::initializer_list<int64_t> values) {
  return at::tensor(std::vector<int64_t>(values)).to(at::kBool).view({1, -1});
}

TEST(ShardKeyMask, PaddingRowsAreMaskedAndUnpaddedUnmaskedStaysUndefined) {
  auto mask = mask_row({1, 0, 1, 1, 0});
  EXPECT_TRUE(at::equal(shard_key_mask(mask, 1, 5, 1, 2, at::kCPU), mask_row({1, 0, 0})));
  EXPECT_TRUE(at::equal(shard_key_mask({}, 1, 5, 1, 2, at::kCPU), mask_row({1, 1, 0})));
  EXPECT_FALSE(shard_key_mask({}, 1, 6, 1, 2, at::kCPU).defined());
  EXPECT_TRUE(
      at::equal(concat_key_masks({}, 2, mask_row({0}), 1, 1, at::kCPU), mask_row({1, 1, 0})));
  EXPECT_FALSE(concat_key_masks({}, 2, {}, 1, 1, at::kCPU).defined());
}

TEST(GatherSequence, InvertsShardSequence) {
  at::manual_seed(3);
  auto x = at::randn({2, 7, 3});  // S = 7 over 4 ranks: padded to 8
  std::mutex mutex;
  std::vector<at::Tensor> gathered(4);
  launch_ranks(4, [&](int rank, Communicator& comm) {
    auto shard = shard_sequence(x, -2, rank, 4);
    auto full = gather_sequence(shard.local, -2, shard.full_length, comm);
    std::lock_guard<std::mutex> lock(mutex);
    gathered[rank] = full;
  });
  for (const auto& g : gathered) EXPECT_TRUE(at::equal(g, x));
}

TEST(CfgParallel, SplitAndGatherRoundTrip) {
  auto batch = at::arange(12, at::kFloat).view({4, 3});  // [uncond (2 rows); cond (2 rows)]
  std::mutex mutex;
  std::vector<at::Tensor> gathered(2);
  launch_ranks(2, [&](int rank, Communicator& comm) {
    auto half = cfg_split(batch, comm);
    EXPECT_TRUE(at::equal(half, batch.narrow(0, 2 * rank, 2)));
    TransformerInputs inputs;
    inputs.latents = batch;
    inputs.timestep = at::tensor({10.f, 10.f, 20.f, 20.f});
    auto split = cfg_split(inputs, comm);
    EXPECT_FALSE(split.guidance.defined());
    EXPECT_EQ(split.timestep[0].item<float>(), rank ? 20.f : 10.f);
    auto out = cfg_gather(half * 2, comm);
    std::lock_guard<std::mutex> lock(mutex);
    gathered[rank] = out;
  });
  for (const auto& g : gathered) EXPECT_TRUE(at::equal(g, batch * 2));
}

TEST(CfgParallel, PairsRanksHoldingTheSameShard) {
  // cfg 2 x ulysses 2 on 4 ranks: ranks 0,1 are the uncond branch, 2,3 the cond branch; rank r
  // pairs with r ^ 2 and shares its sequence group with r ^ 1.
  launch_ranks(4, [](int rank, Communicator& world) {
    ParallelGroups groups = make_parallel_groups(world, 2, 2, 1);
    EXPECT_EQ(groups.cfg->rank(), rank / 2);
    EXPECT_EQ(groups.sequence_rank(), rank % 2);
    auto peers = groups.cfg->all_gather(at::full({1}, rank, at::kLong));
    EXPECT_TRUE(at::equal(peers, at::tensor({rank % 2, rank % 2 + 2}, at::kLong)));
    auto shard_peers = groups.sequence->all_gather(at::full({1}, rank, at::kLong));
    EXPECT_TRUE(at::equal(shard_peers, at::tensor({rank & ~1, rank | 1}, at::kLong)));
  });
  EXPECT_THROW(launch_ranks(1, [](int, Communicator& world) { cfg_split(at::zeros({2}), world); }),
               Unsupported);
}

}  // namespace
}  // namespace ditbench
