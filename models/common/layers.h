#pragma once
// Feed-forward, ModuleList-style holders and patch embedding with diffusers' key names
// (models.md §1.7): dropouts own no keys but take ModuleList indices, hence `net.0.proj`,
// `net.2` and `to_out.0`.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/common/embeddings.h"
#include "optimizations/quant/linear.h"

namespace ditbench {

// A ModuleList-like holder: `count` children made by `make`, registered under "0", "1", ... of a
// child `name` of `parent`, so their keys read "name.i.*".
template <typename Holder, typename Make>
std::vector<Holder> register_module_list(torch::nn::Module& parent, const std::string& name,
                                         int64_t count, Make&& make) {
  auto list = parent.register_module(name, std::make_shared<torch::nn::Module>());
  std::vector<Holder> items;
  for (int64_t i = 0; i < count; ++i) {
    items.push_back(make());
    list->register_module(std::to_string(i), items.back().ptr());
  }
  return items;
}

// diffusers GELU / activation-with-projection module: `proj` then the activation; SwiGLU splits
// the projection into (value, gate) halves.
enum class FeedForwardActivation { kGeluTanh, kLinearSiLU, kSwiGLU };

class FeedForwardProjImpl : public torch::nn::Module {
 public:
  FeedForwardProjImpl(int64_t dim, int64_t inner_dim, FeedForwardActivation act, bool bias,
                      const at::TensorOptions& options);
  // x: [..., dim] -> [..., inner]
  at::Tensor forward(const at::Tensor& x);
  FeedForwardActivation activation() const { return act_; }

  Linear proj{nullptr};

 private:
  FeedForwardActivation act_;
};
TORCH_MODULE(FeedForwardProj);

// diffusers FeedForward(dim, dim_out, mult, activation_fn, inner_dim, bias):
// net = [act-with-proj, Dropout, Linear(inner -> dim_out)].
class FeedForwardImpl : public torch::nn::Module {
 public:
  FeedForwardImpl(int64_t dim, int64_t inner_dim, FeedForwardActivation act,
                  const at::TensorOptions& options, int64_t dim_out = -1, bool bias = true);
  // x: [..., dim] -> [..., dim_out]
  at::Tensor forward(const at::Tensor& x);
  // The same from an activation quantized for net.0's Linear (quantize_for): an fp8_dynamic
  // net.0.proj with the GELU-tanh activation reads its e4m3 rows (the producer quantized them,
  // no pass here); otherwise forward(x.full).
  at::Tensor forward_quantized(const QuantizedActivation& x);
  // residual + gate[:, None] * forward_quantized(x) (a DiT block's gated MLP branch), residual
  // [B, S, dim_out], gate [B, dim_out]: gated_residual, or for an fp8_dynamic net.2 on e4m3
  // rows the residual added in the GEMM's epilogue where it serves (linear_gated_residual).
  at::Tensor forward_gated_residual(const QuantizedActivation& x, const at::Tensor& residual,
                                    const at::Tensor& gate);

  FeedForwardProj act_proj{nullptr};  // key "net.0"
  Linear out{nullptr};                // key "net.2"

 private:
  // net.2(gelu_tanh(h)) for h [..., inner] before the GELU: for an fp8_dynamic net.2, the GELU and
  // the row quantization in one pass where the kernel serves (no bfloat16 GELU output written).
  // With a residual (defined) and gate, their gated residual with that.
  at::Tensor gelu_then_out(const at::Tensor& h, const at::Tensor& residual = {},
                           const at::Tensor& gate = {});
};
TORCH_MODULE(FeedForward);

// x + gate[:, None] * y: x, y [B, S, D], gate [B, D] -> [B, S, D]. The fused kernel where it
// serves (optimizations/kernels/fused.h), else the ATen chain, which defines the numbers.
at::Tensor gated_residual(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y);

// gated_residual(x, gate, linear->forward_quantized(h)), with the residual added in the FP8
// GEMM's epilogue where LinearImpl::forward_gated_residual serves (the same numbers, the
// product never written).
at::Tensor linear_gated_residual(Linear& linear, const QuantizedActivation& h, const at::Tensor& x,
                                 const at::Tensor& gate);
// The same for a bfloat16 input h [B, S, in], quantized for the Linear as its forward would.
at::Tensor linear_gated_residual(Linear& linear, const at::Tensor& h, const at::Tensor& x,
                                 const at::Tensor& gate);

// An nn.ModuleList([Linear, Dropout]) output projection: only index 0 owns keys ("to_out.0").
class OutProjectionImpl : public torch::nn::Module {
 public:
  OutProjectionImpl(int64_t in, int64_t out, bool bias, const at::TensorOptions& options);
  // x: [..., in] -> [..., out]
  at::Tensor forward(const at::Tensor& x) { return linear(x); }

  Linear linear{nullptr};  // key "0"
};
TORCH_MODULE(OutProjection);

// nn.Conv3d(in, out, kernel=stride=patch) as a patchifier: key "weight" [out, in, pt, ph, pw]
// and "bias" [out]. Output tokens in (t, h, w) order, w fastest.
class PatchConv3dImpl : public torch::nn::Module {
 public:
  PatchConv3dImpl(int64_t in_channels, int64_t out_channels, std::array<int64_t, 3> patch,
                  const at::TensorOptions& options);
  // x: [B, C, F, H, W] -> [B, F/pt * H/ph * W/pw, out]
  at::Tensor forward(const at::Tensor& x);

  torch::Tensor weight, bias;

 private:
  std::array<int64_t, 3> patch_;
};
TORCH_MODULE(PatchConv3d);

// A holder module with one child `proj` (diffusers' PatchEmbed classes: "x_embedder.proj.*").
class PatchEmbed3dImpl : public torch::nn::Module {
 public:
  PatchEmbed3dImpl(int64_t in_channels, int64_t embed_dim, std::array<int64_t, 3> patch,
                   const at::TensorOptions& options);
  // x: [B, C, F, H, W] -> [B, N, D]
  at::Tensor forward(const at::Tensor& x) { return proj(x); }

  PatchConv3d proj{nullptr};
};
TORCH_MODULE(PatchEmbed3d);

// Inverse of the patchifier for projections whose features are ordered (C, pt, ph, pw), C
// slowest (HunyuanVideo, the diffusers Conv3d convention).
// x: [B, F'*H'*W', C*pt*ph*pw] -> [B, C, F'*pt, H'*ph, W'*pw]
at::Tensor unpatchify_channels_first(const at::Tensor& x, std::array<int64_t, 3> grid,
                                     std::array<int64_t, 3> patch, int64_t channels);

}  // namespace ditbench
