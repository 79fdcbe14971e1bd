#include "optimizations/quant/linear.h"

#include <ATen/ATen.h>

#include "models/common/error.h"
#include "models/common/flop_count.h"

namespace ditbench {

LinearImpl::LinearImpl(int64_t in_features, int64_t out_features, bool bias,
                       const at::TensorOptions& options)
    : in_features_(in_features), out_features_(out_features) {
  weight = register_parameter("weight", at::empty({out_features, in_features}, options), false);
  if (bias) this->bias = register_parameter("bias", at::empty({out_features}, options), false);
}

void LinearImpl::quantize(QuantMode mode) {
  if (quant_mode_ != QuantMode::none) {
    throw Unsupported("linear [" + std::to_string(out_features_) + ", " +
                      std::to_string(in_features_) + "] is already quantized (" +
                      quant_mode_name(quant_mode_) + ")");
  }
  if (mode == QuantMode::none) return;
  const auto check = check_quant_mode(mode, weight.device());
  if (!check.ok) throw Unsupported(check.reason);
  use_scaled_mm_ = mode == QuantMode::fp8_dynamic && weight.is_cuda();
  auto w = weight.detach();  // [N, K]
  if (use_scaled_mm_) {
    // _scaled_mm wants K and N multiples of 16: zero rows and columns change no product.
    const int64_t pad_k = (16 - in_features_ % 16) % 16, pad_n = (16 - out_features_ % 16) % 16;
    if (pad_k || pad_n) w = at::constant_pad_nd(w, {0, pad_k, 0, pad_n});  // [N', K']
  }
  weight_fp8 = quantize_rows_fp8(w);
  weight.set_data(at::empty({0}, weight.options()));  // frees the full-precision copy
  quant_mode_ = mode;
}

at::Tensor LinearImpl::forward(const at::Tensor& x) {
  switch (quant_mode_) {
    case QuantMode::none:
      count_gemm_flops(in_features_ ? x.numel() / in_features_ : 0, in_features_, out_features_);
      return at::linear(x, weight, bias);
    case QuantMode::fp8_weight_only: {
      count_gemm_flops(in_features_ ? x.numel() / in_features_ : 0, in_features_, out_features_);
      auto w = dequantize_rows_fp8(weight_fp8).to(x.scalar_type());  // [N, K]
      return at::linear(x, w, bias);
    }
    case QuantMode::fp8_dynamic:
      break;
  }
  auto rows = x.reshape({-1, in_features_});  // [M, K]
  if (use_scaled_mm_ && weight_fp8.values.size(1) == in_features_ &&
      weight_fp8.values.size(0) == out_features_) {
    // Unpadded: the quantization may run beside the GEMM (fp8_linear_scaled_mm).
    count_gemm_flops(rows.size(0), in_features_, out_features_);
    auto shape = x.sizes().vec();
    shape.back() = out_features_;
    return fp8_linear_scaled_mm(rows, weight_fp8, bias).view(shape);
  }
  return forward_fp8(quantize_rows_fp8(rows), x.sizes().vec(), x.scalar_type());
}

at::Tensor LinearImpl::forward_quantized(const QuantizedActivation& x) {
  if (takes_fp8() && x.fp8.values.defined()) {
    TORCH_CHECK(!x.shape.empty() && x.shape.back() == in_features_ && x.fp8.values.dim() == 2 &&
                    x.fp8.values.size(1) == in_features_,
                "linear [", out_features_, ", ", in_features_, "]: e4m3 rows of shape ",
                x.fp8.values.sizes(), " for an activation of shape ", x.shape);
    return forward_fp8(x.fp8, x.shape, x.dtype);
  }
  TORCH_CHECK(x.full.defined(), "linear [", out_features_, ", ", in_features_, "] runs ",
              quant_mode_name(quant_mode_),
              " but its input was produced as e4m3 rows only (see any_takes_fp8)");
  return forward(x.full);
}

at::Tensor LinearImpl::forward_gated_residual(const QuantizedActivation& x,
                                              const at::Tensor& residual, const at::Tensor& gate) {
  const auto& rows = x.fp8;
  if (!takes_fp8() || !use_scaled_mm_ || !rows.values.defined() || rows.values.dim() != 2 ||
      rows.values.size(1) != in_features_ || weight_fp8.values.size(0) != out_features_ ||
      weight_fp8.values.size(1) != in_features_ || residual.dim() != 3 || gate.dim() != 2) {
    return {};
  }
  const int64_t batch = residual.size(0), tokens = residual.size(1);
  if (residual.size(2) != out_features_ || gate.size(0) != batch || gate.size(1) != out_features_ ||
      rows.values.size(0) != batch * tokens || rows.scale.numel() != batch * tokens) {
    return {};
  }
  const auto choice = fp8_gemm_choice(tokens, out_features_, in_features_, true);
  if (choice.kernel != kFp8GemmGatedResidualTiles || choice.quant_sms > 0) return {};
  // Each sample's operands 16-byte aligned as the first's: its scales, gate and residual rows.
  if (batch > 1 && (tokens % 4 != 0 || gate.stride(0) % 8 != 0)) return {};
  auto out = at::empty(residual.sizes(), residual.options());  // [B, S, out]
  for (int64_t b = 0; b < batch; ++b) {
    const Fp8Rows sample{rows.values.narrow(0, b * tokens, tokens),
                         rows.scale.reshape({-1, 1}).narrow(0, b * tokens, tokens)};
    if (!fp8_linear_gated_residual_out(sample, weight_fp8, bias, residual[b], gate[b], out[b],
                                       choice.schedule)) {
      return {};  // refused at the first sample (device, layout): nothing is left half-written
    }
  }
  count_gemm_flops(rows.values.size(0), in_features_, out_features_);
  return out;
}

at::Tensor LinearImpl::forward_fp8(const Fp8Rows& rows, std::vector<int64_t> shape,
                                   at::ScalarType dtype) {
  shape.back() = out_features_;
  count_gemm_flops(rows.values.size(0), in_features_, out_features_);
  if (!use_scaled_mm_) return fp8_linear_emulated(rows, dtype, weight_fp8, bias).view(shape);
  Fp8Rows x = rows;  // [M, K]
  const int64_t padded_k = weight_fp8.values.size(1), padded_n = weight_fp8.values.size(0);
  if (padded_k != in_features_) {
    // Zero columns (e4m3 zero is the zero byte) change no product and no row scale.
    x.values = at::constant_pad_nd(x.values.view(at::kByte), {0, padded_k - in_features_})
                   .view(at::kFloat8_e4m3fn);  // [M, K']
  }
  at::Tensor padded_bias = bias;
  if (bias.defined() && padded_n != out_features_) {
    padded_bias = at::constant_pad_nd(bias, {0, padded_n - out_features_});
  }
  auto out = fp8_linear_scaled_mm(x, dtype, weight_fp8, padded_bias);  // [M, N']
  if (padded_n != out_features_) out = out.narrow(1, 0, out_features_);
  return out.reshape(shape);
}

bool any_takes_fp8(std::initializer_list<const LinearImpl*> consumers) {
  for (const auto* linear : consumers) {
    if (linear && linear->takes_fp8()) return true;
  }
  return false;
}

QuantizedActivation quantize_for(const at::Tensor& x,
                                 std::initializer_list<const LinearImpl*> consumers) {
  return quantized_activation(x, any_takes_fp8(consumers));
}

}  // namespace ditbench
