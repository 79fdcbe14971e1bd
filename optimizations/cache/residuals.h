#pragma once
// Residual bookkeeping shared by the cache policies (internal to optimizations/cache).
#include <ATen/ATen.h>

#include "models/model.h"

namespace ditbench::cache_detail {

// The residuals a run of blocks added to each stream, formed from the state before and after the
// blocks. A stream whose tensor the blocks left untouched (the very same tensor, e.g. Wan's text
// embedding that only feeds cross-attention) gets an undefined residual, so reuse skips it.
struct StreamResiduals {
  at::Tensor hidden;   // [B, N, D]
  at::Tensor context;  // [B, L, D] or undefined
};

// `blocks_run` blocks ran between the two states (none: zero image residual). Throws
// std::logic_error when the blocks broke the caches' contract: wrote a stream in place (its
// residual would silently be zero) or changed a stream's shape. `what` names the blocks.
StreamResiduals residuals_between(const at::Tensor& hidden_before, const at::Tensor& context_before,
                                  const BlockState& after, int64_t blocks_run, const char* what);

// after - before on the image stream, with the same checks.
at::Tensor image_residual(const at::Tensor& before, const at::Tensor& after, const char* what);

// Whether stored residuals can be added to this state (same shapes; a stored text residual needs a
// text stream).
bool residuals_fit(const StreamResiduals& stored, const BlockState& state);

// Adds the stored residuals to the state's streams.
void add_residuals(const StreamResiduals& stored, BlockState& state);

}  // namespace ditbench::cache_detail
