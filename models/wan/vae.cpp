#include "models/wan/vae.h"

#include <nlohmann/json.hpp>

#include <cmath>

#include "models/common/error.h"
#include "models/common/json_config.h"
#include "models/common/layers.h"

namespace ditbench {
namespace {

constexpr int64_t kCacheFrames = 2;  // diffusers' CACHE_T

// A child module holding the `weight` and `bias` of an nn.Conv2d, for keys such as
// "to_qkv.weight" and "resample.1.weight".
std::pair<at::Tensor, at::Tensor> register_conv2d(torch::nn::Module& holder, int64_t in,
                                                  int64_t out, int64_t kernel,
                                                  const at::TensorOptions& options) {
  auto w =
      holder.register_parameter("weight", at::empty({out, in, kernel, kernel}, options), false);
  auto b = holder.register_parameter("bias", at::empty({out}, options), false);
  return {w, b};
}

// The frames a cached conv keeps for the next chunk: the last two of x, with the previous
// chunk's last frame in front when x holds only one.
at::Tensor frames_to_cache(const at::Tensor& x, const at::Tensor& previous) {
  at::Tensor kept =
      x.narrow(2, std::max<int64_t>(0, x.size(2) - kCacheFrames), std::min(kCacheFrames, x.size(2)))
          .clone();
  if (kept.size(2) < kCacheFrames && previous.defined()) {
    kept = at::cat({previous.narrow(2, previous.size(2) - 1, 1), kept}, 2);
  }
  return kept;
}

}  // namespace

// ---- config ----

WanVAEConfig WanVAEConfig::from_json(const nlohmann::json& j, const std::string& source) {
  require_config_object(j, source);
  WanVAEConfig c;
  read_config_int(j, source, "base_dim", c.base_dim);
  read_config_nullable_int(j, source, "decoder_base_dim", c.decoder_base_dim);
  read_config_int(j, source, "z_dim", c.z_dim);
  read_config_list(j, source, "dim_mult", c.dim_mult);
  read_config_int(j, source, "num_res_blocks", c.num_res_blocks);
  read_config_list(j, source, "temperal_downsample", c.temperal_downsample);
  read_config_list(j, source, "latents_mean", c.latents_mean);
  read_config_list(j, source, "latents_std", c.latents_std);
  read_config_ints(j, source,
                   {{"out_channels", &c.out_channels},
                    {"scale_factor_temporal", &c.scale_factor_temporal},
                    {"scale_factor_spatial", &c.scale_factor_spatial}});
  read_config_bool(j, source, "is_residual", c.is_residual);
  read_config_nullable_int(j, source, "patch_size", c.patch_size);
  c.validate(source);
  return c;
}

WanVAEConfig WanVAEConfig::from_file(const std::string& path) {
  return config_from_file<WanVAEConfig>(path);
}

void WanVAEConfig::validate(const std::string& source) const {
  require_positive(source, {{"base_dim", decoder_dim()}, {"z_dim", z_dim}});
  require_non_negative(source, "num_res_blocks", num_res_blocks);
  require_positive(source, "out_channels", out_channels);
  if (dim_mult.size() < 2) throw InputError(source + ": key 'dim_mult' needs at least 2 values");
  for (int64_t m : dim_mult) require_positive(source, "dim_mult", m);
  if (temperal_downsample.size() != dim_mult.size() - 1) {
    throw InputError(source + ": key 'temperal_downsample' must have len(dim_mult) - 1 = " +
                     std::to_string(dim_mult.size() - 1) + " values");
  }
  int64_t temporal = 1;
  for (bool t : temperal_downsample) temporal *= t ? 2 : 1;
  const int64_t spatial = int64_t{1} << (dim_mult.size() - 1);
  if (temporal != scale_factor_temporal || spatial != scale_factor_spatial) {
    throw InputError(source + ": scale_factor_temporal/spatial (" +
                     std::to_string(scale_factor_temporal) + ", " +
                     std::to_string(scale_factor_spatial) + ") disagree with the blocks (" +
                     std::to_string(temporal) + ", " + std::to_string(spatial) + ")");
  }
  if (static_cast<int64_t>(latents_mean.size()) != z_dim ||
      static_cast<int64_t>(latents_std.size()) != z_dim) {
    throw InputError(source + ": keys 'latents_mean' and 'latents_std' need z_dim = " +
                     std::to_string(z_dim) + " values each");
  }
  for (double s : latents_std) {
    if (!(s > 0)) throw InputError(source + ": key 'latents_std' values must be positive");
  }
  if (is_residual || patch_size) {
    throw Unsupported(source + ": is_residual / patch_size (the Wan 2.2 VAE) is not implemented");
  }
}

// ---- layers ----

WanFeatureCache::Slot& WanFeatureCache::next() {
  if (index >= slots.size()) slots.resize(index + 1);
  return slots[index++];
}

WanCausalConv3dImpl::WanCausalConv3dImpl(int64_t in_channels, int64_t out_channels, Int3 kernel,
                                         Int3 padding, const at::TensorOptions& options,
                                         Int3 stride)
    : Conv3dImpl(in_channels, out_channels, kernel, stride, options), padding_(padding) {}

at::Tensor WanCausalConv3dImpl::forward(const at::Tensor& x, const at::Tensor& cache) {
  // (w, w, h, h, 2 * t, 0): time padded in front only; cached frames take the padding's place.
  int64_t front = 2 * padding_[0];
  at::Tensor input = x;
  if (cache.defined() && front > 0) {
    input = at::cat({cache.to(x.device()), x}, 2);
    front -= cache.size(2);
  }
  input =
      at::constant_pad_nd(input, {padding_[2], padding_[2], padding_[1], padding_[1], front, 0});
  return Conv3dImpl::forward(input);
}

at::Tensor WanCausalConv3dImpl::forward_cached(const at::Tensor& x, WanFeatureCache& cache) {
  auto& slot = cache.next();
  at::Tensor kept = frames_to_cache(x, slot.frames);
  at::Tensor out = forward(x, slot.frames);
  slot.frames = kept;
  return out;
}

WanRMSNormImpl::WanRMSNormImpl(int64_t dim, bool images, const at::TensorOptions& options) {
  std::vector<int64_t> shape =
      images ? std::vector<int64_t>{dim, 1, 1} : std::vector<int64_t>{dim, 1, 1, 1};
  gamma = register_parameter("gamma", at::empty(shape, options), false);
}

at::Tensor WanRMSNormImpl::forward(const at::Tensor& x) {
  // F.normalize(x, dim=1): x / max(||x||_2, 1e-12) over channels, in float32 for half inputs.
  const bool upcast = x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16;
  const at::Tensor xf = upcast ? x.to(at::kFloat) : x;
  const at::Tensor norm = xf.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12).expand_as(xf);
  const double scale = std::sqrt(static_cast<double>(x.size(1)));
  return (xf / norm).to(x.scalar_type()) * scale * gamma;
}

