#include "models/common/norms.h"

namespace ditbench {

at::Tensor layer_norm_plain(const at::Tensor& x, double eps) {
  return at::layer_norm(x, {x.size(-1)}, {}, {}, eps);
}

LayerNormImpl::LayerNormImpl(int64_t dim, double eps, const at::TensorOptions& options)
    : dim_(dim), eps_(eps) {
  weight = register_parameter("weight", at::empty({dim}, options), false);
  bias = register_parameter("bias", at::empty({dim}, options), false);
}

at::Tensor LayerNormImpl::forward(const at::Tensor& x) {
  return at::layer_norm(x, {dim_}, weight, bias, eps_);
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps, bool elementwise_affine,
                         const at::TensorOptions& options)
    : eps_(eps) {
  if (elementwise_affine) weight = register_parameter("weight", at::empty({dim}, options), false);
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  auto variance = x.to(at::kFloat).pow(2).mean(-1, /*keepdim=*/true);  // [..., 1] f32
  auto y = x * at::rsqrt(variance + eps_);                             // promoted to f32
  if (!weight.defined()) return y.to(x.scalar_type());
  if (weight.scalar_type() == at::kHalf || weight.scalar_type() == at::kBFloat16) {
    y = y.to(weight.scalar_type());
  }
  return y * weight;
}

TorchRMSNormImpl::TorchRMSNormImpl(int64_t dim, double eps, const at::TensorOptions& options)
    : dim_(dim), eps_(eps) {
  weight = register_parameter("weight", at::empty({dim}, options), false);
}

at::Tensor TorchRMSNormImpl::forward(const at::Tensor& x) {
  return at::rms_norm(x, {dim_}, weight, eps_);
}

at::Tensor modulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale) {
  return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
}

AdaLayerNormZeroImpl::AdaLayerNormZeroImpl(int64_t dim, const at::TensorOptions& options,
                                           double eps)
    : eps_(eps) {
  linear = register_module("linear", Linear(dim, 6 * dim, true, options));
}

AdaLayerNormZeroImpl::Output AdaLayerNormZeroImpl::forward(const at::Tensor& x,
                                                           const at::Tensor& temb) {
  auto chunks = linear(at::silu(temb)).chunk(6, 1);  // 6 x [B, D]
  // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
  return {modulate(layer_norm_plain(x, eps_), chunks[0], chunks[1]), chunks[2], chunks[3],
          chunks[4], chunks[5]};
}

AdaLayerNormZeroSingleImpl::AdaLayerNormZeroSingleImpl(int64_t dim,
                                                       const at::TensorOptions& options, double eps)
    : eps_(eps) {
  linear = register_module("linear", Linear(dim, 3 * dim, true, options));
}

AdaLayerNormZeroSingleImpl::Output AdaLayerNormZeroSingleImpl::forward(const at::Tensor& x,
                                                                       const at::Tensor& temb) {
  auto chunks = linear(at::silu(temb)).chunk(3, 1);  // shift, scale, gate: 3 x [B, D]
  return {modulate(layer_norm_plain(x, eps_), chunks[0], chunks[1]), chunks[2]};
}

AdaLayerNormContinuousImpl::AdaLayerNormContinuousImpl(int64_t dim, int64_t cond_dim,
                                                       const at::TensorOptions& options, double eps)
    : eps_(eps) {
  linear = register_module("linear", Linear(cond_dim, 2 * dim, true, options));
}

at::Tensor AdaLayerNormContinuousImpl::forward(const at::Tensor& x, const at::Tensor& cond) {
  auto chunks = linear(at::silu(cond).to(x.scalar_type())).chunk(2, 1);  // scale, shift: [B, D]
  return modulate(layer_norm_plain(x, eps_), chunks[1], chunks[0]);
}

}  // namespace ditbench
