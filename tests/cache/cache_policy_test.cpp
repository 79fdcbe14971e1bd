// Step caching against a toy block transformer whose blocks add residuals the test controls per
// step, so every reuse decision can be derived by hand; and against the reference implementation's
// per-step decisions (../shared/fixtures/e2e/expected.json).
#include "optimizations/cache/cache_policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "models/common/error.h"
#include "optimizations/cache/teacache.h"
#include "test_util.h"

namespace ditbench {
namespace {

// Shape and behaviour of the toy model. Block i adds scale_i(step) * P_i to the image stream and
// half of that times Q_i to the text stream, where P_i, Q_i are fixed patterns; block 0's scale is
// first_block_scale[step], later blocks' scales are 1 + 0.1 i + 0.05 step.
struct ToyConfig {
  int64_t tokens = 4, text_tokens = 3, dim = 5, blocks = 3;
  at::ScalarType dtype = at::kDouble;
  std::vector<double> first_block_scale;  // a_0(step); empty: 1 for every step
  bool ones_first_pattern = false;        // P_0 = 1 (sum|P_0| known by hand)
  bool nonlinear = false;                 // blocks also add 0.1 tanh(0.3 (i+1) h)
  bool in_place = false;                  // blocks write the image stream in place (bad model)
  double phase = 0;                       // shifts the patterns (another branch or rank)
  std::vector<double> signal;             // TeaCache's m_t per step (a 1-element tensor)
};

class ToyModel : public BlockTransformer {
 public:
  explicit ToyModel(ToyConfig c) : c_(std::move(c)) {
    const auto opts = at::TensorOptions().dtype(c_.dtype);
    for (int64_t i = 0; i < c_.blocks; ++i) {
      // P_i: [1, N, D], Q_i: [1, L, D]
      hidden_patterns_.push_back(
          at::sin(at::arange(c_.tokens * c_.dim, opts) * (0.37 * (i + 1)) + c_.phase + 0.5)
              .reshape({1, c_.tokens, c_.dim}));
      context_patterns_.push_back(
          at::cos(at::arange(c_.text_tokens * c_.dim, opts) * (0.23 * (i + 1)) + c_.phase)
              .reshape({1, c_.text_tokens, c_.dim}));
    }
    if (c_.ones_first_pattern) hidden_patterns_[0] = at::ones_like(hidden_patterns_[0]);
  }

  // The step's inputs: latents are the image stream, the step index rides in `timestep`.
  TransformerInputs inputs(int step, double latent_shift = 0) const {
    const auto opts = at::TensorOptions().dtype(c_.dtype);
    TransformerInputs in;
    in.latents = at::linspace(-1, 1, c_.tokens * c_.dim, opts).reshape({1, c_.tokens, c_.dim}) +
                 latent_shift;
    in.timestep = at::full({1}, static_cast<double>(step), opts);
    in.prompt.embeds =
        at::linspace(0.5, -0.5, c_.text_tokens * c_.dim, opts).reshape({1, c_.text_tokens, c_.dim});
    return in;
  }

  BlockState prepare(const TransformerInputs& in) override {
    BlockState s;
    s.hidden = in.latents * 1.0;
    s.context = in.prompt.embeds * 1.0;
    s.temb = in.timestep;
    step_ = static_cast<int>(in.timestep.item<double>());
    return s;
  }
  int64_t num_blocks() const override { return c_.blocks; }
  void run_block(int64_t i, BlockState& s) override {
    ++blocks_run_;
    const double scale = i == 0 ? first_scale(step_) : 1 + 0.1 * i + 0.05 * step_;
    at::Tensor update = hidden_patterns_[i] * scale;
    if (c_.nonlinear) update = update + at::tanh(s.hidden * (0.3 * (i + 1))) * 0.1;
    if (c_.in_place) {
      s.hidden.add_(update);
    } else {
      s.hidden = s.hidden + update;
    }
    s.context = s.context + context_patterns_[i] * (0.5 * scale);
  }
  at::Tensor finish(BlockState& s) override {
    // [1, N, D]: depends on both streams so a wrong text residual shows.
    return s.hidden * 2.0 + s.context.sum(1, /*keepdim=*/true);
  }
  at::Tensor teacache_signal(const BlockState& s) override {
    if (c_.signal.empty()) return s.temb + 1.0;
    return at::full({1}, c_.signal.at(step_), at::TensorOptions().dtype(at::kDouble));
  }

  int64_t blocks_run() const { return blocks_run_; }

 private:
  double first_scale(int step) const {
    return c_.first_block_scale.empty() ? 1.0 : c_.first_block_scale.at(step);
  }

