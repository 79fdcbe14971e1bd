#include "models/common/initial_noise.h"

#include <ATen/CPUGeneratorImpl.h>

#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/common/tensor_io.h"

namespace ditbench {

at::Tensor initial_noise(const std::vector<int64_t>& shape, int64_t seed,
                         const std::string& noise_file, at::ScalarType dtype) {
  if (noise_file.empty()) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
    return at::randn(shape, gen, at::TensorOptions().dtype(dtype));
  }
  auto noise = require_tensor(load_safetensors(noise_file), "noise", noise_file).to(dtype);
  if (noise.sizes() != at::IntArrayRef(shape)) {
    throw InputError(noise_file + ": tensor 'noise' has shape " + c10::str(noise.sizes()) +
                     ", the suite's size needs " + c10::str(at::IntArrayRef(shape)));
  }
  return noise;
}

}  // namespace ditbench
