#pragma once
// Parity of the Mochi transformer and VAE decoder against diffusers fixture folders
// (model/ + io.safetensors, see ../shared/fixtures/README.md).
#include <string>

#include "models/pipeline.h"

namespace ditbench {

FixtureParity mochi_transformer_parity(const std::string& dir);
FixtureParity mochi_vae_parity(const std::string& dir);

}  // namespace ditbench