  ToyConfig c_;
  std::vector<at::Tensor> hidden_patterns_, context_patterns_;
  int step_ = 0;
  int64_t blocks_run_ = 0;
};

CacheOptions fb_options(double threshold) {
  CacheOptions o;
  o.threshold = threshold;
  return o;
}

CacheOptions tea_options(double threshold, const std::string& coefficients) {
  CacheOptions o;
  o.threshold = threshold;
  o.teacache_coefficients = coefficients;
  return o;
}

std::vector<at::Tensor> generate(CachePolicy& policy, ToyModel& model, int num_steps) {
  std::vector<at::Tensor> outs;
  for (int step = 0; step < num_steps; ++step) {
    outs.push_back(policy.forward(model, model.inputs(step), step, num_steps));
  }
  return outs;
}

std::vector<bool> reuse_pattern(const CachePolicy& policy) {
  std::vector<bool> reused;
  for (const auto& r : policy.records()) reused.push_back(r.reused);
  return reused;
}

// The scale sequence of block 0 most FBCache tests use; with threshold 0.1 and nothing else, the
// relative diffs against the last computed step are: -, .05, .08, .2, .01/1.2, .02/1.2, .03/1.2,
// .3/1.2.
const std::vector<double> kFirstScales = {1.0, 1.05, 1.08, 1.2, 1.21, 1.22, 1.23, 1.5};

std::vector<bool> fbcache_pattern(CacheOptions options,
                                  const std::vector<double>& scales = kFirstScales) {
  ToyConfig c;
  c.first_block_scale = scales;
  ToyModel model(c);
  auto policy = make_cache_policy("fbcache", options);
  generate(*policy, model, static_cast<int>(scales.size()));
  return reuse_pattern(*policy);
}

TEST(FirstBlockCache, ReusePatternFollowsHandDerivedDiffs) {
  ToyConfig c;
  c.first_block_scale = kFirstScales;
  ToyModel model(c);
  auto policy = make_cache_policy("fbcache", fb_options(0.1));
  generate(*policy, model, 8);
  EXPECT_EQ(reuse_pattern(*policy),
            (std::vector<bool>{false, true, true, false, true, true, true, false}));
  // Relative to the last computed step's residual (a_ref = 1.0 until step 3, then 1.2); step 2
  // would read 0.03/1.05 if the reference had moved on the reused step 1.
  const std::vector<double> expected = {0,          0.05,       0.08,       0.2,
                                        0.01 / 1.2, 0.02 / 1.2, 0.03 / 1.2, 0.3 / 1.2};
  const auto& records = policy->records();
  ASSERT_EQ(records.size(), 8u);
  EXPECT_FALSE(records[0].signal.has_value());
  for (int t = 1; t < 8; ++t) {
    ASSERT_TRUE(records[t].signal.has_value()) << "step " << t;
    EXPECT_NEAR(*records[t].signal, expected[t], 1e-12) << "step " << t;
    EXPECT_FALSE(records[t].accumulated.has_value());
    EXPECT_EQ(records[t].step, t);
  }
  EXPECT_EQ(policy->reused_steps(), 5);
  EXPECT_EQ(policy->computed_steps(), 3);
  // Computed steps run all 3 blocks, reused steps only block 0.
  EXPECT_EQ(model.blocks_run(), 3 * 3 + 5 * 1);
}

TEST(FirstBlockCache, ReferenceIsNotUpdatedOnReuse) {
  // With the reference kept at step 0: diffs .06 (reuse), .12 (compute), then .06/1.12 (reuse).
  // A reference updated on reuse would give .06, .057, .054: three reuses.
  EXPECT_EQ(fbcache_pattern(fb_options(0.1), {1.0, 1.06, 1.12, 1.18}),
            (std::vector<bool>{false, true, false, true}));
}

TEST(FirstBlockCache, WarmupStepsCompute) {
  // Steps 0..2 compute and move the reference to 1.08; step 3: .12/1.08 > .1 computes; 4..6 reuse.
  CacheOptions o = fb_options(0.1);
  o.warmup_steps = 3;
  EXPECT_EQ(fbcache_pattern(o),
            (std::vector<bool>{false, false, false, false, true, true, true, false}));
}

TEST(FirstBlockCache, MaxCachedStepsCapsTotalReuses) {
  // Third reuse at step 4; step 5 is capped (reference 1.22), and so is step 6.
  CacheOptions o = fb_options(0.1);
  o.max_cached_steps = 3;
  EXPECT_EQ(fbcache_pattern(o),
            (std::vector<bool>{false, true, true, false, true, false, false, false}));
}

TEST(FirstBlockCache, MaxConsecutiveCachedCapsRuns) {
  // Steps 4, 5 reuse; step 6 is the third in a row and computes (reference 1.23); step 7 diff .22.
  CacheOptions o = fb_options(0.1);
  o.max_consecutive_cached = 2;
  EXPECT_EQ(fbcache_pattern(o),
            (std::vector<bool>{false, true, true, false, true, true, false, false}));
}

TEST(FirstBlockCache, ReusedOutputIsFirstBlockOutputPlusStoredResidual) {
  ToyConfig c;
  c.dtype = at::kFloat;
  c.nonlinear = true;
  c.first_block_scale = {1.0, 1.01};
  ToyModel model(c);
  auto policy = make_cache_policy("fbcache", fb_options(0.1));
  const auto outs = generate(*policy, model, 2);
  ASSERT_TRUE(policy->records()[1].reused);

  // The same by hand: residuals of blocks 1..2 at step 0, added to block 0's output at step 1.
  ToyModel manual(c);
  BlockState s0 = manual.prepare(manual.inputs(0));
  manual.run_block(0, s0);
  const at::Tensor hidden_first = s0.hidden, context_first = s0.context;
  manual.run_block(1, s0);
  manual.run_block(2, s0);
  EXPECT_TRUE(at::equal(outs[0], manual.finish(s0)));
  const at::Tensor hidden_residual = s0.hidden - hidden_first;
  const at::Tensor context_residual = s0.context - context_first;
  BlockState s1 = manual.prepare(manual.inputs(1));
  manual.run_block(0, s1);
  s1.hidden = s1.hidden + hidden_residual;
  s1.context = s1.context + context_residual;
  EXPECT_TRUE(at::equal(outs[1], manual.finish(s1)));
}

TEST(CachePolicies, ThresholdZeroIsBitExact) {
  ToyConfig c;
  c.dtype = at::kFloat;
  c.nonlinear = true;
  c.blocks = 4;
  c.first_block_scale = {1.0, 1.001, 1.002, 1.003, 1.004, 1.005};
  for (const std::string name : {"none", "fbcache", "teacache"}) {
    ToyModel model(c), plain(c);
    auto policy = make_cache_policy(name, tea_options(0.0, "hunyuan-video"));
    for (int step = 0; step < 6; ++step) {
      const TransformerInputs in = model.inputs(step, 0.01 * step);
      EXPECT_TRUE(at::equal(policy->forward(model, in, step, 6), plain.forward(in)))
          << name << " step " << step;
    }
    EXPECT_EQ(policy->reused_steps(), 0) << name;
  }
  // With a threshold that reuses, computed steps still give the plain output bit for bit.
  ToyModel model(c), plain(c);
  auto policy = make_cache_policy("fbcache", fb_options(0.5));
  for (int step = 0; step < 6; ++step) {
    const at::Tensor out = policy->forward(model, model.inputs(step), step, 6);
    if (!policy->records().back().reused) {
      EXPECT_TRUE(at::equal(out, plain.forward(model.inputs(step)))) << "step " << step;
    }
  }
  EXPECT_GT(policy->reused_steps(), 0);
}

TEST(CachePolicies, ReuseCountIsMonotoneInThreshold) {
  const int steps = 24;
  ToyConfig c;
  for (int t = 0; t < steps; ++t) {
    c.first_block_scale.push_back(1 + 0.15 * t + 0.04 * std::sin(1.7 * t));
    c.signal.push_back(std::exp(0.08 * t + 0.03 * std::sin(1.3 * t)));
  }
  for (const std::string name : {"fbcache", "teacache"}) {
    int previous = -1;
    for (double threshold : {0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0}) {
      ToyModel model(c);
      auto policy = make_cache_policy(name, tea_options(threshold, "0,0,0,1,0"));
      generate(*policy, model, steps);
      EXPECT_GE(policy->reused_steps(), previous) << name << " threshold " << threshold;
      if (threshold == 0.0) EXPECT_EQ(policy->reused_steps(), 0) << name;
      previous = policy->reused_steps();
    }
    EXPECT_GE(previous, steps / 2) << name;  // the sweep reaches heavy reuse
  }
}

TEST(CachePolicies, CfgBranchesDoNotShareState) {
  ToyConfig cond_config, uncond_config;
  cond_config.first_block_scale = kFirstScales;
  uncond_config.first_block_scale = {1.0, 1.2, 1.25, 1.3, 1.31, 1.6, 1.62, 1.64};
  uncond_config.phase = 1.3;
  for (const std::string name : {"fbcache", "teacache"}) {
    cond_config.signal = {1, 1.05, 1.09, 1.12, 1.3, 1.31, 1.32, 1.33};
    uncond_config.signal = {2, 2.02, 2.3, 2.31, 2.32, 2.6, 2.61, 2.62};
    const CacheOptions o = tea_options(0.1, "0,0,0,1,0");
    // Each branch alone.
    ToyModel cond_alone_model(cond_config), uncond_alone_model(uncond_config);
    auto cond_alone = make_cache_policy(name, o), uncond_alone = make_cache_policy(name, o);
    const auto cond_expected = generate(*cond_alone, cond_alone_model, 8);
    const auto uncond_expected = generate(*uncond_alone, uncond_alone_model, 8);
    ASSERT_NE(reuse_pattern(*cond_alone), reuse_pattern(*uncond_alone)) << name;
    // Interleaved as a CFG pipeline calls them.
    ToyModel cond_model(cond_config), uncond_model(uncond_config);
    auto cond = make_cache_policy(name, o), uncond = make_cache_policy(name, o);
    for (int step = 0; step < 8; ++step) {
      const at::Tensor c_out = cond->forward(cond_model, cond_model.inputs(step), step, 8);
      const at::Tensor u_out = uncond->forward(uncond_model, uncond_model.inputs(step), step, 8);
      EXPECT_TRUE(at::equal(c_out, cond_expected[step])) << name << " step " << step;
      EXPECT_TRUE(at::equal(u_out, uncond_expected[step])) << name << " step " << step;
    }
    EXPECT_EQ(reuse_pattern(*cond), reuse_pattern(*cond_alone)) << name;
    EXPECT_EQ(reuse_pattern(*uncond), reuse_pattern(*uncond_alone)) << name;
  }
}

// Sums one tensor per rank across threads, like a communicator's all_reduce.
class ThreadAllReduce {
 public:
  explicit ThreadAllReduce(int ranks) : ranks_(ranks), slots_(ranks) {}
  void operator()(int rank, at::Tensor& t) {
    std::unique_lock<std::mutex> lock(mutex_);
    const int generation = generation_;
    slots_[rank] = t.clone();
    if (++arrived_ == ranks_) {
      at::Tensor sum = slots_[0].clone();
      for (int r = 1; r < ranks_; ++r) sum += slots_[r];
      result_ = sum;
      arrived_ = 0;
      ++generation_;
      ready_.notify_all();
    } else if (!ready_.wait_for(lock, std::chrono::seconds(30),
                                [&] { return generation_ != generation; })) {
      throw std::runtime_error("all-reduce: the other rank never arrived");
    }
    t.copy_(result_);
  }

