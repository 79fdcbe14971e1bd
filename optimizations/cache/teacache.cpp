#include "optimizations/cache/teacache.h"

#include <algorithm>

#include "models/common/error.h"

namespace ditbench {

TeaCache::TeaCache(CacheOptions options) : CachePolicy(std::move(options)) {
  if (options_.teacache_coefficients.empty()) {
    throw InputError(
        "cache option teacache_coefficients: TeaCache needs a coefficient set (a named set or "
        "five comma-separated numbers)");
  }
  coefficients_ = parse_teacache_coefficients(options_.teacache_coefficients);
  const std::string& name = options_.teacache_coefficients;
  ret_steps_ = name.size() > 4 && name.compare(name.size() - 4, 4, "-ret") == 0;
}

void TeaCache::reset() {
  clear_records();
  previous_signal_ = at::Tensor();
  accumulated_ = 0;
  stored_ = cache_detail::StreamResiduals();
}

double TeaCache::rescale(double rel) const {
  double y = 0;
  for (double c : coefficients_) y = y * rel + c;
  return y;
}

at::Tensor TeaCache::forward(BlockTransformer& model, const TransformerInputs& in, int step,
                             int num_steps) {
  begin_step(step, num_steps);
  BlockState state = model.prepare(in);
  at::Tensor signal = model.teacache_signal(state);  // m_t, model-specific shape

  CacheStepRecord rec;
  rec.step = step;
  if (previous_signal_.defined() && previous_signal_.sizes() == signal.sizes()) {
    rec.signal = relative_l1(previous_signal_, signal);
  }
  previous_signal_ = std::move(signal);  // updated on every step, reused or not

  // The first step (or the first warmup_steps) and the last always compute; a `-ret` coefficient
  // set (TeaCache4Wan2.1's use_ret_steps) computes the first 5 steps and may reuse the last.
  const int first_cacheable = std::max(ret_steps_ ? kRetSteps : 1, options_.warmup_steps);
  const bool last_computes = !ret_steps_ && step == num_steps - 1;
  if (step < first_cacheable || last_computes || !rec.signal) {
    accumulated_ = 0;
  } else {
    accumulated_ += rescale(*rec.signal);
    // A threshold of 0 turns reuse off even where a coefficient set's polynomial is negative.
    rec.reused = options_.threshold > 0 && accumulated_ < options_.threshold &&
                 cache_detail::residuals_fit(stored_, state) && caps_allow_reuse();
    if (!rec.reused) accumulated_ = 0;
  }
  rec.accumulated = accumulated_;

  if (rec.reused) {
    cache_detail::add_residuals(stored_, state);
  } else {
    const at::Tensor hidden_in = state.hidden, context_in = state.context;
    const int64_t num_blocks = model.num_blocks();
    model.run_blocks(0, num_blocks, state);
    if (options_.threshold > 0) {
      stored_ =
          cache_detail::residuals_between(hidden_in, context_in, state, num_blocks, "the blocks");
    }
  }
  return finish_step(rec, model.finish(state));
}

}  // namespace ditbench
