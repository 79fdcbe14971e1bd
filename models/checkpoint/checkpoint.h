#pragma once
// A model's weights as one key space, whatever their layout on disk, and the two ways a module gets
// its parameters: load_module() from a checkpoint, random_init() for benchmarks at released sizes.
// See safetensors.h for the folder overview.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/checkpoint/safetensors.h"

namespace ditbench {

// A checkpoint: one safetensors file, a sharded set with its *.safetensors.index.json, or a folder
// holding either (diffusers' diffusion_pytorch_model.safetensors, or
// diffusion_pytorch_model-0000x-of-0000y.safetensors with
// diffusion_pytorch_model.safetensors.index.json). Copies share the open files; tensors are
// zero-copy views of the mappings.
class Checkpoint {
 public:
  // Throws InputError naming the path when nothing loadable is there, the index is malformed, a
  // shard it names does not exist, or a key it lists is absent from its shard.
  static Checkpoint open(const std::string& path);

  const std::string& path() const;        // as given to open()
  std::vector<std::string> keys() const;  // sorted
  size_t size() const;
  bool contains(const std::string& name) const;
  at::Tensor tensor(const std::string& name) const;  // zero-copy CPU view from the right shard
  std::vector<int64_t> shape(const std::string& name) const;
  at::ScalarType dtype(const std::string& name) const;
  // The files behind it, in shard order (one for an unsharded checkpoint).
  const std::vector<std::shared_ptr<const SafetensorsFile>>& files() const;

 private:
  const SafetensorsFile& file_of(const std::string& name) const;

  std::string path_;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::map<std::string, size_t> file_index_;  // key -> index into files_
};

// Fills every parameter and buffer of `module` (keys as named_parameters()/named_buffers() give
// them, e.g. "transformer_blocks.0.attn.to_q.weight") from `ckpt`, converting to the parameter's
// own dtype and device, in place. Missing keys, unexpected keys (checkpoint keys the module lacks)
// and shape mismatches are reported together in ONE InputError naming the checkpoint; nothing is
// copied then. Copies tensor by tensor from the mapping: the checkpoint is never held twice.
// Checkpoint keys starting with one of `ignore_prefixes` are not 'unexpected' (a VAE decoder loads
// from a full VAE checkpoint holding encoder.* keys).
// Tables a module computes itself (RoPE frequencies) must not be registered as buffers: LibTorch
// has no non-persistent buffers, so every buffer is expected in the checkpoint.
void load_module(torch::nn::Module& module, const Checkpoint& ckpt,
                 const std::vector<std::string>& ignore_prefixes = {});

// Seeded random init at any size, in place on the parameters' own device and dtype (generated
// there, so fast on a GPU): >=2-D parameters normal(0, 1/sqrt(fan_in)) with fan_in the product of
// all dims but the first; 0-D/1-D parameters named "*bias" zero, other 0-D/1-D parameters (norm
// weights, scales) one. Each parameter draws from its own generator seeded by (seed, its name), so
// a parameter's values do not depend on which other parameters the module has. Deterministic for a
// seed on a given device type. Buffers are left as they are.
void random_init(torch::nn::Module& module, uint64_t seed);

}  // namespace ditbench
