#include "models/hunyuan_video/vae_layers.h"

#include <ATen/ATen.h>

#include "optimizations/kernels/group_norm.h"
#include "optimizations/kernels/video_resample.h"

namespace ditbench {

// ---- Conv3d ----

Conv3dImpl::Conv3dImpl(int64_t in_channels, int64_t out_channels, Int3 kernel, Int3 stride,
                       const at::TensorOptions& options)
    : kernel(kernel), stride(stride) {
  weight = register_parameter(
      "weight", at::empty({out_channels, in_channels, kernel[0], kernel[1], kernel[2]}, options),
      false);
  bias = register_parameter("bias", at::empty({out_channels}, options), false);
}

at::Tensor Conv3dImpl::forward(const at::Tensor& x) {
  if (x.is_cuda() && x.is_contiguous(at::MemoryFormat::ChannelsLast3d) && !x.is_contiguous()) {
    // ATen adds a cuDNN convolution's bias in a broadcasting pass of its own; over the channels
    // of a channels-last output the bias kernel does the same addition in 16-byte vectors.
    at::Tensor y = at::conv3d(x, weight, {}, stride);
    if (try_add_channel_bias_(y, bias)) return y;
    return y.add_(bias.view({1, -1, 1, 1, 1}));
  }
  return at::conv3d(x, weight, bias, stride);
}

// ---- GroupNorm ----

GroupNormImpl::GroupNormImpl(int64_t num_groups, int64_t num_channels, double eps,
                             const at::TensorOptions& options)
    : num_groups(num_groups), eps(eps) {
  weight = register_parameter("weight", at::empty({num_channels}, options), false);
  bias = register_parameter("bias", at::empty({num_channels}, options), false);
}

at::Tensor GroupNormImpl::forward(const at::Tensor& x) {
  at::Tensor fused = try_group_norm(x, num_groups, weight, bias, eps, /*silu=*/false);
  return fused.defined() ? fused : at::group_norm(x, num_groups, weight, bias, eps);
}

at::Tensor GroupNormImpl::forward_silu(const at::Tensor& x, const CausalResample& then) {
  at::Tensor fused = try_group_norm(x, num_groups, weight, bias, eps, /*silu=*/true, then);
  if (fused.defined()) return fused;
  // The kernel pads only channels-last x: otherwise normalize, then resample.
  if (!then.identity()) fused = try_group_norm(x, num_groups, weight, bias, eps, /*silu=*/true);
  if (!fused.defined()) {
    fused = at::group_norm(x, num_groups, weight, bias, eps);
    at::silu_(fused);
  }
  return causal_resample(fused, then);
}

// ---- causal_resample ----

at::Tensor causal_resample(const at::Tensor& x, const CausalResample& resample) {
  if (resample.identity()) return x;
  at::Tensor fused = try_causal_resample(x, resample);
  if (fused.defined()) return fused;
  // x: [B, C, F, H, W]
  const auto [st, sh, sw] = resample.scale;
  at::Tensor up = x;
  if (st > 1 || sh > 1 || sw > 1) {
    // Up-sampling every frame by st and dropping the first st - 1 copies gives frame order
    // 0, 1 (st times), 2 (st times), ...: the first frame once, the rest st times each, which is
    // the causal up-sampling, in one kernel and without a concatenation.
    // up: [B, C, 1 + st * (F - 1), sh * H, sw * W]
    up = at::upsample_nearest3d(x, {st * x.size(2), sh * x.size(3), sw * x.size(4)});
    if (st > 1) up = up.narrow(2, st - 1, 1 + st * (x.size(2) - 1));
  }
  if (resample.pad_frames == 0 && resample.pad_height == 0 && resample.pad_width == 0) return up;
  // (w_left, w_right, h_top, h_bottom, t_front, t_back)
  return at::pad(up,
                 {resample.pad_width, resample.pad_width, resample.pad_height, resample.pad_height,
                  resample.pad_frames, 0},
                 "replicate");
}

// ---- CausalConv3d ----

CausalConv3dImpl::CausalConv3dImpl(int64_t in_channels, int64_t out_channels, Int3 kernel,
                                   Int3 stride, const at::TensorOptions& options) {
  conv = register_module("conv", Conv3d(in_channels, out_channels, kernel, stride, options));
}

CausalResample CausalConv3dImpl::padding() const {
  const Int3& k = conv->kernel;
  CausalResample pad;
  pad.pad_frames = k[0] - 1;
  pad.pad_height = k[1] / 2;
  pad.pad_width = k[2] / 2;
  return pad;
}

at::Tensor CausalConv3dImpl::forward(const at::Tensor& x) {
  // One replicate pad of the whole clip (not per frame); none for a 1x1x1 kernel.
  // x_padded: [B, C, F + kt - 1, H + 2 (kh / 2), W + 2 (kw / 2)]
  return conv(causal_resample(x, padding()));
}

// ---- ResnetBlockCausal3D ----

ResnetBlockCausal3DImpl::ResnetBlockCausal3DImpl(int64_t in_channels, int64_t out_channels,
                                                 int64_t groups, double eps,
                                                 const at::TensorOptions& options) {
  norm1 = register_module("norm1", GroupNorm(groups, in_channels, eps, options));
  conv1 = register_module(
      "conv1", CausalConv3d(in_channels, out_channels, Int3{3, 3, 3}, Int3{1, 1, 1}, options));
  norm2 = register_module("norm2", GroupNorm(groups, out_channels, eps, options));
  conv2 = register_module(
      "conv2", CausalConv3d(out_channels, out_channels, Int3{3, 3, 3}, Int3{1, 1, 1}, options));
  if (in_channels != out_channels) {
    conv_shortcut = register_module(
        "conv_shortcut",
        CausalConv3d(in_channels, out_channels, Int3{1, 1, 1}, Int3{1, 1, 1}, options));
  }
}

at::Tensor ResnetBlockCausal3DImpl::forward(const at::Tensor& x) {
  // Each intermediate is reassigned as soon as it is consumed, so at most the input and two
  // activations of the block are alive at once (these are GBs at 720p).
  // h: [B, C_in, F + 2, H + 2, W + 2] (SiLU(norm1(x)) padded for conv1)
  at::Tensor h = norm1->forward_silu(x, conv1->padding());
  h = conv1->forward_padded(h);  // h: [B, C_out, F, H, W]
  h = norm2->forward_silu(h, conv2->padding());
  h = conv2->forward_padded(h);
  if (conv_shortcut) return h.add_(conv_shortcut(x));
  return h.add_(x);
}

// ---- UpsampleCausal3D ----

UpsampleCausal3DImpl::UpsampleCausal3DImpl(int64_t in_channels, int64_t out_channels,
                                           Int3 scale_factor, const at::TensorOptions& options)
    : scale_factor(scale_factor) {
  conv = register_module(
      "conv", CausalConv3d(in_channels, out_channels, Int3{3, 3, 3}, Int3{1, 1, 1}, options));
}

at::Tensor UpsampleCausal3DImpl::forward(const at::Tensor& x) {
  // x: [B, C, F, H, W]; the up-sampling and the conv's padding in one gather:
  // up: [B, C, 1 + st * (F - 1) + kt - 1, sh * H + 2 (kh / 2), sw * W + 2 (kw / 2)]
  CausalResample resample = conv->padding();
  resample.scale = scale_factor;
  return conv->forward_padded(causal_resample(x, resample));
}

// ---- CausalFrameAttention ----

CausalFrameAttentionImpl::CausalFrameAttentionImpl(int64_t channels, int64_t groups, double eps,
                                                   const at::TensorOptions& options) {
  group_norm = register_module("group_norm", GroupNorm(groups, channels, eps, options));
  to_q = register_module("to_q", Linear(channels, channels, true, options));
  to_k = register_module("to_k", Linear(channels, channels, true, options));
  to_v = register_module("to_v", Linear(channels, channels, true, options));
  out_proj = Linear(channels, channels, true, options);
  to_out->push_back(out_proj);  // key `to_out.0` (`to_out.1` is a parameter-free dropout)
  to_out = register_module("to_out", to_out);
}

at::Tensor CausalFrameAttentionImpl::forward(const at::Tensor& x) {
  // x: [B, C, F, H, W]
  const int64_t batch = x.size(0), channels = x.size(1), frames = x.size(2);
  const int64_t frame_tokens = x.size(3) * x.size(4);
  // GroupNorm over [B, C, F, H, W] equals GroupNorm over the flattened [B, C, S].
  // tokens: [B, S, C] with S = F * H * W, position order (f, h, w)
  at::Tensor tokens = group_norm(x).flatten(2).transpose(1, 2);
  // q, k, v: [B, 1, S, C] (one head of width C)
  at::Tensor q = to_q(tokens).unsqueeze(1);
  at::Tensor k = to_k(tokens).unsqueeze(1);
  at::Tensor v = to_v(tokens).unsqueeze(1);
  tokens.reset();

  // The mask is block lower-triangular over frames, so frame f's queries attend to exactly the
  // key prefix of frames 0..f. Attending to that prefix without a mask is the same computation
  // and never materialises an S x S mask (S = 475,200 for a 720p clip decoded untiled); each call
  // may also use a fused SDPA kernel, which an explicit mask can rule out.
  at::Tensor attended = at::empty_like(q);  // [B, 1, S, C]
  for (int64_t f = 0; f < frames; ++f) {
    const int64_t visible = (f + 1) * frame_tokens;
    attended.narrow(2, f * frame_tokens, frame_tokens)
        .copy_(at::scaled_dot_product_attention(q.narrow(2, f * frame_tokens, frame_tokens),
                                                k.narrow(2, 0, visible), v.narrow(2, 0, visible)));
  }
  q.reset();
  k.reset();
  v.reset();

  // out: [B, S, C] -> [B, C, F, H, W], a channels-last view, in x's memory format
  at::Tensor out = out_proj(attended.squeeze(1));
  out = out.transpose(1, 2)
            .reshape({batch, channels, frames, x.size(3), x.size(4)})
            .contiguous(x.suggest_memory_format());
  return out.add_(x);
}

// ---- MidBlock3D ----

MidBlock3DImpl::MidBlock3DImpl(int64_t channels, int64_t groups, double eps, bool add_attention,
                               const at::TensorOptions& options, int64_t num_layers) {
  resnets->push_back(ResnetBlockCausal3D(channels, channels, groups, eps, options));
  for (int64_t i = 0; i < num_layers; ++i) {
    if (add_attention) attentions->push_back(CausalFrameAttention(channels, groups, eps, options));
    resnets->push_back(ResnetBlockCausal3D(channels, channels, groups, eps, options));
  }
  resnets = register_module("resnets", resnets);
  attentions = register_module("attentions", attentions);
}

at::Tensor MidBlock3DImpl::forward(const at::Tensor& x) {
  at::Tensor h = resnets[0]->as<ResnetBlockCausal3DImpl>()->forward(x);
  for (size_t i = 1; i < resnets->size(); ++i) {
    if (!attentions->is_empty()) h = attentions[i - 1]->as<CausalFrameAttentionImpl>()->forward(h);
    h = resnets[i]->as<ResnetBlockCausal3DImpl>()->forward(h);
  }
  return h;
}

// ---- UpBlock3D ----

UpBlock3DImpl::UpBlock3DImpl(int64_t in_channels, int64_t out_channels, int64_t num_layers,
                             int64_t groups, double eps, std::optional<Int3> upsample_scale_factor,
                             const at::TensorOptions& options) {
  for (int64_t i = 0; i < num_layers; ++i) {
    resnets->push_back(ResnetBlockCausal3D(i == 0 ? in_channels : out_channels, out_channels,
                                           groups, eps, options));
  }
  resnets = register_module("resnets", resnets);
  if (upsample_scale_factor) {
    upsamplers->push_back(
        UpsampleCausal3D(out_channels, out_channels, *upsample_scale_factor, options));
    upsamplers = register_module("upsamplers", upsamplers);
  }
}

at::Tensor UpBlock3DImpl::forward(const at::Tensor& x) {
  at::Tensor h = x;
  for (const auto& resnet : *resnets) h = resnet->as<ResnetBlockCausal3DImpl>()->forward(h);
  for (const auto& upsampler : *upsamplers) h = upsampler->as<UpsampleCausal3DImpl>()->forward(h);
  return h;
}

}  // namespace ditbench
