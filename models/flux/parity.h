#pragma once
// Parity of the FLUX.1 transformer and VAE against diffusers fixture folders
// (model/ + io.safetensors, see ../shared/fixtures/README.md).
#include <string>

#include "models/pipeline.h"

namespace ditbench {

FixtureParity flux_transformer_parity(const std::string& dir);
FixtureParity flux_vae_parity(const std::string& dir);

}  // namespace ditbench
