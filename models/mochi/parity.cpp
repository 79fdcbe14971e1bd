#include "models/mochi/parity.h"

#include <c10/core/InferenceMode.h>

#include <filesystem>

#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/tensor_io.h"
#include "models/mochi/transformer.h"
#include "models/mochi/vae.h"

namespace ditbench {
namespace fs = std::filesystem;

FixtureParity mochi_transformer_parity(const std::string& dir) {
  c10::InferenceMode guard;
  const auto model_dir = (fs::path(dir) / "model").string();
  const auto io_file = (fs::path(dir) / "io.safetensors").string();
  MochiTransformer3DModel model(MochiConfig::from_file(model_dir),
                                at::TensorOptions().dtype(at::kFloat));
  load_module(*model, Checkpoint::open(model_dir));
  auto io = load_safetensors(io_file);

  TransformerInputs in;
  in.latents = require_tensor(io, "input.hidden_states", io_file);
  in.timestep = require_tensor(io, "input.timestep", io_file);
  in.prompt.embeds = require_tensor(io, "input.encoder_hidden_states", io_file);
  in.prompt.attention_mask = require_tensor(io, "input.encoder_attention_mask", io_file);

  FixtureParity result;
  result.model_class = "MochiTransformer3DModel";
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

FixtureParity mochi_vae_parity(const std::string& dir) {
  c10::InferenceMode guard;
  const auto model_dir = (fs::path(dir) / "model").string();
  const auto io_file = (fs::path(dir) / "io.safetensors").string();
  AutoencoderKLMochiDecoder vae(MochiVAEConfig::from_file(model_dir),
                                at::TensorOptions().dtype(at::kFloat));
  load_module(*vae, Checkpoint::open(model_dir), {"encoder."});
  auto io = load_safetensors(io_file);
  FixtureParity result;
  result.model_class = "AutoencoderKLMochi";
  result.rel_error = relative_error(vae->decode(require_tensor(io, "input.latents", io_file)),
                                    require_tensor(io, "output.frames", io_file));
  return result;
}

}  // namespace ditbench
