#include "models/hunyuan_video/vae.h"

#include <cstdlib>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "models/checkpoint/checkpoint.h"
#include "models/common/error.h"
#include "models/common/vae_tiling.h"

namespace ditbench {

namespace {

constexpr double kVaeNormEps = 1e-6;  // every GroupNorm of the HunyuanVideo VAE

std::string shape_string(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

// log2 of a power of two, -1 otherwise.
int64_t exact_log2(int64_t v) {
  int64_t log = 0;
  if (v <= 0) return -1;
  while (v % 2 == 0) v /= 2, ++log;
  return v == 1 ? log : -1;
}

// Per up block, the (time, height, width) factor of its upsampler, or nullopt without one.
// This is diffusers' HunyuanVideoDecoder3D placement for temporal ratio 4: spatial ×2 in the
// first log2(spatial) blocks, temporal ×2 in the two blocks before the last.
std::vector<std::optional<Int3>> upsample_factors(const HunyuanVideoVAEConfig& c) {
  const int64_t blocks = static_cast<int64_t>(c.block_out_channels.size());
  const int64_t spatial_layers = exact_log2(c.spatial_compression_ratio);
  const int64_t time_layers = exact_log2(c.temporal_compression_ratio);
  std::vector<std::optional<Int3>> factors;
  for (int64_t i = 0; i < blocks; ++i) {
    const bool is_final = i == blocks - 1;
    const bool spatial = i < spatial_layers;
    const bool time = i >= blocks - 1 - time_layers && !is_final;
    if (spatial || time) {
      factors.push_back(Int3{time ? 2 : 1, spatial ? 2 : 1, spatial ? 2 : 1});
    } else {
      factors.push_back(std::nullopt);
    }
  }
  return factors;
}

}  // namespace

// ---- config ----

HunyuanVideoVAEConfig HunyuanVideoVAEConfig::from_json(const nlohmann::json& json,
                                                       const std::string& source) {
  if (!json.is_object()) throw InputError(source + ": expected a JSON object (a vae/config.json)");
  HunyuanVideoVAEConfig c;
  auto bad = [&](const std::string& path, const std::string& what) {
    return InputError(source + ": /" + path + " " + what);
  };
  auto read_int = [&](const char* key, int64_t& out) {
    if (!json.contains(key)) return;
    const auto& v = json.at(key);
    if (!v.is_number_integer() || v.get<int64_t>() <= 0)
      throw bad(key, "must be a positive integer");
    out = v.get<int64_t>();
  };
  if (json.contains("_class_name")) {
    const auto& v = json.at("_class_name");
    if (!v.is_string() || v.get<std::string>() != "AutoencoderKLHunyuanVideo") {
      throw bad("_class_name", "is " + v.dump() + ", expected \"AutoencoderKLHunyuanVideo\"");
    }
  }
  read_int("in_channels", c.in_channels);
  read_int("out_channels", c.out_channels);
  read_int("latent_channels", c.latent_channels);
  read_int("layers_per_block", c.layers_per_block);
  read_int("norm_num_groups", c.norm_num_groups);
  read_int("spatial_compression_ratio", c.spatial_compression_ratio);
  read_int("temporal_compression_ratio", c.temporal_compression_ratio);
  if (json.contains("block_out_channels")) {
    const auto& v = json.at("block_out_channels");
    if (!v.is_array() || v.empty()) throw bad("block_out_channels", "must be a non-empty array");
    c.block_out_channels.clear();
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_number_integer() || v[i].get<int64_t>() <= 0) {
        throw bad("block_out_channels/" + std::to_string(i), "must be a positive integer");
      }
      c.block_out_channels.push_back(v[i].get<int64_t>());
    }
  }
  if (json.contains("up_block_types")) {
    const auto& v = json.at("up_block_types");
    if (!v.is_array()) throw bad("up_block_types", "must be an array");
    if (v.size() != c.block_out_channels.size()) {
      throw bad("up_block_types", "has " + std::to_string(v.size()) +
                                      " entries but block_out_channels has " +
                                      std::to_string(c.block_out_channels.size()));
    }
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string() || v[i].get<std::string>() != "HunyuanVideoUpBlock3D") {
        throw bad("up_block_types/" + std::to_string(i),
                  "is " + v[i].dump() + ", expected \"HunyuanVideoUpBlock3D\"");
      }
    }
  }
  if (json.contains("act_fn")) {
    const auto& v = json.at("act_fn");
    if (!v.is_string()) throw bad("act_fn", "must be a string");
    c.act_fn = v.get<std::string>();
  }
  if (json.contains("scaling_factor")) {
    const auto& v = json.at("scaling_factor");
    if (!v.is_number() || v.get<double>() <= 0)
      throw bad("scaling_factor", "must be a positive number");
    c.scaling_factor = v.get<double>();
  }
  if (json.contains("mid_block_add_attention")) {
    const auto& v = json.at("mid_block_add_attention");
    if (!v.is_boolean()) throw bad("mid_block_add_attention", "must be true or false");
    c.mid_block_add_attention = v.get<bool>();
  }
  c.validate(source);
  return c;
}

