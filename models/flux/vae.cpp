#include "models/flux/vae.h"

#include <algorithm>
#include <filesystem>

#include "models/checkpoint/checkpoint.h"
#include "models/common/error.h"
#include "models/common/json_config.h"
#include "models/common/layers.h"

namespace ditbench {
namespace {

constexpr double kEps = 1e-6;

}  // namespace

// ---- config ----

AutoencoderKLConfig AutoencoderKLConfig::from_json(const nlohmann::json& j,
                                                   const std::string& source) {
  require_config_object(j, source);
  AutoencoderKLConfig c;
  read_config_ints(j, source,
                   {{"in_channels", &c.in_channels},
                    {"out_channels", &c.out_channels},
                    {"latent_channels", &c.latent_channels}});
  read_config_list(j, source, "block_out_channels", c.block_out_channels);
  read_config_ints(j, source,
                   {{"layers_per_block", &c.layers_per_block},
                    {"norm_num_groups", &c.norm_num_groups},
                    {"sample_size", &c.sample_size}});
  read_config_double(j, source, "scaling_factor", c.scaling_factor);
  c.shift_factor = 0.0;  // null or absent: no shift (diffusers' class default)
  read_config_nullable_double(j, source, "shift_factor", c.shift_factor);
  c.use_post_quant_conv = true;  // diffusers' class default
  read_config_bool(j, source, "use_post_quant_conv", c.use_post_quant_conv);
  read_config_bool(j, source, "mid_block_add_attention", c.mid_block_add_attention);
  std::string act_fn = "silu";
  read_config_string(j, source, "act_fn", act_fn);
  if (act_fn != "silu") {
    throw Unsupported(source + ": act_fn '" + act_fn + "' is not implemented (only 'silu')");
  }
  if (j.contains("up_block_types")) {
    const auto& types = j.at("up_block_types");
    if (!types.is_array()) bad_config_key(source, "up_block_types", "a list of strings", types);
    for (const auto& t : types) {
      if (!t.is_string()) bad_config_key(source, "up_block_types", "a list of strings", types);
      if (t.get<std::string>() != "UpDecoderBlock2D") {
        throw Unsupported(source + ": up block '" + t.get<std::string>() +
                          "' is not implemented (only UpDecoderBlock2D)");
      }
    }
    if (types.size() != c.block_out_channels.size()) {
      throw InputError(source +
                       ": key 'up_block_types' must have one entry per block_out_channels");
    }
  }
  c.validate(source);
  return c;
}

AutoencoderKLConfig AutoencoderKLConfig::from_file(const std::string& path) {
  return config_from_file<AutoencoderKLConfig>(path);
}

void AutoencoderKLConfig::validate(const std::string& source) const {
  require_positive(source, {{"out_channels", out_channels},
                            {"latent_channels", latent_channels},
                            {"layers_per_block", layers_per_block},
                            {"norm_num_groups", norm_num_groups},
                            {"sample_size", sample_size}});
  if (block_out_channels.empty()) {
    throw InputError(source + ": key 'block_out_channels' must not be empty");
  }
  for (int64_t ch : block_out_channels) {
    if (ch <= 0 || ch % norm_num_groups) {
      throw InputError(source + ": key 'block_out_channels' must be positive multiples of " +
                       "norm_num_groups (" + std::to_string(norm_num_groups) + ")");
    }
  }
  if (!(scaling_factor > 0)) {
    throw InputError(source + ": key 'scaling_factor' must be positive");
  }
}

// ---- layers ----

Conv2dImpl::Conv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel,
                       const at::TensorOptions& options)
    : padding_(kernel / 2) {
  weight = register_parameter(
      "weight", at::empty({out_channels, in_channels, kernel, kernel}, options), false);
  bias = register_parameter("bias", at::empty({out_channels}, options), false);
}

at::Tensor Conv2dImpl::forward(const at::Tensor& x) {
  return at::conv2d(x, weight, bias, 1, padding_);
}

