#include "models/common/fixture_parity.h"

#include <filesystem>

#include "models/checkpoint/safetensors.h"
#include "models/common/tensor_io.h"

namespace ditbench {
namespace fs = std::filesystem;

ParityFixture::ParityFixture(const std::string& dir)
    : model_dir_((fs::path(dir) / "model").string()),
      io_file_((fs::path(dir) / "io.safetensors").string()) {}

const std::map<std::string, at::Tensor>& ParityFixture::io() const {
  if (!io_read_) {
    io_ = load_safetensors(io_file_);
    io_read_ = true;
  }
  return io_;
}

at::Tensor ParityFixture::tensor(const std::string& name) const {
  return require_tensor(io(), name, io_file_);
}

at::Tensor ParityFixture::optional(const std::string& name) const {
  auto it = io().find(name);
  return it == io().end() ? at::Tensor() : it->second;
}

TransformerInputs ParityFixture::transformer_inputs() const {
  TransformerInputs in;
  in.latents = tensor("input.hidden_states");
  in.timestep = tensor("input.timestep");
  in.prompt.embeds = tensor("input.encoder_hidden_states");
  return in;
}

FixtureParity transformer_fixture_parity(BlockTransformer& model, const std::string& model_class,
                                         const TransformerInputs& in, const ParityFixture& fixture,
                                         const std::vector<BlockStream>& first_block) {
  FixtureParity result;
  result.model_class = model_class;
  BlockState s = model.prepare(in);
  if (model.num_blocks() > 0) {
    model.run_block(0, s);
    for (size_t i = 0; i < first_block.size(); ++i) {
      const auto& out = first_block[i] == BlockStream::kHidden ? s.hidden : s.context;
      auto ref = fixture.tensor("output.first_block_out" + std::to_string(i));
      const auto& mask = in.prompt.attention_mask;
      if (first_block[i] == BlockStream::kContext && mask.defined() && out.size(1) < ref.size(1)) {
        // The model dropped the padded text rows (HunyuanVideo does when every sample has as many
        // valid tokens): the reference's valid rows. [B, L, D] -> [B, valid, D]
        ref = ref.index({mask.to(at::kBool)}).view({ref.size(0), -1, ref.size(2)});
      }
      result.first_block_errors.push_back(relative_error(out, ref));
    }
  }
  for (int64_t i = 1; i < model.num_blocks(); ++i) model.run_block(i, s);
  result.rel_error = relative_error(model.finish(s), fixture.tensor("output.sample"));
  return result;
}

FixtureParity decoder_fixture_parity(const std::string& model_class, const ParityFixture& fixture,
                                     const std::function<at::Tensor(const at::Tensor&)>& decode) {
  FixtureParity result;
  result.model_class = model_class;
  result.rel_error =
      relative_error(decode(fixture.tensor("input.latents")), fixture.tensor("output.frames"));
  return result;
}

}  // namespace ditbench