WanResidualBlockImpl::WanResidualBlockImpl(int64_t in_dim, int64_t out_dim,
                                           const at::TensorOptions& options) {
  norm1 = register_module("norm1", WanRMSNorm(in_dim, false, options));
  conv1 = register_module("conv1",
                          WanCausalConv3d(in_dim, out_dim, Int3{3, 3, 3}, Int3{1, 1, 1}, options));
  norm2 = register_module("norm2", WanRMSNorm(out_dim, false, options));
  conv2 = register_module("conv2",
                          WanCausalConv3d(out_dim, out_dim, Int3{3, 3, 3}, Int3{1, 1, 1}, options));
  if (in_dim != out_dim) {
    conv_shortcut = register_module(
        "conv_shortcut", WanCausalConv3d(in_dim, out_dim, Int3{1, 1, 1}, Int3{0, 0, 0}, options));
  }
}

at::Tensor WanResidualBlockImpl::forward(const at::Tensor& x, WanFeatureCache& cache) {
  const at::Tensor shortcut = conv_shortcut.is_empty() ? x : conv_shortcut(x);
  at::Tensor h = conv1->forward_cached(at::silu(norm1(x)), cache);
  h = conv2->forward_cached(at::silu(norm2(h)), cache);  // dropout: identity at inference
  return h + shortcut;
}

WanAttentionBlockImpl::WanAttentionBlockImpl(int64_t dim, const at::TensorOptions& options) {
  norm = register_module("norm", WanRMSNorm(dim, true, options));
  auto qkv = register_module("to_qkv", std::make_shared<torch::nn::Module>());
  std::tie(to_qkv_weight, to_qkv_bias) = register_conv2d(*qkv, dim, 3 * dim, 1, options);
  auto proj = register_module("proj", std::make_shared<torch::nn::Module>());
  std::tie(proj_weight, proj_bias) = register_conv2d(*proj, dim, dim, 1, options);
}

