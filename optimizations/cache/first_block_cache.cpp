#include "optimizations/cache/first_block_cache.h"

#include <stdexcept>

namespace ditbench {

void FirstBlockCache::reset() {
  clear_records();
  reference_residual_ = at::Tensor();
  stored_ = cache_detail::StreamResiduals();
}

at::Tensor FirstBlockCache::forward(BlockTransformer& model, const TransformerInputs& in, int step,
                                    int num_steps) {
  begin_step(step, num_steps);
  const int64_t num_blocks = model.num_blocks();
  if (num_blocks < 1) throw std::logic_error("fbcache: the model has no blocks");

  BlockState state = model.prepare(in);
  const at::Tensor hidden_in = state.hidden;  // [B, N, D]
  model.run_block(0, state);
  // first_residual: [B, N, D], block 0's change of the image stream
  at::Tensor first_residual = cache_detail::image_residual(hidden_in, state.hidden, "block 0");

  CacheStepRecord rec;
  rec.step = step;
  if (reference_residual_.defined() && reference_residual_.sizes() == first_residual.sizes()) {
    // Context-parallel padding rows hold no token (and are not zero after a block): the means
    // cover real rows only, so every layout decides as one rank would.
    auto real_rows = [&](const at::Tensor& r) {  // [B, N, D] -> [B, valid, D]
      return state.hidden_valid_rows >= 0 ? r.narrow(1, 0, state.hidden_valid_rows) : r;
    };
    rec.signal = relative_l1(real_rows(reference_residual_), real_rows(first_residual));
  }
  rec.reused = options_.threshold > 0 && step >= options_.warmup_steps && rec.signal &&
               *rec.signal < options_.threshold && cache_detail::residuals_fit(stored_, state) &&
               caps_allow_reuse();

  if (rec.reused) {
    // Blocks 1..N replaced by their residual at the last computed step; the reference stays that
    // step's first residual.
    cache_detail::add_residuals(stored_, state);
  } else {
    reference_residual_ = std::move(first_residual);
    const at::Tensor hidden_first = state.hidden, context_first = state.context;
    model.run_blocks(1, num_blocks, state);
    // Only a positive threshold can ever reuse; without one, keep no residuals (less memory, and
    // the pass is exactly the plain forward).
    if (options_.threshold > 0) {
      stored_ = cache_detail::residuals_between(hidden_first, context_first, state, num_blocks - 1,
                                                "blocks 1..N");
    }
  }
  return finish_step(rec, model.finish(state));
}

}  // namespace ditbench
