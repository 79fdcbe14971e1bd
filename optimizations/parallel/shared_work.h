#pragma once
// Work split over the ranks of a group, the results shared: for n independent items (a VAE's
// decoded tiles), rank r computes items r, r + W, r + 2W, ... and every rank gets all n results,
// bit for bit what computing them all on one rank gives. Items may differ in shape and dtype.
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "optimizations/parallel/communicator.h"

namespace ditbench {

// Collective over `group` (every rank calls it with the same n). `item(k)` computes item k on
// `device` (the group's device: the CPU for in-process ranks, the rank's GPU for NCCL). Returns
// the n items in order, on `device`, contiguous.
std::vector<at::Tensor> compute_shared(Communicator& group, int64_t n, const at::Device& device,
                                       const std::function<at::Tensor(int64_t k)>& item);

}  // namespace ditbench