void HunyuanVideoVAEConfig::validate(const std::string& source) const {
  auto bad = [&](const std::string& what) { return InputError(source + ": " + what); };
  if (act_fn != "silu" && act_fn != "swish") {
    throw bad("/act_fn is \"" + act_fn + "\"; the HunyuanVideo VAE decoder supports \"silu\"");
  }
  if (block_out_channels.empty()) throw bad("/block_out_channels must not be empty");
  if (latent_channels <= 0 || out_channels <= 0 || layers_per_block <= 0 || norm_num_groups <= 0) {
    throw bad(
        "latent_channels, out_channels, layers_per_block and norm_num_groups must be positive");
  }
  for (size_t i = 0; i < block_out_channels.size(); ++i) {
    if (block_out_channels[i] <= 0 || block_out_channels[i] % norm_num_groups != 0) {
      throw bad("/block_out_channels/" + std::to_string(i) + " (" +
                std::to_string(block_out_channels[i]) + ") is not a positive multiple of " +
                "/norm_num_groups (" + std::to_string(norm_num_groups) + ")");
    }
  }
  // diffusers' decoder only implements temporal ratio 4.
  if (temporal_compression_ratio != 4) {
    throw bad("/temporal_compression_ratio is " + std::to_string(temporal_compression_ratio) +
              "; the HunyuanVideo VAE decoder supports only 4");
  }
  if (exact_log2(spatial_compression_ratio) < 0) {
    throw bad("/spatial_compression_ratio " + std::to_string(spatial_compression_ratio) +
              " is not a power of two");
  }
  // The placement of up-samplers must reach the stated ratios, or tiling would mis-size tiles.
  int64_t spatial = 1, temporal = 1;
  for (const auto& f : upsample_factors(*this)) {
    if (f) temporal *= (*f)[0], spatial *= (*f)[1];
  }
  if (spatial != spatial_compression_ratio || temporal != temporal_compression_ratio) {
    throw bad(std::to_string(block_out_channels.size()) + " up blocks give spatial x" +
              std::to_string(spatial) + " and temporal x" + std::to_string(temporal) +
              ", not the configured x" + std::to_string(spatial_compression_ratio) + " and x" +
              std::to_string(temporal_compression_ratio));
  }
}

// ---- decoder ----

HunyuanVideoDecoder3DImpl::HunyuanVideoDecoder3DImpl(const HunyuanVideoVAEConfig& c,
                                                     const at::TensorOptions& options) {
  const auto& channels = c.block_out_channels;
  const int64_t groups = c.norm_num_groups;
  conv_in = register_module("conv_in", CausalConv3d(c.latent_channels, channels.back(),
                                                    Int3{3, 3, 3}, Int3{1, 1, 1}, options));
  mid_block = register_module("mid_block", MidBlock3D(channels.back(), groups, kVaeNormEps,
                                                      c.mid_block_add_attention, options));
  // Up blocks run from the widest channels to the narrowest.
  const auto factors = upsample_factors(c);
  int64_t prev_channels = channels.back();
  for (size_t i = 0; i < channels.size(); ++i) {
    const int64_t block_channels = channels[channels.size() - 1 - i];
    up_blocks->push_back(UpBlock3D(prev_channels, block_channels, c.layers_per_block + 1, groups,
                                   kVaeNormEps, factors[i], options));
    prev_channels = block_channels;
  }
  up_blocks = register_module("up_blocks", up_blocks);
  conv_norm_out =
      register_module("conv_norm_out", GroupNorm(groups, channels.front(), kVaeNormEps, options));
  conv_out = register_module("conv_out", CausalConv3d(channels.front(), c.out_channels,
                                                      Int3{3, 3, 3}, Int3{1, 1, 1}, options));
}

