#pragma once
// `ditbench parity DIR` for one model: DIR/model is a diffusers model folder (config.json and
// safetensors) and DIR/io.safetensors holds its inputs (input.*) and the reference outputs
// (output.*), see ../shared/fixtures/README.md. Each family loads its model and adds the inputs
// only it takes; running and comparing are written here once.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "models/checkpoint/checkpoint.h"
#include "models/model.h"
#include "models/pipeline.h"

namespace ditbench {

// A Model (a module holder built from a config and tensor options) with the weights of the
// diffusers folder `dir`, keys starting with one of `ignore_prefixes` skipped.
template <typename Model, typename Config>
Model load_pretrained(const Config& config, const at::TensorOptions& options,
                      const std::string& dir,
                      const std::vector<std::string>& ignore_prefixes = {}) {
  Model model(config, options);
  load_module(*model, Checkpoint::open(dir), ignore_prefixes);
  return model;
}

class ParityFixture {
 public:
  // Everything from here on runs in inference mode. io.safetensors is read at the first tensor
  // asked for, so a bad model folder is reported first.
  explicit ParityFixture(const std::string& dir);

  const std::string& model_dir() const { return model_dir_; }
  // The io tensor `name`; InputError naming io.safetensors when it is absent.
  at::Tensor tensor(const std::string& name) const;
  // The io tensor `name`, undefined when absent.
  at::Tensor optional(const std::string& name) const;

  // A float32 Model built from `config` with the weights of model/ (keys starting with one of
  // `ignore_prefixes` skipped, e.g. a VAE decoder's "encoder.").
  template <typename Model, typename Config>
  Model load(const Config& config, const std::vector<std::string>& ignore_prefixes = {}) const {
    return load_pretrained<Model>(config, at::TensorOptions().dtype(at::kFloat), model_dir_,
                                  ignore_prefixes);
  }

  // input.hidden_states, input.timestep and input.encoder_hidden_states: what every transformer
  // fixture feeds.
  TransformerInputs transformer_inputs() const;

 private:
  const std::map<std::string, at::Tensor>& io() const;

  c10::InferenceMode guard_;
  std::string model_dir_, io_file_;
  mutable std::map<std::string, at::Tensor> io_;
  mutable bool io_read_ = false;
};

// The stream each of a first block's outputs (output.first_block_out0, out1, ...) compares with.
enum class BlockStream { kHidden, kContext };

// Runs `in` through `model` block by block: first_block_errors compares the first block's
// streams, in `first_block` order (a text stream without its padded rows with the reference's
// valid rows), and rel_error the output with output.sample.
FixtureParity transformer_fixture_parity(BlockTransformer& model, const std::string& model_class,
                                         const TransformerInputs& in, const ParityFixture& fixture,
                                         const std::vector<BlockStream>& first_block);

// decode(input.latents) against output.frames.
FixtureParity decoder_fixture_parity(const std::string& model_class, const ParityFixture& fixture,
                                     const std::function<at::Tensor(const at::Tensor&)>& decode);

}  // namespace ditbench
