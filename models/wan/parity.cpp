#include "models/wan/parity.h"

#include "models/common/fixture_parity.h"
#include "models/wan/transformer.h"
#include "models/wan/vae.h"

namespace ditbench {

FixtureParity wan_transformer_parity(const std::string& dir) {
  const ParityFixture fixture(dir);
  auto model = fixture.load<WanTransformer3DModel>(WanConfig::from_file(fixture.model_dir()));
  // The blocks carry the image stream only (the text is cross-attended).
  return transformer_fixture_parity(*model, "WanTransformer3DModel", fixture.transformer_inputs(),
                                    fixture, {BlockStream::kHidden});
}

FixtureParity wan_vae_parity(const std::string& dir) {
  const ParityFixture fixture(dir);
  auto vae = fixture.load<AutoencoderKLWanDecoder>(WanVAEConfig::from_file(fixture.model_dir()),
                                                   {"encoder.", "quant_conv."});
  return decoder_fixture_parity("AutoencoderKLWan", fixture,
                                [&](const at::Tensor& z) { return vae->decode(z); });
}

}  // namespace ditbench
