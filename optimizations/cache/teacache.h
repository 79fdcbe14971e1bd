#pragma once
// TeaCache: the model's timestep-aware signal (teacache_signal) changes by a relative L1 distance
// per step; its rescaled accumulation decides whether all blocks run or their stored residual is
// added to the prepared input.
#include <array>

#include "optimizations/cache/cache_policy.h"
#include "optimizations/cache/residuals.h"

namespace ditbench {

class TeaCache : public CachePolicy {
 public:
  // Resolves options.teacache_coefficients (InputError when unknown or empty).
  explicit TeaCache(CacheOptions options);
  std::string name() const override { return "teacache"; }
  at::Tensor forward(BlockTransformer& model, const TransformerInputs& in, int step,
                     int num_steps) override;
  void reset() override;

  const std::array<double, 5>& coefficients() const { return coefficients_; }
  // poly4(x) = c0·x⁴ + c1·x³ + c2·x² + c3·x + c4 (Horner, as numpy's poly1d evaluates it).
  double rescale(double rel) const;

 private:
  static constexpr int kRetSteps = 5;  // steps a `-ret` set always computes first
  std::array<double, 5> coefficients_;
  bool ret_steps_ = false;      // a `-ret` set: the first kRetSteps compute, the last may reuse
  at::Tensor previous_signal_;  // m_{t-1}
  double accumulated_ = 0;      // rescaled distance since the last computed step
  cache_detail::StreamResiduals stored_;  // all blocks' residuals at the last computed step
};

}  // namespace ditbench
