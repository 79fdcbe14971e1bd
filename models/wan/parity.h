#pragma once
// Parity of the Wan transformer and VAE decoder against diffusers fixture folders
// (model/ + io.safetensors, see ../shared/fixtures/README.md).
#include <string>

#include "models/pipeline.h"

namespace ditbench {

FixtureParity wan_transformer_parity(const std::string& dir);
FixtureParity wan_vae_parity(const std::string& dir);

}  // namespace ditbench