at::Tensor WanAttentionBlockImpl::forward(const at::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), t = x.size(2), h = x.size(3), w = x.size(4);
  // Frames as images: [B*T, C, H, W]
  at::Tensor y = norm(x.permute({0, 2, 1, 3, 4}).reshape({b * t, c, h, w}));
  at::Tensor qkv = at::conv2d(y, to_qkv_weight, to_qkv_bias);  // [BT, 3C, H, W]
  // One head over the frame's pixels: [BT, 1, HW, 3C] -> q, k, v [BT, 1, HW, C]
  auto parts = qkv.reshape({b * t, 1, 3 * c, -1}).permute({0, 1, 3, 2}).contiguous().chunk(3, -1);
  at::Tensor out = at::scaled_dot_product_attention(parts[0], parts[1], parts[2]);
  out = out.squeeze(1).permute({0, 2, 1}).reshape({b * t, c, h, w});
  out = at::conv2d(out, proj_weight, proj_bias);
  return out.view({b, t, c, h, w}).permute({0, 2, 1, 3, 4}) + x;
}

WanResampleImpl::WanResampleImpl(int64_t dim, bool temporal, const at::TensorOptions& options) {
  auto resample = register_module("resample", std::make_shared<torch::nn::Module>());
  auto conv = resample->register_module("1", std::make_shared<torch::nn::Module>());
  std::tie(conv_weight, conv_bias) = register_conv2d(*conv, dim, dim / 2, 3, options);
  if (temporal) {
    time_conv = register_module(
        "time_conv", WanCausalConv3d(dim, 2 * dim, Int3{3, 1, 1}, Int3{1, 0, 0}, options));
  }
}

at::Tensor WanResampleImpl::forward(const at::Tensor& input, WanFeatureCache& cache) {
  at::Tensor x = input;
  const int64_t b = x.size(0), c = x.size(1), h = x.size(3), w = x.size(4);
  if (!time_conv.is_empty()) {
    auto& slot = cache.next();
    if (!slot.frames.defined() && !slot.repeat) {
      slot.repeat = true;  // the first chunk keeps its single frame
    } else {
      at::Tensor kept = frames_to_cache(x, slot.repeat ? at::Tensor() : slot.frames);
      if (kept.size(2) < kCacheFrames && slot.repeat)
        kept = at::cat({at::zeros_like(kept), kept}, 2);
      // After the first chunk the conv pads with zeros; later it continues from the cache.
      at::Tensor doubled = time_conv(x, slot.repeat ? at::Tensor() : slot.frames);
      slot.frames = kept;
      slot.repeat = false;
      const int64_t t = x.size(2);
      // [B, 2C, T, H, W] -> [B, 2, C, T, H, W] -> frames interleaved: [B, C, 2T, H, W]
      doubled = doubled.reshape({b, 2, c, t, h, w});
      x = at::stack({doubled.select(1, 0), doubled.select(1, 1)}, 3).reshape({b, c, 2 * t, h, w});
    }
  }
  const int64_t t = x.size(2);
  at::Tensor frames = x.permute({0, 2, 1, 3, 4}).reshape({b * t, c, h, w});
  // nearest-exact 2x in float32, back to the input dtype, then the 3x3 conv
  frames = at::_upsample_nearest_exact2d(frames.to(at::kFloat), {2 * h, 2 * w}, 2.0, 2.0)
               .to(x.scalar_type());
  frames = at::conv2d(frames, conv_weight, conv_bias, 1, 1);
  return frames.view({b, t, frames.size(1), 2 * h, 2 * w}).permute({0, 2, 1, 3, 4});
}

