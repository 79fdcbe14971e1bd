#pragma once
// The one Linear type every model uses. It runs in the weight's dtype (fp32/bf16/fp16) or, once
// quantized, in FP8 (see quant.h). Parameters are registered as `weight` [out, in] and `bias`
// [out], as torch.nn.Linear names them, so checkpoints load by key.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <initializer_list>
#include <vector>

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
  // The same from an activation quantized once for several consumers (quant.h): fp8_dynamic
  // uses its e4m3 rows when it has them (no quantization pass here), other modes its `full`
  // tensor. The result equals forward(x.full) bit for bit when the rows are
  // quantize_rows_fp8(x.full) (and, from a fused producer, up to the producer's own rounding).
  // Not an overload of forward: LibTorch's module holder needs forward to be one function.
  at::Tensor forward_quantized(const QuantizedActivation& x);
  // residual + gate[:, None] * forward_quantized(x) for residual [B, S, out] and gate [B, out]
  // (bfloat16, x's rows [B*S, in]) with the gated residual added in the FP8 GEMM's epilogue
  // (fp8_linear_gated_residual_out, one GEMM a sample): an fp8_dynamic Linear on the GPU with an
  // unpadded weight, x given as e4m3 rows, the product one fp8_gemm_choice sends to the
  // kernel of kFp8GemmGatedResidualTiles. Undefined where it does not serve (the caller runs
  // the chain, which this equals bit for bit where it does).
  at::Tensor forward_gated_residual(const QuantizedActivation& x, const at::Tensor& residual,
                                    const at::Tensor& gate);
  // Whether forward runs on e4m3 rows of its input (fp8_dynamic), so a producer feeding it
  // should emit them.
  bool takes_fp8() const { return quant_mode_ == QuantMode::fp8_dynamic; }

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
  // rows: [M, in] e4m3 with their scales; shape: the input's [..., in] -> [..., out] in `dtype`.
  at::Tensor forward_fp8(const Fp8Rows& rows, std::vector<int64_t> shape, at::ScalarType dtype);

  int64_t in_features_;
  int64_t out_features_;
  QuantMode quant_mode_ = QuantMode::none;
  bool use_scaled_mm_ = false;
};
TORCH_MODULE(Linear);

// Whether any of `consumers` takes e4m3 rows (LinearImpl::takes_fp8), i.e. whether the activation
// they share should be quantized (once) before them.
bool any_takes_fp8(std::initializer_list<const LinearImpl*> consumers);
// quantized_activation(x, any_takes_fp8(consumers)).
QuantizedActivation quantize_for(const at::Tensor& x,
                                 std::initializer_list<const LinearImpl*> consumers);

}  // namespace ditbench
