#pragma once
// Parity of the CogVideoX transformer and VAE against diffusers fixture folders
// (model/ + io.safetensors, see ../shared/fixtures/README.md).
#include <string>

#include "models/pipeline.h"

namespace ditbench {

FixtureParity cogvideox_transformer_parity(const std::string& dir);
FixtureParity cogvideox_vae_parity(const std::string& dir);

}  // namespace ditbench