at::Tensor HunyuanVideoDecoder3DImpl::forward(const at::Tensor& z) {
  static const bool channels_last_on_gpus = [] {
    const char* env = std::getenv("DITBENCH_VAE_CHANNELS_LAST");
    return !(env && std::string(env) == "0");
  }();
  const auto format = channels_last.value_or(z.is_cuda() && channels_last_on_gpus)
                          ? at::MemoryFormat::ChannelsLast3d
                          : at::MemoryFormat::Contiguous;
  if (weights_format_ != format) {
    // Strides as at::empty gives them for the format: a 1x1x1 kernel's weight is contiguous in
    // both, and ATen's convolution reads its layout from its strides.
    for (at::Tensor& p : parameters()) {
      if (p.dim() != 5) continue;
      at::Tensor canonical = at::empty(p.sizes(), p.options().memory_format(format));
      if (canonical.strides() != p.strides()) p.set_data(canonical.copy_(p));
    }
    weights_format_ = format;
  }
  at::Tensor h = conv_in(z.contiguous(format));  // h: [B, C_last, F', H', W']
  h = mid_block(h);
  for (const auto& block : *up_blocks) h = block->as<UpBlock3DImpl>()->forward(h);
  // h: [B, C_first, F + 2, H + 2, W + 2] (SiLU(conv_norm_out(h)) padded for conv_out)
  h = conv_norm_out->forward_silu(h, conv_out->padding());
  return conv_out->forward_padded(h).contiguous();  // [B, C_out, F, H, W]
}

// ---- autoencoder (decode side) ----

AutoencoderKLHunyuanVideoDecoderImpl::AutoencoderKLHunyuanVideoDecoderImpl(
    const HunyuanVideoVAEConfig& config, const at::TensorOptions& options)
    : config_(config) {
  config_.validate("HunyuanVideo VAE config");
  post_quant_conv =
      register_module("post_quant_conv", Conv3d(config_.latent_channels, config_.latent_channels,
                                                Int3{1, 1, 1}, Int3{1, 1, 1}, options));
  decoder = register_module("decoder", HunyuanVideoDecoder3D(config_, options));
}

void AutoencoderKLHunyuanVideoDecoderImpl::set_tiling(const HunyuanVideoVAETiling& tiling) {
  auto check = [](const char* name, int64_t size, int64_t ratio, const char* ratio_name) {
    if (size <= 0 || size % ratio != 0) {
      throw InputError("HunyuanVideo VAE tiling: " + std::string(name) + " " +
                       std::to_string(size) + " is not a positive multiple of the " + ratio_name +
                       " compression ratio " + std::to_string(ratio));
    }
  };
  const int64_t s = config_.spatial_compression_ratio, t = config_.temporal_compression_ratio;
  check("min_height", tiling.min_height, s, "spatial");
  check("min_width", tiling.min_width, s, "spatial");
  check("stride_height", tiling.stride_height, s, "spatial");
  check("stride_width", tiling.stride_width, s, "spatial");
  check("min_num_frames", tiling.min_num_frames, t, "temporal");
  check("stride_num_frames", tiling.stride_num_frames, t, "temporal");
  if (tiling.stride_height > tiling.min_height || tiling.stride_width > tiling.min_width ||
      tiling.stride_num_frames > tiling.min_num_frames) {
    throw InputError(
        "HunyuanVideo VAE tiling: a stride exceeds its tile size (tiles would leave gaps)");
  }
  tiling_ = tiling;
}

