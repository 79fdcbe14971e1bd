#include "models/hunyuan_video/parity.h"

#include "models/common/fixture_parity.h"
#include "models/hunyuan_video/transformer.h"
#include "models/hunyuan_video/vae.h"

namespace ditbench {

FixtureParity hunyuan_video_transformer_parity(const std::string& dir) {
  const ParityFixture fixture(dir);
  auto model = fixture.load<HunyuanVideoTransformer3DModel>(
      HunyuanVideoConfig::from_file(fixture.model_dir()));
  auto in = fixture.transformer_inputs();
  in.prompt.attention_mask = fixture.tensor("input.encoder_attention_mask");
  in.prompt.pooled = fixture.tensor("input.pooled_projections");
  in.guidance = fixture.optional("input.guidance");
  return transformer_fixture_parity(*model, "HunyuanVideoTransformer3DModel", in, fixture,
                                    {BlockStream::kHidden, BlockStream::kContext});
}

FixtureParity hunyuan_video_vae_parity(const std::string& dir) {
  const ParityFixture fixture(dir);
  auto vae =
      load_hunyuan_video_vae_decoder(fixture.model_dir(), at::TensorOptions().dtype(at::kFloat));
  vae->set_tiling(false);
  return decoder_fixture_parity("AutoencoderKLHunyuanVideo", fixture,
                                [&](const at::Tensor& z) { return vae->decode(z); });
}

}  // namespace ditbench
