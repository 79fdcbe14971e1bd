#pragma once
// Layers of causal 3-D video VAEs (HunyuanVideo's, and any VAE built from the same pieces):
// a Conv3d that pads time causally, ResNet blocks, nearest-neighbour up-sampling that keeps the
// first frame single, and the mid-block self-attention whose frames see only their past.
// Submodules and parameters carry diffusers' names (`conv`, `norm1`, `to_out.0`, ...) so
// checkpoints load by key. Parameters are created uninitialised with the caller's options.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <optional>

#include "optimizations/kernels/video_resample.h"
#include "optimizations/quant/linear.h"

namespace ditbench {

using Int3 = std::array<int64_t, 3>;  // (time, height, width)

// Plain Conv3d parameters (`weight` [out, in, kt, kh, kw], `bias` [out]), named as torch.nn.Conv3d.
class Conv3dImpl : public torch::nn::Module {
 public:
  Conv3dImpl(int64_t in_channels, int64_t out_channels, Int3 kernel, Int3 stride,
             const at::TensorOptions& options);
  // x: [B, C_in, F, H, W] -> [B, C_out, F', H', W'] (no padding)
  at::Tensor forward(const at::Tensor& x);

  at::Tensor weight, bias;
  Int3 kernel, stride;
};
TORCH_MODULE(Conv3d);

// GroupNorm with affine `weight` and `bias` [C]; normalises over each group's channels and all
// of F, H, W (as torch.nn.GroupNorm does on a 5-D input).
class GroupNormImpl : public torch::nn::Module {
 public:
  GroupNormImpl(int64_t num_groups, int64_t num_channels, double eps,
                const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);  // x: [B, C, ...]
  // causal_resample(SiLU(forward(x)), then); on a GPU one fused pass (try_group_norm) where it
  // serves (the padding only for channels-last x).
  at::Tensor forward_silu(const at::Tensor& x, const CausalResample& then = {});

  at::Tensor weight, bias;
  int64_t num_groups;
  double eps;
};
TORCH_MODULE(GroupNorm);

// x: [B, C, F, H, W] causally up-sampled and replicate-padded per `resample`
// (optimizations/kernels/video_resample.h): one gather for a channels-last x on a GPU, else ATen's
// nearest interpolation and replicate padding. Keeps x's memory format where the gather serves;
// returns x itself for an identity `resample`.
at::Tensor causal_resample(const at::Tensor& x, const CausalResample& resample);

// Conv3d after replicate padding: (kt - 1) frames in front and none behind, so output frame t
// sees input frames <= t; kh / 2 and kw / 2 on each spatial side. Submodule `conv`.
class CausalConv3dImpl : public torch::nn::Module {
 public:
  CausalConv3dImpl(int64_t in_channels, int64_t out_channels, Int3 kernel, Int3 stride,
                   const at::TensorOptions& options);
  // x: [B, C_in, F, H, W] -> [B, C_out, F, H, W] at stride 1
  at::Tensor forward(const at::Tensor& x);
  // The padding forward() applies, for producers that write the padded input themselves.
  CausalResample padding() const;
  // x_padded: causal_resample(x, padding()) -> forward(x)
  at::Tensor forward_padded(const at::Tensor& x_padded) { return conv(x_padded); }

  Conv3d conv{nullptr};
};
TORCH_MODULE(CausalConv3d);

// norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> conv2, plus the input (through a 1x1x1
// `conv_shortcut` when the channel count changes). Dropout is identity at inference.
class ResnetBlockCausal3DImpl : public torch::nn::Module {
 public:
  ResnetBlockCausal3DImpl(int64_t in_channels, int64_t out_channels, int64_t groups, double eps,
                          const at::TensorOptions& options);
  // x: [B, C_in, F, H, W] -> [B, C_out, F, H, W]
  at::Tensor forward(const at::Tensor& x);

  GroupNorm norm1{nullptr}, norm2{nullptr};
  CausalConv3d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
};
TORCH_MODULE(ResnetBlockCausal3D);

// Nearest-neighbour up-sampling by (st, sh, sw) in which the first frame is only up-sampled in
// space (a causal video keeps one leading frame: F -> 1 + st * (F - 1)), then a causal conv.
class UpsampleCausal3DImpl : public torch::nn::Module {
 public:
  UpsampleCausal3DImpl(int64_t in_channels, int64_t out_channels, Int3 scale_factor,
                       const at::TensorOptions& options);
  // x: [B, C, F, H, W] -> [B, C_out, 1 + st * (F - 1), sh * H, sw * W]
  at::Tensor forward(const at::Tensor& x);

  CausalConv3d conv{nullptr};
  Int3 scale_factor;
};
TORCH_MODULE(UpsampleCausal3D);

// Single-head self-attention over all (f, h, w) positions with a frame-causal mask (a position
// sees every position of its own and earlier frames), GroupNorm in front and a residual
// connection: diffusers' `Attention(..., _from_deprecated_attn_block=True)` with heads = 1.
class CausalFrameAttentionImpl : public torch::nn::Module {
 public:
  CausalFrameAttentionImpl(int64_t channels, int64_t groups, double eps,
                           const at::TensorOptions& options);
  // x: [B, C, F, H, W] -> same shape
  at::Tensor forward(const at::Tensor& x);

  GroupNorm group_norm{nullptr};
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, out_proj{nullptr};
  torch::nn::ModuleList to_out;  // holds out_proj as `to_out.0` (diffusers' key)
};
TORCH_MODULE(CausalFrameAttention);

// resnets.0, then (attentions.i, resnets.i+1) pairs; `attentions` is empty without attention.
class MidBlock3DImpl : public torch::nn::Module {
 public:
  MidBlock3DImpl(int64_t channels, int64_t groups, double eps, bool add_attention,
                 const at::TensorOptions& options, int64_t num_layers = 1);
  at::Tensor forward(const at::Tensor& x);  // x: [B, C, F, H, W]

  torch::nn::ModuleList resnets, attentions;
};
TORCH_MODULE(MidBlock3D);

// `num_layers` ResNet blocks, then (optionally) one UpsampleCausal3D as `upsamplers.0`.
class UpBlock3DImpl : public torch::nn::Module {
 public:
  UpBlock3DImpl(int64_t in_channels, int64_t out_channels, int64_t num_layers, int64_t groups,
                double eps, std::optional<Int3> upsample_scale_factor,
                const at::TensorOptions& options);
  // x: [B, C_in, F, H, W] -> [B, C_out, F', H', W']
  at::Tensor forward(const at::Tensor& x);

  torch::nn::ModuleList resnets, upsamplers;
};
TORCH_MODULE(UpBlock3D);

}  // namespace ditbench
