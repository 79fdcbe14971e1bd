#pragma once
// The one Linear type every model uses. It runs in the weight's dtype (fp32/bf16/fp16) or, once
// quantized, in FP8 (see quant.h). Parameters are registered as `weight` [out, in] and `bias`
// [out], as torch.nn.Linear names them, so checkpoints load by key.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace ditbench {

class LinearImpl : public torch::nn::Module {
 public:
  // Parameters are created uninitialised with `options` (device and dtype), then filled by the
  // checkpoint loader or by random init; full-size models are built directly on the GPU.
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true,
             const at::TensorOptions& options = {});

  // x: [..., in] -> [..., out]
  at::Tensor forward(const at::Tensor& x);

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  torch::Tensor weight;  // [out, in]
  torch::Tensor bias;    // [out] or undefined

 private:
  int64_t in_features_;
  int64_t out_features_;
};
TORCH_MODULE(Linear);

}  // namespace ditbench
