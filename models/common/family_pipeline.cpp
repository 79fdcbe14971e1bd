#include "models/common/family_pipeline.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <filesystem>

#include "models/common/error.h"

namespace ditbench {
namespace fs = std::filesystem;

std::string CheckpointFolders::vae_config_file() const {
  return (fs::path(vae) / "config.json").string();
}

CheckpointFolders checkpoint_folders(const std::string& checkpoint, bool need_vae) {
  CheckpointFolders folders;
  if (checkpoint.empty()) return folders;
  folders.transformer = (fs::path(checkpoint) / "transformer").string();
  folders.vae = (fs::path(checkpoint) / "vae").string();
  if (!fs::exists(folders.transformer)) {
    throw InputError(checkpoint + ": not a diffusers checkpoint folder (no transformer/)");
  }
  if (need_vae && !fs::exists(folders.vae_config_file())) {
    throw InputError(checkpoint + ": no vae/config.json");
  }
  return folders;
}

void require_latent_channels(const std::string& source, int64_t vae_channels,
                             int64_t transformer_channels) {
  if (vae_channels != transformer_channels) {
    throw InputError(source + ": the VAE has " + std::to_string(vae_channels) +
                     " latent channels, the transformer " + std::to_string(transformer_channels));
  }
}

at::Tensor video_frames_on_device(const at::Tensor& decoded) {
  auto video = (decoded[0] / 2 + 0.5).clamp_(0, 1);  // [3, F, H, W], the VAE's dtype
  // Laid out in frame order and widened in one pass (on a GPU by its kernels), so the host
  // receives one contiguous copy instead of reordering F x H x W x 3 4-byte values itself.
  auto frames = at::empty({video.size(1), video.size(2), video.size(3), video.size(0)},
                          video.options().dtype(at::kFloat));  // [F, H, W, 3]
  return frames.copy_(video.permute({1, 2, 3, 0}));
}

at::Tensor video_frames(const at::Tensor& decoded) {
  auto frames = video_frames_on_device(decoded);
  if (!frames.is_cuda()) return frames;
  // Into page-locked memory, which ATen's caching host allocator keeps mapped from one video to
  // the next: a fresh pageable tensor is faulted in page by page during the copy, 1.2 s instead
  // of 30 ms for 720x1280x129 on an H100 host (bench_postprocess).
  auto host = at::empty(frames.sizes(), frames.options().device(at::kCPU).pinned_memory(true));
  return host.copy_(frames);
}

int64_t count_parameters(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

at::Tensor require_prompt_embeds(const std::map<std::string, at::Tensor>& tensors,
                                 const std::string& file, const std::string& name, int64_t width) {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw InputError(file + ": no tensor '" + name + "'");
  const at::Tensor& t = it->second;
  if (t.dim() != 3 || t.size(2) != width) {
    throw InputError(file + ": tensor '" + name + "' must be [B, L, " + std::to_string(width) +
                     "], got " + c10::str(t.sizes()));
  }
  return t;
}

void require_same_shape(const at::Tensor& negative, const at::Tensor& positive,
                        const std::string& file, const std::string& negative_name,
                        const std::string& positive_name) {
  if (negative.sizes() != positive.sizes()) {
    throw InputError(file + ": tensor '" + negative_name + "' " + c10::str(negative.sizes()) +
                     " must have the shape of '" + positive_name + "' " +
                     c10::str(positive.sizes()));
  }
}

PromptEmbeds prompt_on_device(PromptEmbeds p, const PipelineSpec& spec) {
  p.embeds = p.embeds.to(spec.device, spec.dtype);
  if (p.pooled.defined()) p.pooled = p.pooled.to(spec.device, spec.dtype);
  if (p.attention_mask.defined()) p.attention_mask = p.attention_mask.to(spec.device);
  return p;
}

SyntheticPrompt::SyntheticPrompt(const PipelineSpec& spec, int64_t seed, int64_t default_tokens)
    : tokens_(spec.synthetic_tokens > 0 ? spec.synthetic_tokens : default_tokens),
      valid_(spec.synthetic_valid > 0 ? std::min(spec.synthetic_valid, tokens_) : tokens_),
      gen_(at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed) + 1)) {}

at::Tensor SyntheticPrompt::mask(int64_t n) const { return at::arange(tokens_).lt(n).unsqueeze(0); }

at::Tensor SyntheticPrompt::randn(int64_t width) { return at::randn({1, tokens_, width}, gen_); }

at::Tensor SyntheticPrompt::randn_pooled(int64_t width) { return at::randn({1, width}, gen_); }

at::Tensor SyntheticPrompt::embeds(int64_t width, int64_t n) {
  return randn(width) * mask(n).unsqueeze(-1).to(at::kFloat);
}

std::string SyntheticPrompt::source() const {
  return "synthetic:" + std::to_string(tokens_) + "/" + std::to_string(valid_);
}

std::vector<TransformerInputs> split_cfg_branches(const TransformerInputs& in, int64_t batch) {
  TransformerInputs uncond = in, cond = in;
  for (auto [branch, start] : {std::pair{&uncond, int64_t{0}}, std::pair{&cond, batch}}) {
    branch->prompt.embeds = in.prompt.embeds.narrow(0, start, batch);
    if (in.prompt.attention_mask.defined()) {
      branch->prompt.attention_mask = in.prompt.attention_mask.narrow(0, start, batch);
    }
  }
  return {uncond, cond};
}

at::Tensor cfg_mix_f32(const std::vector<at::Tensor>& outputs, double guidance) {
  at::Tensor noise_pred = outputs.at(0).to(at::kFloat);
  if (outputs.size() == 2) {
    noise_pred = noise_pred + guidance * (outputs[1].to(at::kFloat) - noise_pred);
  }
  return noise_pred;
}

}  // namespace ditbench