WanDecoder3dImpl::WanDecoder3dImpl(const WanVAEConfig& config, const at::TensorOptions& options) {
  const int64_t base = config.decoder_dim();
  const auto& mult = config.dim_mult;
  // dims = base * [mult[-1], mult[-1], ..., mult[0]]
  std::vector<int64_t> dims = {base * mult.back()};
  for (auto it = mult.rbegin(); it != mult.rend(); ++it) dims.push_back(base * *it);
  conv_in = register_module(
      "conv_in", WanCausalConv3d(config.z_dim, dims[0], Int3{3, 3, 3}, Int3{1, 1, 1}, options));
  auto mid = register_module("mid_block", std::make_shared<torch::nn::Module>());
  mid_resnets = register_module_list<WanResidualBlock>(
      *mid, "resnets", 2, [&] { return WanResidualBlock(dims[0], dims[0], options); });
  mid_attention = register_module_list<WanAttentionBlock>(*mid, "attentions", 1, [&] {
                    return WanAttentionBlock(dims[0], options);
                  }).front();
  auto ups = register_module("up_blocks", std::make_shared<torch::nn::Module>());
  const size_t num_blocks = mult.size();
  for (size_t i = 0; i < num_blocks; ++i) {
    auto block = ups->register_module(std::to_string(i), std::make_shared<torch::nn::Module>());
    // Wan 2.1: blocks after the first take half the channels (the upsampler halves them).
    int64_t in_dim = i > 0 ? dims[i] / 2 : dims[i];
    const int64_t out_dim = dims[i + 1];
    up_resnets.push_back(
        register_module_list<WanResidualBlock>(*block, "resnets", config.num_res_blocks + 1, [&] {
          auto r = WanResidualBlock(in_dim, out_dim, options);
          in_dim = out_dim;
          return r;
        }));
    WanResample up{nullptr};
    if (i + 1 != num_blocks) {
      // temperal_upsample = temperal_downsample reversed
      const bool temporal = config.temperal_downsample[num_blocks - 2 - i];
      up = register_module_list<WanResample>(*block, "upsamplers", 1, [&] {
             return WanResample(out_dim, temporal, options);
           }).front();
    }
    upsamplers.push_back(up);
  }
  norm_out = register_module("norm_out", WanRMSNorm(dims.back(), false, options));
  conv_out = register_module("conv_out", WanCausalConv3d(dims.back(), config.out_channels,
                                                         Int3{3, 3, 3}, Int3{1, 1, 1}, options));
}

at::Tensor WanDecoder3dImpl::forward(const at::Tensor& z, WanFeatureCache& cache) {
  at::Tensor x = conv_in->forward_cached(z, cache);
  x = mid_resnets[0](x, cache);
  x = mid_attention(x);
  x = mid_resnets[1](x, cache);
  for (size_t i = 0; i < up_resnets.size(); ++i) {
    for (auto& resnet : up_resnets[i]) x = resnet(x, cache);
    if (!upsamplers[i].is_empty()) x = upsamplers[i](x, cache);
  }
  return conv_out->forward_cached(at::silu(norm_out(x)), cache);
}

// ---- the decoder model ----

AutoencoderKLWanDecoderImpl::AutoencoderKLWanDecoderImpl(const WanVAEConfig& config,
                                                         const at::TensorOptions& options)
    : config_(config) {
  config_.validate("WanVAEConfig");
  post_quant_conv = register_module(
      "post_quant_conv",
      WanCausalConv3d(config_.z_dim, config_.z_dim, Int3{1, 1, 1}, Int3{0, 0, 0}, options));
  decoder = register_module("decoder", WanDecoder3d(config_, options));
}

void AutoencoderKLWanDecoderImpl::set_tiling(const SpatialTiles& tiles) {
  const int64_t s = config_.scale_factor_spatial;
  for (int64_t v : {tiles.min_height, tiles.min_width, tiles.stride_height, tiles.stride_width}) {
    if (v <= 0 || v % s) {
      throw InputError("VAE tiling: tile sizes and strides must be positive multiples of " +
                       std::to_string(s) + ", got " + std::to_string(v));
    }
  }
  if (tiles.stride_height > tiles.min_height || tiles.stride_width > tiles.min_width) {
    throw InputError("VAE tiling: a stride exceeds its tile");
  }
  tiles_ = tiles;
  tiling_ = true;
}

at::Tensor AutoencoderKLWanDecoderImpl::decode_frames(const at::Tensor& z) {
  WanFeatureCache cache;
  const at::Tensor x = post_quant_conv(z);
  std::vector<at::Tensor> chunks;
  for (int64_t i = 0; i < x.size(2); ++i) {
    cache.index = 0;
    chunks.push_back(decoder(x.narrow(2, i, 1), cache));  // [B, 3, 1 or 4, h, w]
  }
  return at::cat(chunks, 2);
}

at::Tensor AutoencoderKLWanDecoderImpl::decode(const at::Tensor& latents) {
  const auto& w = post_quant_conv->weight;
  if (latents.dim() != 5 || latents.size(1) != config_.z_dim) {
    throw InputError("latents: expected [B, " + std::to_string(config_.z_dim) + ", F, H, W], got " +
                     c10::str(latents.sizes()));
  }
  const at::Tensor z = latents.to(w.device(), w.scalar_type());
  at::Tensor out;
  if (tiling_ && needs_spatial_tiles(z, tiles_, config_.scale_factor_spatial)) {
    out = spatial_tiled_decode(z, tiles_, config_.scale_factor_spatial,
                               [this](const at::Tensor& tile) { return decode_frames(tile); });
  } else {
    out = decode_frames(z);
  }
  return out.clamp(-1.0, 1.0);
}

}  // namespace ditbench
