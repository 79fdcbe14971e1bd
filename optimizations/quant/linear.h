#pragma once
// The one Linear type every model uses. It runs in the weight's dtype (fp32/bf16/fp16) or, once
// quantized, in FP8 (see quant.h). Parameters are registered as `weight` [out, in] and `bias`
// [out], as torch.nn.Linear names them, so checkpoints load by key.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "optimizations/quant/quant.h"

namespace ditbench {

class LinearImpl : public torch::nn::Module {
 public:
  // Parameters are created uninitialised with `options` (device and dtype), then filled by the
  // checkpoint loader or by random init; full-size models are built directly on the GPU.
  LinearImpl(int64_t in_features, int64_t out_features, bool bias = true,
             const at::TensorOptions& options = {});

  // x: [..., in] -> [..., out], in x's dtype.
  at::Tensor forward(const at::Tensor& x);

  // Quantizes the weight once, after loading and after the module is on its device: FP8 values
  // [out, in] e4m3 with a float32 scale per output channel. The full-precision weight is then
  // freed: `weight` keeps its dtype and device but holds no elements, so quantize last and read
  // shapes from in_features()/out_features(). fp8_dynamic on a GPU runs at::_scaled_mm (the
  // weight is zero-padded once to multiples of 16 where needed); on the CPU it runs the exact
  // emulation. Throws Unsupported where the device cannot run the mode, or if already quantized.
  void quantize(QuantMode mode);
  QuantMode quant_mode() const { return quant_mode_; }

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }

  torch::Tensor weight;  // [out, in]; empty once quantized
  torch::Tensor bias;    // [out] or undefined

  // Once quantized: values [out', in'] e4m3 and scale [out', 1] float32, where out' and in' are
  // out and in rounded up to 16 for at::_scaled_mm and equal to them otherwise.
  Fp8Rows weight_fp8;

 private:
  int64_t in_features_;
  int64_t out_features_;
  QuantMode quant_mode_ = QuantMode::none;
  bool use_scaled_mm_ = false;
};
TORCH_MODULE(Linear);

}  // namespace ditbench
