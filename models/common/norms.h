#pragma once
// Norms and adaptive (modulated) norms with diffusers' numerics (models.md §1.5, §1.6) and its
// parameter names. Parameter-free LayerNorms are plain functions: they own no keys.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

#include "optimizations/quant/linear.h"

namespace ditbench {

// nn.LayerNorm(dim, eps, elementwise_affine=False) over the last dim, in x's dtype.
at::Tensor layer_norm_plain(const at::Tensor& x, double eps);

// LayerNorm(dim, eps) with weight and bias (nn.LayerNorm, elementwise_affine=True).
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps, const at::TensorOptions& options);
  // x: [..., dim]
  at::Tensor forward(const at::Tensor& x);

  torch::Tensor weight, bias;  // [dim]

 private:
  int64_t dim_;
  double eps_;
};
TORCH_MODULE(LayerNorm);

// diffusers RMSNorm(dim, eps, elementwise_affine): the statistic in f32; with a bf16/fp16 weight
// the normalised value is cast to the weight dtype before the multiply, with an f32 weight the
// result stays f32 (and without a weight it returns x's dtype).
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, bool elementwise_affine, const at::TensorOptions& options);
  // x: [..., dim]
  at::Tensor forward(const at::Tensor& x);

  torch::Tensor weight;  // [dim] or undefined

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

// torch.nn.RMSNorm(dim, eps) with its weight (FLUX and Wan QK norms): PyTorch's own kernel
// (at::rms_norm), whose internal upcast and cast order differ from diffusers' RMSNorm.
class TorchRMSNormImpl : public torch::nn::Module {
 public:
  TorchRMSNormImpl(int64_t dim, double eps, const at::TensorOptions& options);
  // x: [..., dim]
  at::Tensor forward(const at::Tensor& x);

  torch::Tensor weight;  // [dim]

 private:
  int64_t dim_;
  double eps_;
};
TORCH_MODULE(TorchRMSNorm);

// x̂ = x * (1 + scale[:, None]) + shift[:, None]; x: [B, S, D], shift/scale: [B, D]
at::Tensor modulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale);

// diffusers AdaLayerNormZero(D) with a parameter-free LayerNorm (eps 1e-6): linear: Lin(D -> 6D),
// chunks (shift, scale, gate) for msa then mlp.
class AdaLayerNormZeroImpl : public torch::nn::Module {
 public:
  struct Output {
    at::Tensor x;          // modulated input x̂: [B, S, D]
    at::Tensor gate_msa;   // [B, D]
    at::Tensor shift_mlp;  // [B, D]
    at::Tensor scale_mlp;  // [B, D]
    at::Tensor gate_mlp;   // [B, D]
  };
  AdaLayerNormZeroImpl(int64_t dim, const at::TensorOptions& options, double eps = 1e-6);
  // x: [B, S, D], temb: [B, D]
  Output forward(const at::Tensor& x, const at::Tensor& temb);

  Linear linear{nullptr};

 private:
  double eps_;
};
TORCH_MODULE(AdaLayerNormZero);

// diffusers AdaLayerNormZeroSingle(D): linear: Lin(D -> 3D), chunks (shift, scale, gate).
class AdaLayerNormZeroSingleImpl : public torch::nn::Module {
 public:
  struct Output {
    at::Tensor x;     // [B, S, D]
    at::Tensor gate;  // [B, D]
  };
  AdaLayerNormZeroSingleImpl(int64_t dim, const at::TensorOptions& options, double eps = 1e-6);
  // x: [B, S, D], temb: [B, D]
  Output forward(const at::Tensor& x, const at::Tensor& temb);

  Linear linear{nullptr};

 private:
  double eps_;
};
TORCH_MODULE(AdaLayerNormZeroSingle);

// diffusers AdaLayerNormContinuous(D, cond, elementwise_affine=False): linear: Lin(cond -> 2D) on
// silu(c) cast to x's dtype, chunks in SCALE-then-shift order (diffusers-format checkpoints).
class AdaLayerNormContinuousImpl : public torch::nn::Module {
 public:
  AdaLayerNormContinuousImpl(int64_t dim, int64_t cond_dim, const at::TensorOptions& options,
                             double eps = 1e-6);
  // x: [B, S, D], cond: [B, cond_dim] -> [B, S, D]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cond);

  Linear linear{nullptr};

 private:
  double eps_;
};
TORCH_MODULE(AdaLayerNormContinuous);

}  // namespace ditbench
