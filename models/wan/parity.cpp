#include "models/wan/parity.h"

#include <c10/core/InferenceMode.h>

#include <filesystem>

#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/json_config.h"
#include "models/common/tensor_io.h"
#include "models/wan/transformer.h"
#include "models/wan/vae.h"

namespace ditbench {
namespace fs = std::filesystem;

FixtureParity wan_transformer_parity(const std::string& dir) {
  c10::InferenceMode guard;
  const auto model_dir = (fs::path(dir) / "model").string();
  const auto io_file = (fs::path(dir) / "io.safetensors").string();
  WanTransformer3DModel model(WanConfig::from_file(model_dir),
                              at::TensorOptions().dtype(at::kFloat));
  load_module(*model, Checkpoint::open(model_dir));
  const auto io = load_safetensors(io_file);

  TransformerInputs in;
  in.latents = require_tensor(io, "input.hidden_states", io_file);
  in.timestep = require_tensor(io, "input.timestep", io_file);
  in.prompt.embeds = require_tensor(io, "input.encoder_hidden_states", io_file);

  FixtureParity result;
  result.model_class = "WanTransformer3DModel";
  BlockState s = model->prepare(in);
  if (model->num_blocks() > 0) {
    model->run_block(0, s);
    result.first_block_errors.push_back(
        relative_error(s.hidden, require_tensor(io, "output.first_block_out0", io_file)));
  }
  for (int64_t i = 1; i < model->num_blocks(); ++i) model->run_block(i, s);
  result.rel_error = relative_error(model->finish(s), require_tensor(io, "output.sample", io_file));
  return result;
}

FixtureParity wan_vae_parity(const std::string& dir) {
  c10::InferenceMode guard;
  const auto model_dir = (fs::path(dir) / "model").string();
  const auto io_file = (fs::path(dir) / "io.safetensors").string();
  const auto config_file = (fs::path(model_dir) / "config.json").string();
  AutoencoderKLWanDecoder vae(WanVAEConfig::from_json(read_config_file(config_file), config_file),
                              at::TensorOptions().dtype(at::kFloat));
  load_module(*vae, Checkpoint::open(model_dir), {"encoder.", "quant_conv."});
  const auto io = load_safetensors(io_file);
  FixtureParity result;
  result.model_class = "AutoencoderKLWan";
  result.rel_error = relative_error(vae->decode(require_tensor(io, "input.latents", io_file)),
                                    require_tensor(io, "output.frames", io_file));
  return result;
}

}  // namespace ditbench
