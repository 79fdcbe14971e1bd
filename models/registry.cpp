#include "models/cogvideox/config.h"
#include "models/cogvideox/parity.h"
#include "models/cogvideox/pipeline.h"
#include "models/common/error.h"
#include "models/flux/config.h"
#include "models/flux/parity.h"
#include "models/flux/pipeline.h"
#include "models/hunyuan_video/config.h"
#include "models/hunyuan_video/parity.h"
#include "models/hunyuan_video/pipeline.h"
#include "models/mochi/config.h"
#include "models/mochi/parity.h"
#include "models/mochi/pipeline.h"
#include "models/wan/config.h"
#include "models/wan/parity.h"
#include "models/wan/pipeline.h"

#include <filesystem>
#include <fstream>
#include "models/pipeline.h"

namespace ditbench {

const std::vector<FamilyInfo>& model_families() {
  static const std::vector<FamilyInfo> families = {
      // VAE 8x spatial x patch 2; VAE 4x temporal.
      {"hunyuan-video", hunyuan_video_preset_names(), 16, 4, false},
      // VAE 8x spatial x patch 2; VAE 4x temporal; CFG.
      {"cogvideox", cogvideox_preset_names(), 16, 4, true},
      // VAE 8x spatial x patch 2; VAE 4x temporal; CFG.
      {"wan", wan_preset_names(), 16, 4, true},
      // VAE 8x spatial x patch 2; VAE 6x temporal; CFG.
      {"mochi", mochi_preset_names(), 16, 6, true},
      // VAE 8x spatial x 2x2 latent packing; images (one frame).
      {"flux", flux_preset_names(), 16, 1, false},
  };
  return families;
}

std::unique_ptr<DiffusionPipeline> create_pipeline(const PipelineSpec& spec) {
  if (spec.model == "hunyuan-video") return std::make_unique<HunyuanVideoPipeline>(spec);
  if (spec.model == "cogvideox") return std::make_unique<CogVideoXPipeline>(spec);
  if (spec.model == "wan") return std::make_unique<WanPipeline>(spec);
  if (spec.model == "mochi") return std::make_unique<MochiPipeline>(spec);
  if (spec.model == "flux") return std::make_unique<FluxPipeline>(spec);
  std::string known;
  for (const auto& f : model_families()) known += (known.empty() ? "" : ", ") + f.name;
  throw InputError("unknown model '" + spec.model + "' (known: " + known + ")");
}

FixtureParity run_fixture_parity(const std::string& dir) {
  namespace fs = std::filesystem;
  const auto config_file = fs::path(dir) / "model" / "config.json";
  if (!fs::exists(config_file))
    throw InputError(dir + ": no model/config.json (not a fixture folder)");
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(std::ifstream(config_file));
  } catch (const nlohmann::json::exception& e) {
    throw InputError(config_file.string() + ": not valid JSON (" + e.what() + ")");
  }
  const std::string cls = config.value("_class_name", "");
  if (cls == "HunyuanVideoTransformer3DModel") return hunyuan_video_transformer_parity(dir);
  if (cls == "AutoencoderKLHunyuanVideo") return hunyuan_video_vae_parity(dir);
  if (cls == "CogVideoXTransformer3DModel") return cogvideox_transformer_parity(dir);
  if (cls == "AutoencoderKLCogVideoX") return cogvideox_vae_parity(dir);
  if (cls == "WanTransformer3DModel") return wan_transformer_parity(dir);
  if (cls == "AutoencoderKLWan") return wan_vae_parity(dir);
  if (cls == "MochiTransformer3DModel") return mochi_transformer_parity(dir);
  if (cls == "AutoencoderKLMochi") return mochi_vae_parity(dir);
  if (cls == "FluxTransformer2DModel") return flux_transformer_parity(dir);
  if (cls == "AutoencoderKL") return flux_vae_parity(dir);
  throw InputError(config_file.string() + ": _class_name '" + cls +
                   "' has no ditbench model in this build (known: HunyuanVideoTransformer3DModel, "
                   "AutoencoderKLHunyuanVideo, FluxTransformer2DModel, AutoencoderKL)");
}

}  // namespace ditbench
