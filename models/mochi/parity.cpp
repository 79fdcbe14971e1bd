#include "models/mochi/parity.h"

#include "models/common/fixture_parity.h"
#include "models/mochi/transformer.h"
#include "models/mochi/vae.h"

namespace ditbench {

FixtureParity mochi_transformer_parity(const std::string& dir) {
  const ParityFixture fixture(dir);
  auto model = fixture.load<MochiTransformer3DModel>(MochiConfig::from_file(fixture.model_dir()));
  auto in = fixture.transformer_inputs();
  in.prompt.attention_mask = fixture.tensor("input.encoder_attention_mask");
  return transformer_fixture_parity(*model, "MochiTransformer3DModel", in, fixture,
                                    {BlockStream::kHidden, BlockStream::kContext});
}

FixtureParity mochi_vae_parity(const std::string& dir) {
  const ParityFixture fixture(dir);
  auto vae = fixture.load<AutoencoderKLMochiDecoder>(MochiVAEConfig::from_file(fixture.model_dir()),
                                                     {"encoder."});
  return decoder_fixture_parity("AutoencoderKLMochi", fixture,
                                [&](const at::Tensor& z) { return vae->decode(z); });
}

}  // namespace ditbench
