#include "optimizations/quant/linear.h"

#include <ATen/ATen.h>

namespace ditbench {

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool bias)
    : in_features_(in_features), out_features_(out_features) {
  weight = register_parameter("weight", torch::empty({out_features, in_features}), false);
  if (bias) this->bias = register_parameter("bias", torch::empty({out_features}), false);
}

at::Tensor LinearImpl::forward(const at::Tensor& x) { return at::linear(x, weight, bias); }

}  // namespace ditbench
