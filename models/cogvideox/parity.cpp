#include "models/cogvideox/parity.h"

#include "models/cogvideox/transformer.h"
#include "models/cogvideox/vae.h"
#include "models/common/fixture_parity.h"

namespace ditbench {

FixtureParity cogvideox_transformer_parity(const std::string& dir) {
  const ParityFixture fixture(dir);
  auto model =
      fixture.load<CogVideoXTransformer3DModel>(CogVideoXConfig::from_file(fixture.model_dir()));
  // The 5b rotary tables (input.image_rotary_emb_*) are not fed in: the model computes its own.
  return transformer_fixture_parity(*model, "CogVideoXTransformer3DModel",
                                    fixture.transformer_inputs(), fixture,
                                    {BlockStream::kHidden, BlockStream::kContext});
}

FixtureParity cogvideox_vae_parity(const std::string& dir) {
  const ParityFixture fixture(dir);
  auto vae = load_cogvideox_vae_decoder(fixture.model_dir(), at::TensorOptions().dtype(at::kFloat));
  vae->set_tiling(false);
  return decoder_fixture_parity("AutoencoderKLCogVideoX", fixture,
                                [&](const at::Tensor& z) { return vae->decode(z); });
}

}  // namespace ditbench
