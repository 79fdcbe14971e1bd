#include "models/flux/parity.h"

#include "models/common/fixture_parity.h"
#include "models/flux/transformer.h"
#include "models/flux/vae.h"

namespace ditbench {

FixtureParity flux_transformer_parity(const std::string& dir) {
  const ParityFixture fixture(dir);
  auto model = fixture.load<FluxTransformer2DModel>(FluxConfig::from_file(fixture.model_dir()));
  auto in = fixture.transformer_inputs();
  in.prompt.pooled = fixture.tensor("input.pooled_projections");
  in.image_ids = fixture.tensor("input.img_ids");
  in.text_ids = fixture.tensor("input.txt_ids");
  in.guidance = fixture.optional("input.guidance");
  // The first block returns (text, image).
  return transformer_fixture_parity(*model, "FluxTransformer2DModel", in, fixture,
                                    {BlockStream::kContext, BlockStream::kHidden});
}

FixtureParity flux_vae_parity(const std::string& dir) {
  const ParityFixture fixture(dir);
  auto vae =
      load_autoencoder_kl_decoder(fixture.model_dir(), at::TensorOptions().dtype(at::kFloat));
  vae->set_tiling(false);
  return decoder_fixture_parity("AutoencoderKL", fixture,
                                [&](const at::Tensor& z) { return vae->decode(z); });
}

}  // namespace ditbench