ResnetBlock2DImpl::ResnetBlock2DImpl(int64_t in_channels, int64_t out_channels, int64_t groups,
                                     double eps, const at::TensorOptions& options) {
  norm1 = register_module("norm1", GroupNorm(groups, in_channels, eps, options));
  conv1 = register_module("conv1", Conv2d(in_channels, out_channels, 3, options));
  norm2 = register_module("norm2", GroupNorm(groups, out_channels, eps, options));
  conv2 = register_module("conv2", Conv2d(out_channels, out_channels, 3, options));
  if (in_channels != out_channels) {
    conv_shortcut = register_module("conv_shortcut", Conv2d(in_channels, out_channels, 1, options));
  }
}

at::Tensor ResnetBlock2DImpl::forward(const at::Tensor& x) {
  auto h = conv1(norm1->forward_silu(x));  // [B, C_out, H, W]
  h = conv2(norm2->forward_silu(h));
  return (conv_shortcut ? conv_shortcut(x) : x) + h;  // output_scale_factor 1
}

Upsample2DImpl::Upsample2DImpl(int64_t channels, const at::TensorOptions& options) {
  conv = register_module("conv", Conv2d(channels, channels, 3, options));
}

at::Tensor Upsample2DImpl::forward(const at::Tensor& x) {
  return conv(at::upsample_nearest2d(x, {x.size(2) * 2, x.size(3) * 2}));
}

// ---- decoder ----

AutoencoderKLDecoder2DImpl::AutoencoderKLDecoder2DImpl(const AutoencoderKLConfig& config,
                                                       const at::TensorOptions& options) {
  const auto& ch = config.block_out_channels;
  const int64_t groups = config.norm_num_groups, top = ch.back();
  conv_in = register_module("conv_in", Conv2d(config.latent_channels, top, 3, options));
  auto mid = register_module("mid_block", std::make_shared<torch::nn::Module>());
  const int64_t attentions = config.mid_block_add_attention ? 1 : 0;
  mid_attentions_ = register_module_list<CausalFrameAttention>(*mid, "attentions", attentions, [&] {
    return CausalFrameAttention(top, groups, kEps, options);
  });
  mid_resnets_ = register_module_list<ResnetBlock2D>(
      *mid, "resnets", 2, [&] { return ResnetBlock2D(top, top, groups, kEps, options); });
  auto up = register_module("up_blocks", std::make_shared<torch::nn::Module>());
  int64_t prev = top;
  const auto num_blocks = static_cast<int64_t>(ch.size());
  for (int64_t i = 0; i < num_blocks; ++i) {
    const int64_t out = ch[static_cast<size_t>(num_blocks - 1 - i)];
    auto block = up->register_module(std::to_string(i), std::make_shared<torch::nn::Module>());
    UpBlock b;
    int64_t in = prev;
    b.resnets =
        register_module_list<ResnetBlock2D>(*block, "resnets", config.layers_per_block + 1, [&] {
          auto r = ResnetBlock2D(in, out, groups, kEps, options);
          in = out;
          return r;
        });
    if (i + 1 < num_blocks) {
      b.upsampler = register_module_list<Upsample2D>(*block, "upsamplers", 1, [&] {
                      return Upsample2D(out, options);
                    }).front();
    }
    up_blocks_.push_back(std::move(b));
    prev = out;
  }
  conv_norm_out = register_module("conv_norm_out", GroupNorm(groups, ch.front(), kEps, options));
  conv_out = register_module("conv_out", Conv2d(ch.front(), config.out_channels, 3, options));
}

at::Tensor AutoencoderKLDecoder2DImpl::forward(const at::Tensor& z) {
  auto x = conv_in(z);  // [B, C_top, h, w]
  x = mid_resnets_[0](x);
  // Mid-block self-attention over all h * w positions: one frame of the frame-causal attention.
  if (!mid_attentions_.empty()) x = mid_attentions_[0](x.unsqueeze(2)).squeeze(2);
  x = mid_resnets_[1](x);
  for (auto& block : up_blocks_) {
    for (auto& r : block.resnets) x = r(x);
    if (block.upsampler) x = block.upsampler(x);  // [B, C, 2h, 2w]
  }
  return conv_out(conv_norm_out->forward_silu(x));  // [B, C_out, s h, s w]
}

