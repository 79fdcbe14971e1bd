#include "models/cogvideox/parity.h"

#include <c10/core/InferenceMode.h>

#include <filesystem>

#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/cogvideox/transformer.h"
#include "models/cogvideox/vae.h"
#include "models/common/error.h"
#include "models/common/tensor_io.h"

namespace ditbench {
namespace fs = std::filesystem;

FixtureParity cogvideox_transformer_parity(const std::string& dir) {
  c10::InferenceMode guard;
  const auto model_dir = (fs::path(dir) / "model").string();
  const auto io_file = (fs::path(dir) / "io.safetensors").string();
  auto config = CogVideoXConfig::from_file(model_dir);
  CogVideoXTransformer3DModel model(config, at::TensorOptions().dtype(at::kFloat));
  load_module(*model, Checkpoint::open(model_dir));
  auto io = load_safetensors(io_file);

  // The 5b rotary tables (input.image_rotary_emb_*) are not fed in: the model computes its own.
  TransformerInputs in;
  in.latents = require_tensor(io, "input.hidden_states", io_file);
  in.timestep = require_tensor(io, "input.timestep", io_file);
  in.prompt.embeds = require_tensor(io, "input.encoder_hidden_states", io_file);

  FixtureParity result;
  result.model_class = "CogVideoXTransformer3DModel";
  BlockState s = model->prepare(in);
  model->run_block(0, s);
  result.first_block_errors.push_back(
      relative_error(s.hidden, require_tensor(io, "output.first_block_out0", io_file)));
  result.first_block_errors.push_back(
      relative_error(s.context, require_tensor(io, "output.first_block_out1", io_file)));
  for (int64_t i = 1; i < model->num_blocks(); ++i) model->run_block(i, s);
  result.rel_error = relative_error(model->finish(s), require_tensor(io, "output.sample", io_file));
  return result;
}

FixtureParity cogvideox_vae_parity(const std::string& dir) {
  c10::InferenceMode guard;
  const auto model_dir = (fs::path(dir) / "model").string();
  const auto io_file = (fs::path(dir) / "io.safetensors").string();
  auto vae = load_cogvideox_vae_decoder(model_dir, at::TensorOptions().dtype(at::kFloat));
  vae->set_tiling(false);
  auto io = load_safetensors(io_file);
  FixtureParity result;
  result.model_class = "AutoencoderKLCogVideoX";
  result.rel_error = relative_error(vae->decode(require_tensor(io, "input.latents", io_file)),
                                    require_tensor(io, "output.frames", io_file));
  return result;
}

}  // namespace ditbench