 private:
  int ranks_;
  std::vector<at::Tensor> slots_;
  at::Tensor result_;
  int arrived_ = 0, generation_ = 0;
  std::mutex mutex_;
  std::condition_variable ready_;
};

// Runs one generation per rank in its own thread with the all-reduce installed.
std::vector<std::vector<CacheStepRecord>> run_ranks(const std::string& name, const CacheOptions& o,
                                                    const std::vector<ToyConfig>& configs,
                                                    bool reduce) {
  const int ranks = static_cast<int>(configs.size());
  const int steps =
      static_cast<int>(std::max(configs[0].first_block_scale.size(), configs[0].signal.size()));
  ThreadAllReduce all_reduce(ranks);
  std::vector<std::vector<CacheStepRecord>> records(ranks);
  std::vector<std::exception_ptr> errors(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      try {
        ToyModel model(configs[r]);
        auto policy = make_cache_policy(name, o);
        if (reduce) policy->set_all_reduce([&, r](at::Tensor& t) { all_reduce(r, t); });
        generate(*policy, model, steps);
        records[r] = policy->records();
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (auto& e : errors) {
    if (e) std::rethrow_exception(e);
  }
  return records;
}

std::vector<bool> reused_of(const std::vector<CacheStepRecord>& records) {
  std::vector<bool> reused;
  for (const auto& r : records) reused.push_back(r.reused);
  return reused;
}

TEST(CachePolicies, ContextParallelRanksDecideAlike) {
  // FBCache: P_0 = 1 on both shards of equal size, so the global diff is
  // (|Δa_0| + |Δa_1|) / (|a_0,ref| + |a_1,ref|): step 1 (.02 + .3) / 2 = .16 computes although
  // rank 0 alone would reuse; step 2 .15 / 2.32 reuses although rank 1 alone (.15/1.3) would not;
  // step 3 (.48 + .15) / 2.32 computes.
  ToyConfig rank0, rank1;
  rank0.ones_first_pattern = rank1.ones_first_pattern = true;
  rank1.phase = 0.7;
  rank0.first_block_scale = {1.0, 1.02, 1.02, 1.5};
  rank1.first_block_scale = {1.0, 1.3, 1.45, 1.45};
  const auto fb = run_ranks("fbcache", fb_options(0.1), {rank0, rank1}, true);
  EXPECT_EQ(reused_of(fb[0]), (std::vector<bool>{false, false, true, false}));
  EXPECT_EQ(reused_of(fb[1]), reused_of(fb[0]));
  const std::vector<double> expected = {0, 0.16, 0.15 / 2.32, 0.63 / 2.32};
  for (int t = 1; t < 4; ++t) {
    EXPECT_NEAR(*fb[0][t].signal, expected[t], 1e-12) << "step " << t;
    EXPECT_EQ(*fb[1][t].signal, *fb[0][t].signal) << "step " << t;
  }
  const auto fb_local = run_ranks("fbcache", fb_options(0.1), {rank0, rank1}, false);
  EXPECT_NE(reused_of(fb_local[0]), reused_of(fb[0]));
  EXPECT_NE(reused_of(fb_local[1]), reused_of(fb[0]));

  // TeaCache with poly(x) = x: step 1 rel (.01 + .2) / 2 = .105 computes although rank 0 alone
  // would reuse; steps 2, 3 accumulate .01/2.21 + .01/2.22 and reuse; step 4 is last.
  rank0.first_block_scale = rank1.first_block_scale = {};
  rank0.signal = {1, 1.01, 1.02, 1.03, 1.04};
  rank1.signal = {1, 1.2, 1.2, 1.2, 1.2};
  const auto tea = run_ranks("teacache", tea_options(0.1, "0,0,0,1,0"), {rank0, rank1}, true);
  EXPECT_EQ(reused_of(tea[0]), (std::vector<bool>{false, false, true, true, false}));
  EXPECT_EQ(reused_of(tea[1]), reused_of(tea[0]));
  EXPECT_NEAR(*tea[0][1].signal, 0.105, 1e-12);
  EXPECT_NEAR(*tea[0][3].accumulated, 0.01 / 2.21 + 0.01 / 2.22, 1e-12);
  for (int t = 1; t < 5; ++t) EXPECT_EQ(*tea[1][t].accumulated, *tea[0][t].accumulated);
  const auto tea_local =
      run_ranks("teacache", tea_options(0.1, "0,0,0,1,0"), {rank0, rank1}, false);
  EXPECT_NE(reused_of(tea_local[0]), reused_of(tea[0]));
}

TEST(TeaCache, HandComputedPattern) {
  // poly(x) = x, so the accumulated distance is the sum of relative changes since the last
  // computed step: rel = -, .05, .04, .03, .2, .01, .01, .05 with threshold .1.
  const std::vector<double> rel = {0, 0.05, 0.04, 0.03, 0.2, 0.01, 0.01, 0.05};
  ToyConfig c;
  c.signal = {2.0};
  for (size_t t = 1; t < rel.size(); ++t) c.signal.push_back(c.signal.back() * (1 + rel[t]));
  ToyModel model(c);
  auto policy = make_cache_policy("teacache", tea_options(0.1, "0,0,0,1,0"));
  generate(*policy, model, 8);
  EXPECT_EQ(reuse_pattern(*policy),
            (std::vector<bool>{false, true, true, false, false, true, true, false}));
  const std::vector<double> accumulated = {0, 0.05, 0.09, 0, 0, 0.01, 0.02, 0};
  const auto& records = policy->records();
  EXPECT_FALSE(records[0].signal.has_value());
  for (int t = 0; t < 8; ++t) {
    ASSERT_TRUE(records[t].accumulated.has_value());
    EXPECT_NEAR(*records[t].accumulated, accumulated[t], 1e-12) << "step " << t;
    if (t > 0) EXPECT_NEAR(*records[t].signal, rel[t], 1e-12) << "step " << t;
  }
  // Reused steps run no block.
  EXPECT_EQ(model.blocks_run(), 4 * 3);
}

TEST(TeaCache, FirstLastAndWarmupStepsCompute) {
  // A constant distance of 1e-3 per step under threshold 1 reuses every step it may.
  ToyConfig c;
  c.signal = std::vector<double>(8, 1.0);
  {
    ToyModel model(c);
    auto policy = make_cache_policy("teacache", tea_options(1.0, "0,0,0,0,1e-3"));
    generate(*policy, model, 8);
    EXPECT_EQ(reuse_pattern(*policy),
              (std::vector<bool>{false, true, true, true, true, true, true, false}));
  }
  {
    CacheOptions o = tea_options(1.0, "0,0,0,0,1e-3");
    o.warmup_steps = 3;
    o.max_consecutive_cached = 2;
    ToyModel model(c);
    auto policy = make_cache_policy("teacache", o);
    generate(*policy, model, 8);
    EXPECT_EQ(reuse_pattern(*policy),
              (std::vector<bool>{false, false, false, true, true, false, true, false}));
  }
  {
    CacheOptions o = tea_options(1.0, "0,0,0,0,1e-3");
    o.max_cached_steps = 2;
    ToyModel model(c);
    auto policy = make_cache_policy("teacache", o);
    generate(*policy, model, 8);
    EXPECT_EQ(reuse_pattern(*policy),
              (std::vector<bool>{false, true, true, false, false, false, false, false}));
  }
}

TEST(TeaCache, RetStepSetsComputeTheFirstFiveAndMayReuseTheLast) {
  // A constant signal: every relative distance is 0, so each step adds poly4(0) = c4. The 1.3B
  // set's c4 = 0.1379 stays below threshold 1 for 7 steps; the ret set's c4 < 0 always does.
  ToyConfig c;
  c.signal = std::vector<double>(8, 1.0);
  {
    ToyModel model(c);
    auto policy = make_cache_policy("teacache", tea_options(1.0, "wan2.1-t2v-1.3b"));
    generate(*policy, model, 8);
    EXPECT_EQ(reuse_pattern(*policy),
              (std::vector<bool>{false, true, true, true, true, true, true, false}));
  }
  {
    ToyModel model(c);
    auto policy = make_cache_policy("teacache", tea_options(1.0, "wan2.1-t2v-1.3b-ret"));
    generate(*policy, model, 8);
    EXPECT_EQ(reuse_pattern(*policy),
              (std::vector<bool>{false, false, false, false, false, true, true, true}));
  }
}

TEST(TeaCache, ReusedOutputIsInputPlusStoredResidual) {
  ToyConfig c;
  c.dtype = at::kFloat;
  c.nonlinear = true;
  c.signal = {1.0, 1.01, 1.02};
  ToyModel model(c);
  auto policy = make_cache_policy("teacache", tea_options(0.1, "0,0,0,1,0"));
  policy->forward(model, model.inputs(0), 0, 3);  // computes and stores the residuals
  const at::Tensor out1 = policy->forward(model, model.inputs(1, 0.25), 1, 3);
  ASSERT_TRUE(policy->records().back().reused);

  ToyModel manual(c);
  BlockState s0 = manual.prepare(manual.inputs(0));
  const at::Tensor hidden_in = s0.hidden, context_in = s0.context;
  for (int64_t i = 0; i < 3; ++i) manual.run_block(i, s0);
  const at::Tensor hidden_residual = s0.hidden - hidden_in;
  const at::Tensor context_residual = s0.context - context_in;
  BlockState s1 = manual.prepare(manual.inputs(1, 0.25));
  s1.hidden = s1.hidden + hidden_residual;
  s1.context = s1.context + context_residual;
  EXPECT_TRUE(at::equal(out1, manual.finish(s1)));
}

// The reference pipeline's per-step records for tiny-shapes (fixtures/e2e/expected.json) replayed
// through the toy model: block 0's scale (FBCache) or the signal (TeaCache) is built so that each
// step's signal equals the reference's, given the reference's decisions; the policy must then
// take the same decisions and (TeaCache) accumulate the same distances.
TEST(CachePolicies, ReplaysReferenceDecisions) {
  const std::string path = testing::fixtures_dir() + "/e2e/expected.json";
  std::ifstream file(path);
  ASSERT_TRUE(file) << path;
  const nlohmann::json expected = nlohmann::json::parse(file);
  int configs = 0;
  for (const auto& run : expected.at("runs")) {
    for (const auto& config : run.at("configs")) {
      const std::string name = config.at("policy");
      const double threshold = config.at("threshold");
      const auto& per_step = config.at("per_step");
      const int steps = static_cast<int>(per_step.size());
      ToyConfig c;
      double value = 1.0, reference = 1.0;
      for (int t = 0; t < steps; ++t) {
        const auto& s = per_step[t];
        if (name == "fbcache") {
          // diff against the last computed step's residual scale
          value = t == 0 ? 1.0 : reference * (1 + s.at("signal").get<double>());
          if (!s.at("reused").get<bool>()) reference = value;
          c.first_block_scale.push_back(value);
        } else {
          value = t == 0 ? 1.0 : value * (1 + s.at("signal").get<double>());
          c.signal.push_back(value);
        }
      }
      ToyModel model(c);
      auto policy = make_cache_policy(name, tea_options(threshold, "hunyuan-video"));
      generate(*policy, model, steps);
      const std::string where =
          run.at("run").get<std::string>() + " " + name + " " + std::to_string(threshold);
      EXPECT_EQ(policy->reused_steps(), config.at("reused").get<int>()) << where;
      for (int t = 0; t < steps; ++t) {
        const auto& s = per_step[t];
        const auto& r = policy->records()[t];
        EXPECT_EQ(r.reused, s.at("reused").get<bool>()) << where << " step " << t;
        if (s.at("signal").is_null()) {
          EXPECT_FALSE(r.signal.has_value()) << where << " step " << t;
        } else {
          ASSERT_TRUE(r.signal.has_value()) << where << " step " << t;
          EXPECT_NEAR(*r.signal, s.at("signal").get<double>(), 1e-12) << where << " step " << t;
        }
        if (name == "teacache") {
          EXPECT_NEAR(*r.accumulated, s.at("accumulated").get<double>(), 1e-10)
              << where << " step " << t;
        }
      }
      ++configs;
    }
  }
  EXPECT_EQ(configs, 14);
}

TEST(CachePolicies, StepZeroAndResetStartANewGeneration) {
  ToyConfig c;
  c.first_block_scale = kFirstScales;
  ToyModel model(c);
  auto policy = make_cache_policy("fbcache", fb_options(0.1));
  const auto first = generate(*policy, model, 8);
  const auto first_pattern = reuse_pattern(*policy);
  const auto second = generate(*policy, model, 8);
  EXPECT_EQ(reuse_pattern(*policy), first_pattern);
  for (int t = 0; t < 8; ++t) EXPECT_TRUE(at::equal(first[t], second[t])) << "step " << t;
  // After reset, step 1 has no reference: it computes and records no signal.
  policy->reset();
  EXPECT_TRUE(policy->records().empty());
  EXPECT_EQ(policy->reused_steps(), 0);
  policy->forward(model, model.inputs(1), 1, 8);
  EXPECT_FALSE(policy->records()[0].reused);
  EXPECT_FALSE(policy->records()[0].signal.has_value());
  EXPECT_THROW(policy->forward(model, model.inputs(1), 8, 8), std::invalid_argument);
}

TEST(CachePolicies, InPlaceBlocksAreRejected) {
  ToyConfig c;
  c.in_place = true;
  ToyModel model(c);
  auto fb = make_cache_policy("fbcache", fb_options(0.1));
  EXPECT_THROW(fb->forward(model, model.inputs(0), 0, 4), std::logic_error);
  auto tea = make_cache_policy("teacache", tea_options(0.1, "flux"));
  EXPECT_THROW(tea->forward(model, model.inputs(0), 0, 4), std::logic_error);
}

TEST(CachePolicies, FactoryValidatesNamesAndOptions) {
  EXPECT_EQ(make_cache_policy("none", {})->name(), "none");
  EXPECT_EQ(make_cache_policy("fbcache", {})->name(), "fbcache");
  EXPECT_EQ(make_cache_policy("teacache", tea_options(0.1, "mochi"))->name(), "teacache");
  EXPECT_THROW(make_cache_policy("fastcache", {}), InputError);
  EXPECT_THROW(make_cache_policy("teacache", {}), InputError);  // no coefficient set
  EXPECT_THROW(make_cache_policy("teacache", tea_options(0.1, "hunyuan")), InputError);
  EXPECT_THROW(make_cache_policy("teacache", tea_options(0.1, "1,2,3,4")), InputError);
  EXPECT_THROW(make_cache_policy("teacache", tea_options(0.1, "1,2,3,4,x")), InputError);
  EXPECT_THROW(make_cache_policy("teacache", tea_options(0.1, "1,2,3,4,5,6")), InputError);
  EXPECT_THROW(make_cache_policy("fbcache", fb_options(-0.1)), InputError);
  EXPECT_THROW(make_cache_policy("fbcache", fb_options(NAN)), InputError);
  CacheOptions o;
  o.warmup_steps = -1;
  EXPECT_THROW(make_cache_policy("fbcache", o), InputError);
  o = {};
  o.max_cached_steps = -2;
  EXPECT_THROW(make_cache_policy("fbcache", o), InputError);
  o = {};
  o.max_consecutive_cached = -2;
  EXPECT_THROW(make_cache_policy("fbcache", o), InputError);
  try {
    make_cache_policy("teacache", tea_options(0.1, "hunyuan"));
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("hunyuan-video"), std::string::npos) << e.what();
  }
}

TEST(TeaCache, CoefficientSetsAreThePublishedOnes) {
  const auto& sets = teacache_coefficient_sets();
  EXPECT_EQ(sets.size(), 10u);
  for (const char* name :
       {"hunyuan-video", "flux", "mochi", "cogvideox-2b", "cogvideox-5b", "cogvideox1.5-5b",
        "wan2.1-t2v-1.3b", "wan2.1-t2v-1.3b-ret", "wan2.1-t2v-14b", "wan2.1-t2v-14b-ret"}) {
    EXPECT_EQ(sets.count(name), 1u) << name;
  }
  // Spot checks against ../shared/specs/caches.md.
  EXPECT_EQ(sets.at("hunyuan-video")[0], 7.33226126e+02);
  EXPECT_EQ(sets.at("flux")[4], 2.64230861e-01);
  EXPECT_EQ(sets.at("wan2.1-t2v-14b")[3], 256.27178429);
  EXPECT_EQ(sets.at("cogvideox-2b")[4], -3.61568434e-03);
  EXPECT_EQ(sets.at("wan2.1-t2v-14b-ret")[0], -3.03318725e+05);
  const auto custom = parse_teacache_coefficients("1.5, -2e-3,0,4,5");
  EXPECT_EQ(custom, (std::array<double, 5>{1.5, -2e-3, 0, 4, 5}));
  // numpy: np.poly1d(hunyuan)(0.03450727462768555) as in the reference's step 1.
  TeaCache tea(tea_options(0.1, "hunyuan-video"));
  EXPECT_NEAR(tea.rescale(0.03450727462768555), 0.05246662185942431, 1e-15);
}

TEST(TeaCache, FitMatchesNumpyPolyfit) {
  // x = 0.01 + 0.29 i / 39, y = 0.05 + 0.5x + 3x² - 4x³ + 0.02 sin(37x), i = 0..39;
  // np.polyfit(x, y, 4) gives:
  const std::array<double, 5> numpy = {-170.32101366463121, 83.881534415615945, -9.9317437311069536,
                                       0.89395764134990452, 0.063723454043165401};
  std::vector<double> x, y;
  for (int i = 0; i < 40; ++i) {
    const double xi = 0.01 + 0.29 * i / 39;
    x.push_back(xi);
    y.push_back(0.05 + 0.5 * xi + 3 * xi * xi - 4 * xi * xi * xi + 0.02 * std::sin(37 * xi));
  }
  const auto c = fit_teacache_coefficients(x, y);
  for (int k = 0; k < 5; ++k) EXPECT_NEAR(c[k], numpy[k], 1e-8 * std::abs(numpy[k])) << k;

  // Exact polynomial data (HunyuanVideo-like magnitudes) is recovered.
  const std::array<double, 5> poly = {733.2, -401.1, 67.6, -3.15, 0.096};
  std::vector<double> px = {0.02, 0.05, 0.08, 0.11, 0.15, 0.2, 0.3}, py;
  for (double xi : px) {
    double v = 0;
    for (double ck : poly) v = v * xi + ck;
    py.push_back(v);
  }
  const auto fitted = fit_teacache_coefficients(px, py);
  for (int k = 0; k < 5; ++k) EXPECT_NEAR(fitted[k], poly[k], 1e-9 * std::abs(poly[k])) << k;

  EXPECT_THROW(fit_teacache_coefficients({0.1, 0.2}, {0.1}), InputError);
  EXPECT_THROW(fit_teacache_coefficients({0.1, 0.2, 0.3, 0.4}, {1, 2, 3, 4}), InputError);
  EXPECT_THROW(fit_teacache_coefficients({0.1, 0.1, 0.2, 0.2, 0.3, 0.3}, {1, 2, 3, 4, 5, 6}),
               InputError);
  EXPECT_THROW(fit_teacache_coefficients({0.1, 0.2, 0.3, 0.4, NAN}, {1, 2, 3, 4, 5}), InputError);
}

TEST(CachePolicies, RecordJsonCarriesDecisions) {
  ToyConfig c;
  c.signal = {1.0, 1.02, 1.5};
  ToyModel model(c);
  auto policy = make_cache_policy("teacache", tea_options(0.1, "0,0,0,1,0"));
  generate(*policy, model, 3);
  const nlohmann::json j = cache_record_json(*policy);
  EXPECT_EQ(j.at("policy"), "teacache");
  EXPECT_EQ(j.at("threshold"), 0.1);
  EXPECT_EQ(j.at("computed_steps"), 2);
  EXPECT_EQ(j.at("reused_steps"), 1);
  ASSERT_EQ(j.at("per_step").size(), 3u);
  EXPECT_TRUE(j.at("per_step")[0].at("signal").is_null());
  EXPECT_EQ(j.at("per_step")[1].at("reused"), true);
  EXPECT_NEAR(j.at("per_step")[1].at("signal").get<double>(), 0.02, 1e-12);
  EXPECT_NEAR(j.at("per_step")[2].at("signal").get<double>(), 0.48 / 1.02, 1e-12);
  EXPECT_EQ(j.at("per_step")[2].at("accumulated"), 0.0);
}

TEST(CachePolicies, OutputChangeOfConsecutiveComputedSteps) {
  // Reference: the plain forward pass's outputs y_t, mean|y_t - y_{t-1}| / mean|y_{t-1}|.
  ToyConfig c;
  c.first_block_scale = kFirstScales;
  ToyModel plain(c);
  std::vector<double> expected(kFirstScales.size(), 0);
  at::Tensor previous;
  for (int t = 0; t < static_cast<int>(kFirstScales.size()); ++t) {
    const at::Tensor y = plain.forward(plain.inputs(t));
    if (previous.defined())
      expected[t] = ((y - previous).abs().mean() / previous.abs().mean()).item<double>();
    previous = y;
  }
  // Uncached runs (no cache, TeaCache at threshold 0) carry it on every step after the first.
  for (const std::string name : {"none", "teacache"}) {
    ToyModel model(c);
    auto policy = make_cache_policy(name, tea_options(0.0, "hunyuan-video"));
    generate(*policy, model, 8);
    const auto& records = policy->records();
    EXPECT_FALSE(records[0].output_change.has_value()) << name;
    for (int t = 1; t < 8; ++t) {
      ASSERT_TRUE(records[t].output_change.has_value()) << name << " step " << t;
      EXPECT_NEAR(*records[t].output_change, expected[t], 1e-12 * expected[t])
          << name << " step " << t;
    }
  }
  // FBCache at 0.06 (diffs as in ReusePatternFollowsHandDerivedDiffs, the reference moving to
  // steps 2 and 3): reuses steps 1, 4, 5, 6; only steps 2 -> 3 are two computed steps in a row.
  ToyModel model(c);
  auto policy = make_cache_policy("fbcache", fb_options(0.06));
  generate(*policy, model, 8);
  ASSERT_EQ(reuse_pattern(*policy),
            (std::vector<bool>{false, true, false, false, true, true, true, false}));
  const auto& records = policy->records();
  for (int t = 0; t < 8; ++t) {
    if (t == 3) {
      ASSERT_TRUE(records[t].output_change.has_value());
      EXPECT_NEAR(*records[t].output_change, expected[t], 1e-12 * expected[t]);
    } else {
      EXPECT_FALSE(records[t].output_change.has_value()) << "step " << t;
    }
  }
  EXPECT_NEAR(cache_record_json(*policy).at("per_step")[3].at("output_change").get<double>(),
              expected[3], 1e-12 * expected[3]);
}

}  // namespace
}  // namespace ditbench