at::Tensor AutoencoderKLHunyuanVideoDecoderImpl::decode(const at::Tensor& latents) {
  if (latents.dim() != 5 || latents.size(1) != config_.latent_channels) {
    throw InputError("latents: the HunyuanVideo VAE expects [B, " +
                     std::to_string(config_.latent_channels) + ", F, H, W], got " +
                     shape_string(latents));
  }
  at::NoGradGuard no_grad;
  const at::Tensor z = latents.to(post_quant_conv->weight.options());
  // The same dispatch as diffusers' AutoencoderKLHunyuanVideo._decode.
  if (tiling_.framewise &&
      z.size(2) > tiling_.min_num_frames / config_.temporal_compression_ratio) {
    return temporal_tiled_decode(z);
  }
  const int64_t s = config_.spatial_compression_ratio;
  if (tiling_.spatial &&
      (z.size(4) > tiling_.min_width / s || z.size(3) > tiling_.min_height / s)) {
    return spatial_tiled_decode(z);
  }
  return decode_untiled(z);
}

at::Tensor AutoencoderKLHunyuanVideoDecoderImpl::decode_untiled(const at::Tensor& z) {
  return decoder(post_quant_conv(z));
}

at::Tensor AutoencoderKLHunyuanVideoDecoderImpl::spatial_tiled_decode(const at::Tensor& z) {
  const SpatialTiles tiles{tiling_.min_height, tiling_.min_width, tiling_.stride_height,
                           tiling_.stride_width};
  return ditbench::spatial_tiled_decode(
      z, tiles, config_.spatial_compression_ratio,
      [this](const at::Tensor& tile) { return decode_untiled(tile); });
}

at::Tensor AutoencoderKLHunyuanVideoDecoderImpl::temporal_tiled_decode(const at::Tensor& z) {
  // z: [B, C_lat, F', H', W']
  const int64_t s = config_.spatial_compression_ratio, t = config_.temporal_compression_ratio;
  const int64_t latent_frames = z.size(2);
  const int64_t sample_frames = (latent_frames - 1) * t + 1;
  const int64_t tile_latent_frames = tiling_.min_num_frames / t;
  const int64_t stride_latent_frames = tiling_.stride_num_frames / t;
  const int64_t blend_frames = tiling_.min_num_frames - tiling_.stride_num_frames;

  // Each tile takes one extra latent frame: decoded, its first frame is the causal "image" frame
  // that overlaps the previous tile's last frame and is dropped.
  std::vector<at::Tensor> chunks;  // chunks[i]: [B, 3, f_i, H, W]
  for (int64_t i = 0; i < latent_frames; i += stride_latent_frames) {
    at::Tensor tile = slice_clipped(z, 2, i, tile_latent_frames + 1);
    at::Tensor decoded;
    if (tiling_.spatial &&
        (tile.size(4) > tiling_.min_width / s || tile.size(3) > tiling_.min_height / s)) {
      decoded = spatial_tiled_decode(tile);
    } else {
      decoded = decode_untiled(tile);
    }
    if (i > 0) decoded = decoded.narrow(2, 1, decoded.size(2) - 1);
    chunks.push_back(std::move(decoded));
  }

  std::vector<at::Tensor> parts;
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (i > 0) {
      blend_into(chunks[i - 1], chunks[i], 2, blend_frames);
      parts.push_back(slice_clipped(chunks[i], 2, 0, tiling_.stride_num_frames));
    } else {
      parts.push_back(slice_clipped(chunks[i], 2, 0, tiling_.stride_num_frames + 1));
    }
  }
  return slice_clipped(at::cat(parts, 2), 2, 0, sample_frames).contiguous();
}

// ---- loading ----

AutoencoderKLHunyuanVideoDecoder load_hunyuan_video_vae_decoder(const std::string& vae_dir,
                                                                const at::TensorOptions& options) {
  const std::string config_path = vae_dir + "/config.json";
  std::ifstream in(config_path);
  if (!in) throw InputError(config_path + ": cannot open the VAE config");
  nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) throw InputError(config_path + ": not valid JSON");
  AutoencoderKLHunyuanVideoDecoder vae(HunyuanVideoVAEConfig::from_json(json, config_path),
                                       options);
  // The checkpoint is a whole VAE; the decoder side is post_quant_conv.* and decoder.*.
  load_module(*vae, Checkpoint::open(vae_dir), {"encoder.", "quant_conv."});
  return vae;
}

}  // namespace ditbench
