#pragma once
// The initial latents of a generation as diffusers' randn_tensor draws them with a CPU
// torch.Generator, or the `noise` tensor of a file when a suite gives one.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ditbench {

// randn(shape) in `dtype` from a CPU generator seeded with `seed` (the same numbers as the Python
// pipelines), or noise_file's tensor `noise` cast to `dtype` when noise_file is not empty
// (InputError naming the file when it is missing or its shape is not `shape`). On the CPU.
at::Tensor initial_noise(const std::vector<int64_t>& shape, int64_t seed,
                         const std::string& noise_file, at::ScalarType dtype);

}  // namespace ditbench
