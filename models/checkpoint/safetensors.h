#pragma once
// models/checkpoint/ — reading and writing model weights.
//
//   safetensors.h  SafetensorsFile: one memory-mapped .safetensors file, its header validated on
//                  open; tensors are zero-copy CPU views of the mapping. load_safetensors /
//                  save_safetensors for small files (fixtures, test data, results).
//   checkpoint.h   Checkpoint: a single file, a sharded set with its *.safetensors.index.json, or
//                  a diffusers folder holding either; load_module() fills a torch::nn::Module from
//                  it with one error listing every missing / unexpected / mis-shaped key;
//                  random_init() for benchmarks at released sizes without downloading weights.
//
// Format (https://github.com/huggingface/safetensors): 8-byte little-endian header length N, N
// bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str:
// str}}, then the data buffer; offsets are relative to the buffer start.
//
// Why mmap: real checkpoints are tens of GB. Mapping lets load_module copy tensor by tensor from
// the page cache straight into parameters (possibly on a GPU) without a second host copy of the
// whole checkpoint, and opening a file costs only its header.
#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ditbench {

// One memory-mapped .safetensors file, validated on open. Copies share the mapping.
class SafetensorsFile {
 public:
  // Throws InputError naming the file (and the tensor, where one is at fault) when the file cannot
  // be read or its header is malformed: bad length, invalid JSON, duplicate names, unknown dtype,
  // negative dims, byte size not matching the shape, offsets outside the buffer or overlapping.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const;
  std::vector<std::string> keys() const;  // sorted
  bool contains(const std::string& name) const;
  size_t size() const;  // number of tensors
  std::vector<int64_t> shape(const std::string& name) const;
  at::ScalarType dtype(const std::string& name) const;
  uint64_t nbytes(const std::string& name) const;

  // CPU tensor viewing the mapping: zero copy. The tensor keeps the mapping alive, but the pages
  // are mapped read-only: writing through it faults, so treat it as read-only (clone() to own).
  // A tensor whose data is not aligned to its element size (legal in the format, never produced
  // by the reference writer) is returned as an owned copy instead, since ATen kernels assume
  // aligned elements.
  at::Tensor tensor(const std::string& name) const;

  const std::map<std::string, std::string>& metadata() const;

  // Byte range of the mapping: lets a caller prefetch or drop pages around bulk copies.
  const uint8_t* data_begin() const;

 private:
  struct Entry {
    at::ScalarType dtype;
    std::vector<int64_t> shape;
    uint64_t begin = 0;  // relative to the data buffer
    uint64_t end = 0;
  };
  struct Mapping;
  const Entry& entry(const std::string& name) const;

  std::string path_;
  std::shared_ptr<const Mapping> mapping_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
  uint64_t data_offset_ = 0;  // 8 + header length
};

// Reads every tensor of a file as an owned, contiguous CPU tensor.
std::map<std::string, at::Tensor> load_safetensors(const std::string& path);

// Writes `tensors` (any device, any strides) contiguous and little-endian, aligned to their element
// size, with `metadata` as "__metadata__". Tensors are moved to the host one at a time, so saving
// GPU weights needs host memory for the largest tensor only. The file is written under a temporary
// name and renamed, so a crash never leaves a truncated file under `path`.
void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Format name of an ATen dtype ("F32", "BF16", ...) and back; InputError/nullopt when unsupported.
std::string safetensors_dtype_name(at::ScalarType dtype);

}  // namespace ditbench
