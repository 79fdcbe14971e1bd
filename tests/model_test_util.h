#pragma once
// What the model families' tests share: safetensors files read once (fixture io, generated
// references), transformer inputs named by diffusers' forward arguments, models loaded from a
// fixture, parameter shapes, and the tiny CPU spec of a pipeline.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/fixture_parity.h"
#include "models/pipeline.h"
#include "test_util.h"

namespace ditbench::testing {

using TensorMap = std::map<std::string, at::Tensor>;

// The tensors of the safetensors file `path`, read once per test binary.
inline const TensorMap& cached_tensors(const std::string& path) {
  static std::map<std::string, TensorMap> cache;
  auto it = cache.find(path);
  if (it == cache.end()) it = cache.emplace(path, load_safetensors(path)).first;
  return it->second;
}
// ../shared/fixtures/diffusers/<name>
inline std::string diffusers_fixture(const std::string& name) {
  return fixtures_dir() + "/diffusers/" + name;
}
// The io.safetensors of the diffusers fixture `name`.
inline const TensorMap& fixture_io(const std::string& name) {
  return cached_tensors(diffusers_fixture(name) + "/io.safetensors");
}
// tests/data/<path>: references generated with diffusers.
inline const TensorMap& test_data(const std::string& path) {
  return cached_tensors(source_dir() + "/tests/data/" + path);
}

// Inputs named by diffusers' forward arguments under `prefix` ("input.", "b2.input."): latents,
// timestep and text states, and the text mask, pooled text, guidance and FLUX's position ids
// where the file has them.
inline TransformerInputs inputs_from(const TensorMap& io, const std::string& prefix) {
  auto optional = [&](const std::string& name) {
    auto it = io.find(prefix + name);
    return it == io.end() ? at::Tensor() : it->second;
  };
  TransformerInputs in;
  in.latents = io.at(prefix + "hidden_states");
  in.timestep = io.at(prefix + "timestep");
  in.prompt.embeds = io.at(prefix + "encoder_hidden_states");
  in.prompt.attention_mask = optional("encoder_attention_mask");
  in.prompt.pooled = optional("pooled_projections");
  in.guidance = optional("guidance");
  in.image_ids = optional("img_ids");
  in.text_ids = optional("txt_ids");
  return in;
}

// The model of a fixture's model/ folder in `dtype`, built from `config`.
template <typename Model, typename Config>
Model load_fixture_model(const std::string& fixture, const Config& config, at::ScalarType dtype,
                         const std::vector<std::string>& ignore_prefixes = {}) {
  return load_pretrained<Model>(config, at::TensorOptions().dtype(dtype), fixture + "/model",
                                ignore_prefixes);
}

inline std::map<std::string, std::vector<int64_t>> parameter_shapes(const torch::nn::Module& m) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& p : m.named_parameters()) shapes[p.key()] = p.value().sizes().vec();
  return shapes;
}
inline std::map<std::string, std::vector<int64_t>> checkpoint_shapes(const Checkpoint& ckpt) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& key : ckpt.keys()) shapes[key] = ckpt.shape(key);
  return shapes;
}

// A seeded-weights float32 CPU spec without decoding: the tiny presets' tests.
inline PipelineSpec tiny_cpu_spec(const std::string& model, const std::string& preset,
                                  int64_t height, int64_t width, int64_t frames) {
  PipelineSpec spec;
  spec.model = model;
  spec.preset = preset;
  spec.random_weights = true;
  spec.dtype = at::kFloat;
  spec.height = height;
  spec.width = width;
  spec.frames = frames;
  spec.decode = false;
  return spec;
}

// A diffusers-style checkpoint folder in `dir`: transformer/ and vae/ linked to the model folders
// of the diffusers fixtures `transformer` and `vae`; a float32 CPU spec of it that reads its
// prompt embeddings from `prompt_file`.
inline PipelineSpec fixture_checkpoint_spec(const TempDir& dir, const std::string& model,
                                            const std::string& transformer, const std::string& vae,
                                            const std::string& prompt_file) {
  namespace fs = std::filesystem;
  fs::create_directory_symlink(diffusers_fixture(transformer) + "/model",
                               dir.path() / "transformer");
  fs::create_directory_symlink(diffusers_fixture(vae) + "/model", dir.path() / "vae");
  PipelineSpec spec;
  spec.model = model;
  spec.checkpoint = dir.path().string();
  spec.dtype = at::kFloat;
  spec.prompt_file = prompt_file;
  return spec;
}

}  // namespace ditbench::testing
