#pragma once
// ParaAttention's first block cache: block 0's residual on the image stream decides whether the
// remaining blocks run or their stored residual is added to block 0's output.
#include "optimizations/cache/cache_policy.h"
#include "optimizations/cache/residuals.h"

namespace ditbench {

class FirstBlockCache : public CachePolicy {
 public:
  explicit FirstBlockCache(CacheOptions options) : CachePolicy(std::move(options)) {}
  std::string name() const override { return "fbcache"; }
  at::Tensor forward(BlockTransformer& model, const TransformerInputs& in, int step,
                     int num_steps) override;
  void reset() override;

 private:
  at::Tensor reference_residual_;         // block 0's image residual at the last computed step
  cache_detail::StreamResiduals stored_;  // blocks 1..N's residuals at the last computed step
};

}  // namespace ditbench
