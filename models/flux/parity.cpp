#include "models/flux/parity.h"

#include <c10/core/InferenceMode.h>

#include <filesystem>

#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/tensor_io.h"
#include "models/flux/transformer.h"
#include "models/flux/vae.h"

namespace ditbench {
namespace fs = std::filesystem;

FixtureParity flux_transformer_parity(const std::string& dir) {
  c10::InferenceMode guard;
  const auto model_dir = (fs::path(dir) / "model").string();
  const auto io_file = (fs::path(dir) / "io.safetensors").string();
  FluxTransformer2DModel model(FluxConfig::from_file(model_dir),
                               at::TensorOptions().dtype(at::kFloat));
  load_module(*model, Checkpoint::open(model_dir));
  auto io = load_safetensors(io_file);

  TransformerInputs in;
  in.latents = require_tensor(io, "input.hidden_states", io_file);
  in.timestep = require_tensor(io, "input.timestep", io_file);
  in.prompt.embeds = require_tensor(io, "input.encoder_hidden_states", io_file);
  in.prompt.pooled = require_tensor(io, "input.pooled_projections", io_file);
  in.image_ids = require_tensor(io, "input.img_ids", io_file);
  in.text_ids = require_tensor(io, "input.txt_ids", io_file);
  if (io.count("input.guidance")) in.guidance = io.at("input.guidance");

  FixtureParity result;
  result.model_class = "FluxTransformer2DModel";
  BlockState s = model->prepare(in);
  model->run_block(0, s);
  // The first block returns (text, image).
  result.first_block_errors.push_back(
      relative_error(s.context, require_tensor(io, "output.first_block_out0", io_file)));
  result.first_block_errors.push_back(
      relative_error(s.hidden, require_tensor(io, "output.first_block_out1", io_file)));
  for (int64_t i = 1; i < model->num_blocks(); ++i) model->run_block(i, s);
  result.rel_error = relative_error(model->finish(s), require_tensor(io, "output.sample", io_file));
  return result;
}

}  // namespace ditbench

namespace ditbench {

FixtureParity flux_vae_parity(const std::string& dir) {
  c10::InferenceMode guard;
  const auto model_dir = (fs::path(dir) / "model").string();
  const auto io_file = (fs::path(dir) / "io.safetensors").string();
  auto vae = load_autoencoder_kl_decoder(model_dir, at::TensorOptions().dtype(at::kFloat));
  vae->set_tiling(false);
  auto io = load_safetensors(io_file);
  FixtureParity result;
  result.model_class = "AutoencoderKL";
  result.rel_error = relative_error(vae->decode(require_tensor(io, "input.latents", io_file)),
                                    require_tensor(io, "output.frames", io_file));
  return result;
}

}  // namespace ditbench
