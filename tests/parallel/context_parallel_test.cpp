// Ulysses, ring and USP attention on in-process ranks against single-rank attention over the whole
// sequence, with per-sample key masks, padding (S not divisible by P) and fully masked shards.
#include <gtest/gtest.h>

#include <cmath>
#include <mutex>

#include "models/common/error.h"
#include "optimizations/attention/attention.h"
#include "optimizations/parallel/context_parallel.h"
#include "optimizations/parallel/sequence_shard.h"

namespace ditbench {
namespace {

// Independent reference: softmax attention in float64 with a key mask. Fully masked rows come out
// NaN with lse = -inf, as the math path gives them, so the merge must cope.
LocalAttentionResult reference_attention(const at::Tensor& q, const at::Tensor& k,
                                         const at::Tensor& v, const at::Tensor& key_mask, bool) {
  auto scores = at::matmul(q.to(at::kDouble), k.to(at::kDouble).transpose(-2, -1)) /
                std::sqrt(static_cast<double>(q.size(-1)));  // [B, H, Sq, Sk]
  if (key_mask.defined()) {
    scores = scores.masked_fill(key_mask.logical_not().unsqueeze(1).unsqueeze(1), -INFINITY);
  }
  auto lse = at::logsumexp(scores, -1);  // [B, H, Sq]
  auto out = at::matmul(at::exp(scores - lse.unsqueeze(-1)), v.to(at::kDouble));
  return {out.to(q.scalar_type()), lse.to(at::kFloat)};
}

struct Problem {
  at::Tensor q, k, v;   // [B, H, S, D] float32
  at::Tensor mask;      // [B, S] bool or undefined
  at::Tensor expected;  // single-rank attention [B, H, S, D]
};

// B = 2, D = 8. Sample 0 masks keys 3..5 (a whole shard when P = 4 and S = 10: rows 3..5) and the
// tail from 8; sample 1 masks only its last key.
Problem make_problem(int64_t heads, int64_t length, bool masked) {
  at::manual_seed(1234);
  Problem p;
  p.q = at::randn({2, heads, length, 8});
  p.k = at::randn({2, heads, length, 8});
  p.v = at::randn({2, heads, length, 8});
  if (masked) {
    p.mask = at::ones({2, length}, at::kBool);
    p.mask[0].narrow(0, 3, 3).fill_(false);
    p.mask[0].narrow(0, 8, length - 8).fill_(false);
    p.mask[1][length - 1] = false;
  }
  p.expected = reference_attention(p.q, p.k, p.v, p.mask, false).out;
  return p;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

enum class Mode { kUlysses, kRing, kUsp };

// Each rank takes its sequence shard (padded), runs the context-parallel attention, and gathers
// the output; every rank's gathered output must equal single-rank attention.
// ulysses_chunks > 1: Ulysses in that many pipelined head groups (kUlysses only).
void expect_matches_single_rank(Mode mode, int ranks, int64_t heads, int64_t length, bool masked,
                                int ulysses_chunks = 1) {
  Problem p = make_problem(heads, length, masked);
  std::mutex mutex;
  std::vector<at::Tensor> gathered(static_cast<size_t>(ranks));
  launch_ranks(ranks, [&](int rank, Communicator& world) {
    const int ulysses = mode == Mode::kRing ? 1 : (mode == Mode::kUsp ? 2 : ranks);
    ParallelGroups groups = make_parallel_groups(world, 1, ulysses, ranks / ulysses);
    std::unique_ptr<ContextParallelAttention> cp =
        ulysses_chunks > 1 ? std::make_unique<UlyssesAttention>(*groups.ulysses, ulysses_chunks)
                           : make_context_parallel_attention(groups, heads);
    ASSERT_TRUE(cp);
    const int shard = groups.sequence_rank();
    auto q = shard_sequence(p.q, 2, shard, ranks).local;  // [B, H, ceil(S/P), D]
    auto k = shard_sequence(p.k, 2, shard, ranks).local;
    auto v = shard_sequence(p.v, 2, shard, ranks).local;
    auto mask = shard_key_mask(p.mask, 2, length, shard, ranks, at::kCPU);
    auto out = cp->attend(q, k, v, mask, &reference_attention);
    ASSERT_EQ(out.sizes(), q.sizes());
    auto full = gather_sequence(out, 2, length, *groups.sequence);
    std::lock_guard<std::mutex> lock(mutex);
    gathered[static_cast<size_t>(rank)] = full;
  });
  for (int r = 0; r < ranks; ++r) {
    ASSERT_EQ(gathered[r].sizes(), p.expected.sizes());
    EXPECT_LT(max_abs_diff(gathered[r], p.expected), 1e-5) << "rank " << r;
  }
}

TEST(UlyssesAttention, MatchesSingleRankOn2Ranks) {
  expect_matches_single_rank(Mode::kUlysses, 2, 4, 12, false);
  expect_matches_single_rank(Mode::kUlysses, 2, 4, 12, true);
}

TEST(UlyssesAttention, MatchesSingleRankOn4RanksWithPaddingAndMaskedShard) {
  expect_matches_single_rank(Mode::kUlysses, 4, 4, 10, false);  // padded to 12
  expect_matches_single_rank(Mode::kUlysses, 4, 4, 10, true);
}

// Heads in pipelined groups: head p·H/P + c·H/(P·C) + j travels in group c; the result is one
// rank's, with padding and fully masked shards.
TEST(UlyssesAttention, HeadGroupsMatchSingleRank) {
  for (bool masked : {false, true}) {
    expect_matches_single_rank(Mode::kUlysses, 2, 12, 12, masked, 2);
    expect_matches_single_rank(Mode::kUlysses, 2, 12, 11, masked, 3);  // padded to 12
    expect_matches_single_rank(Mode::kUlysses, 4, 8, 10, masked, 2);   // padded to 12
  }
}

// Groups that do not divide a rank's heads are refused by the wrapper and, from
// DITBENCH_ULYSSES_CHUNKS, by the layout check a runner makes before any rank starts; a value
// that is not a positive integer is bad input naming the variable.
TEST(UlyssesAttention, HeadGroupsThatDoNotDivideAreUnsupported) {
  launch_ranks(2, [](int, Communicator& world) {
    UlyssesAttention ulysses(world, 4);
    auto x = at::zeros({1, 6, 2, 8});  // 3 heads a rank
    try {
      ulysses.attend(x, x, x, {}, &reference_attention);
      ADD_FAILURE() << "no Unsupported";
    } catch (const Unsupported& e) {
      EXPECT_STREQ(e.what(), "4 Ulysses head groups do not divide the 3 heads of a rank");
    }
  });
  setenv("DITBENCH_ULYSSES_CHUNKS", "4", 1);
  EXPECT_EQ(ulysses_chunks(), 4);
  EXPECT_NO_THROW(check_context_parallel_layout(2, 1, 16));
  EXPECT_NO_THROW(check_context_parallel_layout(2, 2, 12));  // USP: no head groups
  try {
    check_context_parallel_layout(4, 1, 24);
    ADD_FAILURE() << "no Unsupported";
  } catch (const Unsupported& e) {
    EXPECT_STREQ(e.what(),
                 "DITBENCH_ULYSSES_CHUNKS=4 does not divide the 6 heads of a rank (ulysses degree "
                 "4)");
  }
  for (const char* bad : {"0", "two", "3x", "-1"}) {
    setenv("DITBENCH_ULYSSES_CHUNKS", bad, 1);
    EXPECT_THROW(ulysses_chunks(), InputError) << bad;
  }
  unsetenv("DITBENCH_ULYSSES_CHUNKS");
  EXPECT_EQ(ulysses_chunks(), 1);
}

TEST(RingAttention, MatchesSingleRankOn2Ranks) {
  expect_matches_single_rank(Mode::kRing, 2, 3, 12, false);
  expect_matches_single_rank(Mode::kRing, 2, 3, 11, true);
}

TEST(RingAttention, MatchesSingleRankOn4RanksWithPaddingAndMaskedShard) {
  expect_matches_single_rank(Mode::kRing, 4, 3, 10, false);
  expect_matches_single_rank(Mode::kRing, 4, 3, 10,
                             true);  // rank 1 and rank 3 shards fully masked in sample 0
}

TEST(UspAttention, MatchesSingleRankOn2x2Ranks) {
  expect_matches_single_rank(Mode::kUsp, 4, 4, 12, false);
  expect_matches_single_rank(Mode::kUsp, 4, 4, 10, true);
}

// One sample whose q, k and v are views of a packed projection ([B, S/P, 3, H, D], as the models
// leave them): Ulysses hands attention views of what the all-to-all received (token stride
// 3·H/P·D, no repacking), USP's ring passes those on token-major, and the result
// is token-major, so the caller's [B, S/P, H·D] is a view. Values still match one rank.
void expect_token_major_round_trip(Mode mode, int ranks) {
  const int64_t heads = 4, length = 10, dim = 8;  // padded to 12 on 4 ranks
  at::manual_seed(99);
  auto packed = at::randn({1, length, 3, heads, dim});
  auto part = [&](const at::Tensor& x, int64_t i) { return x.select(2, i).transpose(1, 2); };
  auto mask = at::ones({1, length}, at::kBool);
  mask[0][length - 1] = false;
  auto expected =
      reference_attention(part(packed, 0), part(packed, 1), part(packed, 2), mask, false).out;
  const int ulysses = mode == Mode::kUsp ? 2 : ranks;
  const int64_t local_heads = heads / ulysses;
  std::mutex mutex;
  std::vector<at::Tensor> gathered(static_cast<size_t>(ranks));
  launch_ranks(ranks, [&](int rank, Communicator& world) {
    ParallelGroups groups = make_parallel_groups(world, 1, ulysses, ranks / ulysses);
    auto cp = make_context_parallel_attention(groups, heads);
    auto local = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& key_mask, bool need_lse) {
      // Every block token-major: the received views (token stride 3·H/P·D), or under USP the
      // blocks the ring brought from the other group (their own K and V, token stride H/P·D).
      EXPECT_EQ(q.stride(2), 3 * local_heads * dim);
      if (mode == Mode::kUsp && k.stride(2) == local_heads * dim) {
        EXPECT_TRUE(k.transpose(1, 2).is_contiguous());
      } else {
        EXPECT_EQ(k.stride(2), 3 * local_heads * dim);
      }
      EXPECT_EQ(v.stride(2), k.stride(2));
      auto result = reference_attention(q, k, v, key_mask, need_lse);
      // Written token-major, as the GPU backends write it.
      result.out = result.out.transpose(1, 2).contiguous().transpose(1, 2);
      return result;
    };
    auto shard = shard_sequence(packed, 1, groups.sequence_rank(), ranks).local;
    auto out =
        cp->attend(part(shard, 0), part(shard, 1), part(shard, 2),
                   shard_key_mask(mask, 1, length, groups.sequence_rank(), ranks, at::kCPU), local);
    EXPECT_TRUE(out.transpose(1, 2).is_contiguous()) << out.strides();
    auto full = gather_sequence(out, 2, length, *groups.sequence);
    std::lock_guard<std::mutex> lock(mutex);
    gathered[static_cast<size_t>(rank)] = full;
  });
  for (int r = 0; r < ranks; ++r) EXPECT_LT(max_abs_diff(gathered[r], expected), 1e-5) << r;
}

TEST(UlyssesAttention, OneSampleTravelsTokenMajorWithoutRepacking) {
  expect_token_major_round_trip(Mode::kUlysses, 2);
  expect_token_major_round_trip(Mode::kUlysses, 4);
  expect_token_major_round_trip(Mode::kUsp, 4);
}

TEST(UlyssesAttention, HeadsNotDivisibleIsUnsupported) {
  try {
    launch_ranks(4, [](int, Communicator& world) {
      ParallelGroups groups = make_parallel_groups(world, 1, 4, 1);
      make_context_parallel_attention(groups, 6);
    });
    FAIL() << "no Unsupported";
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("ulysses degree 4 does not divide 6 heads"),
              std::string::npos)
        << e.what();
  }
  // The wrapper itself refuses too, before any communication.
  launch_ranks(4, [](int, Communicator& world) {
    UlyssesAttention ulysses(world);
    auto x = at::zeros({1, 6, 2, 8});
    try {
      ulysses.attend(x, x, x, {}, &reference_attention);
      ADD_FAILURE() << "no Unsupported";
    } catch (const Unsupported& e) {
      EXPECT_STREQ(e.what(), "ulysses degree 4 does not divide 6 heads");
    }
  });
}

TEST(ParallelGroups, LayoutMismatchIsUnsupported) {
  EXPECT_THROW(
      launch_ranks(4, [](int, Communicator& world) { make_parallel_groups(world, 2, 4, 1); }),
      Unsupported);
}

TEST(MergeAttention, TwoKeyBlocksEqualAttentionOverBoth) {
  at::manual_seed(7);
  auto q = at::randn({1, 2, 3, 4}), k = at::randn({1, 2, 6, 4}), v = at::randn({1, 2, 6, 4});
  auto whole = reference_attention(q, k, v, {}, true);
  auto first = reference_attention(q, k.narrow(2, 0, 2), v.narrow(2, 0, 2), {}, true);
  auto second = reference_attention(q, k.narrow(2, 2, 4), v.narrow(2, 2, 4), {}, true);
  auto merged = merge_attention(first, second);
  EXPECT_LT(max_abs_diff(merged.out, whole.out), 1e-6);
  EXPECT_LT(max_abs_diff(merged.lse, whole.lse), 1e-6);
}

TEST(MergeAttention, FullyMaskedBlockContributesNothing) {
  at::manual_seed(8);
  auto q = at::randn({1, 1, 2, 4}), k = at::randn({1, 1, 3, 4}), v = at::randn({1, 1, 3, 4});
  auto live = reference_attention(q, k, v, {}, true);
  auto dead = reference_attention(q, k, v, at::zeros({1, 3}, at::kBool), true);
  ASSERT_TRUE(at::isnan(dead.out).all().item<bool>());  // what the math path gives
  ASSERT_TRUE(at::isneginf(dead.lse).all().item<bool>());
  for (const auto& merged : {merge_attention(live, dead), merge_attention(dead, live)}) {
    EXPECT_LT(max_abs_diff(merged.out, live.out), 1e-7);
    EXPECT_LT(max_abs_diff(merged.lse, live.lse), 1e-7);
  }
  auto both_dead = merge_attention(dead, dead);
  EXPECT_TRUE(at::equal(both_dead.out, at::zeros_like(both_dead.out)));
  EXPECT_TRUE(at::isneginf(both_dead.lse).all().item<bool>());
}

TEST(ContextParallelHook, AttendDispatchesToTheInstalledWrapper) {
  // The model's call site: attend() with the wrapper installed per rank thread, using the
  // current backend's local attention, equals attend() on one rank.
  at::manual_seed(9);
  auto q = at::randn({2, 4, 8, 16}), k = at::randn({2, 4, 8, 16}), v = at::randn({2, 4, 8, 16});
  auto mask = at::ones({2, 8}, at::kBool);
  mask[1].narrow(0, 5, 3).fill_(false);
  auto expected = attend(q, k, v, mask);
  std::mutex mutex;
  std::vector<at::Tensor> outputs(2);
  launch_ranks(2, [&](int rank, Communicator& world) {
    UlyssesAttention ulysses(world);
    AttentionSettings settings = attention_settings();
    settings.context_parallel = &ulysses;
    AttentionScope scope(settings);
    auto out =
        attend(shard_sequence(q, 2, rank, 2).local, shard_sequence(k, 2, rank, 2).local,
               shard_sequence(v, 2, rank, 2).local, shard_key_mask(mask, 2, 8, rank, 2, at::kCPU));
    auto full = gather_sequence(out, 2, 8, world);
    std::lock_guard<std::mutex> lock(mutex);
    outputs[rank] = full;
  });
  for (const auto& out : outputs) EXPECT_LT(max_abs_diff(out, expected), 1e-5);
}

}  // namespace
}  // namespace ditbench
