#pragma once
// Parity of the HunyuanVideo transformer and VAE against diffusers fixture folders
// (model/ + io.safetensors, see ../shared/fixtures/README.md).
#include <string>

#include "models/pipeline.h"

namespace ditbench {

FixtureParity hunyuan_video_transformer_parity(const std::string& dir);
FixtureParity hunyuan_video_vae_parity(const std::string& dir);

}  // namespace ditbench