AutoencoderKLDecoderImpl::AutoencoderKLDecoderImpl(const AutoencoderKLConfig& config,
                                                   const at::TensorOptions& options)
    : config_(config) {
  config_.validate("AutoencoderKLConfig");
  if (config_.use_post_quant_conv) {
    post_quant_conv = register_module(
        "post_quant_conv", Conv2d(config_.latent_channels, config_.latent_channels, 1, options));
  }
  decoder = register_module("decoder", AutoencoderKLDecoder2D(config_, options));
}

at::Tensor AutoencoderKLDecoderImpl::decode_tile(const at::Tensor& z) {
  return decoder(post_quant_conv ? post_quant_conv(z) : z);
}

at::Tensor AutoencoderKLDecoderImpl::decode(const at::Tensor& z_in) {
  if (z_in.dim() != 4 || z_in.size(1) != config_.latent_channels) {
    throw InputError("latents: expected [B, " + std::to_string(config_.latent_channels) +
                     ", h, w], got " + c10::str(z_in.sizes()));
  }
  const auto& w = decoder->conv_in->weight;
  const auto z = z_in.to(w.device(), w.scalar_type());
  const int64_t tile_latent = config_.sample_size / config_.spatial_compression_ratio();
  if (tiling_ && (z.size(3) > tile_latent || z.size(2) > tile_latent)) return tiled_decode(z);
  return decode_tile(z);
}

at::Tensor AutoencoderKLDecoderImpl::tiled_decode(const at::Tensor& z) {
  // Sizes as diffusers computes them: latent tiles of sample_size / s with a quarter overlap;
  // decoded tiles blend their first `blend` rows / columns with the tile above / to the left and
  // keep sample_size - blend of them.
  const int64_t tile_latent = config_.sample_size / config_.spatial_compression_ratio();
  const auto stride = static_cast<int64_t>(static_cast<double>(tile_latent) * (1 - 0.25));
  const auto blend = static_cast<int64_t>(static_cast<double>(config_.sample_size) * 0.25);
  const int64_t keep = config_.sample_size - blend;
  std::vector<std::vector<at::Tensor>> rows;
  for (int64_t i = 0; i < z.size(2); i += stride) {
    std::vector<at::Tensor> row;
    for (int64_t j = 0; j < z.size(3); j += stride) {
      const int64_t th = std::min(tile_latent, z.size(2) - i);
      const int64_t tw = std::min(tile_latent, z.size(3) - j);
      row.push_back(decode_tile(z.narrow(2, i, th).narrow(3, j, tw)));  // [B, C, s th, s tw]
    }
    rows.push_back(std::move(row));
  }
  // Linear cross-fade of b's first rows (dim 2) or columns (dim 3) from a's last ones, in place
  // (later blends read the already blended tiles, as diffusers' loop does).
  auto blend_into = [](const at::Tensor& a, at::Tensor& b, int64_t dim, int64_t extent) {
    extent = std::min({a.size(dim), b.size(dim), extent});
    for (int64_t y = 0; y < extent; ++y) {
      const double t = static_cast<double>(y) / static_cast<double>(extent);
      b.select(dim, y).copy_(a.select(dim, a.size(dim) - extent + y) * (1 - t) +
                             b.select(dim, y) * t);
    }
  };
  std::vector<at::Tensor> result_rows;
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<at::Tensor> result_row;
    for (size_t j = 0; j < rows[i].size(); ++j) {
      at::Tensor& tile = rows[i][j];
      if (i > 0) blend_into(rows[i - 1][j], tile, 2, blend);
      if (j > 0) blend_into(rows[i][j - 1], tile, 3, blend);
      result_row.push_back(tile.narrow(2, 0, std::min(keep, tile.size(2)))
                               .narrow(3, 0, std::min(keep, tile.size(3))));
    }
    result_rows.push_back(at::cat(result_row, 3));
  }
  return at::cat(result_rows, 2);  // [B, C_out, s h, s w]
}

AutoencoderKLDecoder load_autoencoder_kl_decoder(const std::string& vae_dir,
                                                 const at::TensorOptions& options) {
  AutoencoderKLDecoder vae(AutoencoderKLConfig::from_file(vae_dir), options);
  load_module(*vae, Checkpoint::open(vae_dir), {"encoder.", "quant_conv."});
  return vae;
}

}  // namespace ditbench
