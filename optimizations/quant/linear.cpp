#include "optimizations/quant/linear.h"

#include <ATen/ATen.h>

namespace ditbench {

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool bias,
                       const at::TensorOptions& options)
    : in_features_(in_features), out_features_(out_features) {
  weight = register_parameter("weight", at::empty({out_features, in_features}, options), false);
  if (bias) this->bias = register_parameter("bias", at::empty({out_features}, options), false);
}

at::Tensor LinearImpl::forward(const at::Tensor& x) { return at::linear(x, weight, bias); }

}  // namespace ditbench
