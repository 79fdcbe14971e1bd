#pragma once
// Step caching on the block-structured transformer: per denoising step (and per CFG branch) a
// policy decides whether to run the transformer blocks or to reuse the residual they added at the
// last computed step, and records every decision with the signal it used.
//
// Policies ("none", "fbcache", "teacache") follow ParaAttention's first block cache and TeaCache
// (../shared/specs/caches.md). Contract a model must keep for the caches (BlockTransformer):
//  - run_block assigns new tensors to the state's fields instead of writing into them in place
//    (the caches keep a block's input to form residuals); violations throw std::logic_error;
//  - after every block, `hidden` and `context` keep the shapes they had after block 0 (separate
//    image and text streams; views of one joint buffer are fine);
//  - under context parallelism, BlockState::hidden_valid_rows marks the padding rows of the local
//    shard, which FBCache leaves out of its means, and teacache_signal returns real rows only;
//    the sums and counts are all-reduced (set_all_reduce) so every rank decides alike.
#include <ATen/ATen.h>

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "models/model.h"

namespace ditbench {

// One denoising call's decision. `signal`: FBCache's relative first-block residual difference or
// TeaCache's relative change of its model signal; null on the first step (nothing to compare to)
// or when it is not finite (an all-zero reference). `accumulated`: TeaCache's accumulated
// distance after the step's reset (null for other policies). `output_change`: mean|y_t − y_{t−1}| /
// mean|y_{t−1}| of the model output y when this step and the one before it both computed (only
// computed steps have a true output); with `signal` it is what calibrates TeaCache's polynomial.
struct CacheStepRecord {
  int step = 0;
  std::optional<double> signal;
  std::optional<double> accumulated;
  bool reused = false;
  std::optional<double> output_change;
};

// Settings of a cache policy; validated by make_cache_policy.
struct CacheOptions {
  // Reuse only below this signal (FBCache) or accumulated distance (TeaCache); 0 turns reuse off
  // (signals are still recorded, so one uncached run shows where a threshold would fire).
  double threshold = 0;
  // Steps 0..warmup_steps-1 always compute (cache-dit's warmup; FBCache still records their
  // signal and moves its reference; TeaCache's `ret_steps`, whose first step computes anyway).
  int warmup_steps = 0;
  // cache-dit's caps: at most this many reused steps per generation (-1 = no cap) ...
  int max_cached_steps = -1;
  // ... and at most this many reused steps in a row (-1 = no cap). A capped step computes (TeaCache
  // resets its accumulated distance as on any computed step).
  int max_consecutive_cached = -1;
  // TeaCache's rescaling polynomial: a named set (teacache_coefficient_sets()) or five
  // comma-separated numbers c0..c4 (e.g. from fit_teacache_coefficients).
  std::string teacache_coefficients;
};

class CachePolicy {  // one instance per generation and per CFG branch
 public:
  explicit CachePolicy(CacheOptions options) : options_(std::move(options)) {}
  virtual ~CachePolicy();
  CachePolicy(const CachePolicy&) = delete;
  CachePolicy& operator=(const CachePolicy&) = delete;

  virtual std::string name() const = 0;  // "none", "fbcache", "teacache"
  // Runs one denoising call of `model` on `in` (step index in [0, num_steps)), reusing cached work
  // when the policy decides so. Step 0 starts a new generation: the policy resets itself first.
  virtual at::Tensor forward(BlockTransformer& model, const TransformerInputs& in, int step,
                             int num_steps) = 0;
  virtual void reset() = 0;  // forget everything (new generation); keeps the all-reduce

  const CacheOptions& options() const { return options_; }
  // Every decision of the current generation (output changes are fetched from the device here,
  // not during the steps, so recording them never waits on the device).
  const std::vector<CacheStepRecord>& records() const;
  int computed_steps() const;
  int reused_steps() const;
  // Context parallelism: sums a tensor over ranks in place (set by the runner; null on one rank)
  // so every rank decides alike. Every rank must call forward for the same steps. `wait`, when
  // set, runs before a reduced sum is read on the host (a decision), so that a peer's failure
  // ends the wait instead of a blocking copy behind the reduction.
  void set_all_reduce(std::function<void(at::Tensor&)> sum, std::function<void()> wait = {}) {
    all_reduce_ = std::move(sum);
    wait_for_reduce_ = std::move(wait);
  }

 protected:
  // Checks the step range and resets on step 0.
  void begin_step(int step, int num_steps);
  // mean|cur - ref| / mean|ref| over all ranks (sums and element counts all-reduced before the
  // division); null when not finite.
  std::optional<double> relative_l1(const at::Tensor& ref, const at::Tensor& cur) const;
  // Whether cache-dit's caps allow one more reused step.
  bool caps_allow_reuse() const;
  // Records the step's decision and returns the step's model output. A computed step following a
  // computed step also gets its output_change (two reductions, left on the device until read).
  at::Tensor finish_step(const CacheStepRecord& r, at::Tensor output);
  void clear_records();

  CacheOptions options_;

 private:
  // [3] float64 on the tensors' device: sum|cur - ref|, sum|ref| and the element count, summed
  // over ranks.
  at::Tensor relative_l1_sums(const at::Tensor& ref, const at::Tensor& cur) const;

  mutable std::vector<CacheStepRecord> records_;
  // (index into records_, relative_l1_sums of the outputs) not yet fetched to the host.
  mutable std::vector<std::pair<size_t, at::Tensor>> pending_output_changes_;
  at::Tensor previous_output_;  // the last step's output when that step computed
  int consecutive_reused_ = 0;
  int total_reused_ = 0;
  std::function<void(at::Tensor&)> all_reduce_;
  std::function<void()> wait_for_reduce_;
};

// "none", "fbcache" or "teacache"; InputError on unknown names, bad options or an unknown
// coefficient set.
std::unique_ptr<CachePolicy> make_cache_policy(const std::string& name,
                                               const CacheOptions& options);
// The policy names make_cache_policy knows.
const std::vector<std::string>& cache_policy_names();

// TeaCache's published coefficient sets c0..c4 (numpy poly1d order: c0·x⁴ + … + c4) by name:
// "hunyuan-video", "flux", "mochi", "cogvideox-2b", "cogvideox-5b", "cogvideox1.5-5b",
// "wan2.1-t2v-1.3b", "wan2.1-t2v-1.3b-ret", "wan2.1-t2v-14b", "wan2.1-t2v-14b-ret".
const std::map<std::string, std::array<double, 5>>& teacache_coefficient_sets();
// A named set or five comma-separated numbers; InputError otherwise.
std::array<double, 5> parse_teacache_coefficients(const std::string& spec);

// Least-squares 4th-order polynomial through (rel_input[i], rel_output[i]) like
// np.polyfit(rel_input, rel_output, 4): coefficients c0..c4, highest power first. Calibrates
// TeaCache for a user's checkpoint from per-step relative changes of the signal (input) and of the
// model output. InputError on mismatched sizes, fewer than 5 points or non-finite values.
std::array<double, 5> fit_teacache_coefficients(const std::vector<double>& rel_input,
                                                const std::vector<double>& rel_output);

// The result record's "cache" object (DESIGN.md): policy, threshold, computed/reused counts and
// per-step decisions (with "accumulated" for TeaCache).
nlohmann::json cache_record_json(const CachePolicy& policy);

}  // namespace ditbench
