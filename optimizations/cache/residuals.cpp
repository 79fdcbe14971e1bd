#include "optimizations/cache/residuals.h"

#include <stdexcept>
#include <string>

namespace ditbench::cache_detail {

namespace {

std::string shape_string(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

at::Tensor stream_residual(const at::Tensor& before, const at::Tensor& after, const char* stream,
                           const char* what) {
  if (after.is_alias_of(before)) {
    throw std::logic_error(std::string("cache: ") + what + " wrote the " + stream +
                           " stream in place; run_block must assign new tensors to the state");
  }
  if (after.sizes() != before.sizes()) {
    throw std::logic_error(std::string("cache: ") + what + " changed the " + stream +
                           " stream's shape from " + shape_string(before) + " to " +
                           shape_string(after) + "; the caches need both streams kept apart");
  }
  return after - before;
}

}  // namespace

StreamResiduals residuals_between(const at::Tensor& hidden_before, const at::Tensor& context_before,
                                  const BlockState& after, int64_t blocks_run, const char* what) {
  StreamResiduals r;
  if (blocks_run == 0) {
    r.hidden = at::zeros_like(after.hidden);
    return r;
  }
  // Every block rewrites the image stream, so the same storage after them means in-place writes.
  r.hidden = stream_residual(hidden_before, after.hidden, "image", what);
  // The text stream may be left alone (the very same tensor): no residual to add on reuse.
  if (context_before.defined() && after.context.defined() &&
      !after.context.is_same(context_before)) {
    r.context = stream_residual(context_before, after.context, "text", what);
  }
  return r;
}

at::Tensor image_residual(const at::Tensor& before, const at::Tensor& after, const char* what) {
  return stream_residual(before, after, "image", what);
}

bool residuals_fit(const StreamResiduals& stored, const BlockState& state) {
  if (!stored.hidden.defined() || stored.hidden.sizes() != state.hidden.sizes()) return false;
  if (!stored.context.defined()) return true;
  return state.context.defined() && stored.context.sizes() == state.context.sizes();
}

void add_residuals(const StreamResiduals& stored, BlockState& state) {
  state.hidden = state.hidden + stored.hidden;
  if (stored.context.defined()) state.context = state.context + stored.context;
}

}  // namespace ditbench::cache_detail
