#pragma once
// Splitting a model's token sequence across the ranks of a context-parallel group, and the CFG
// batch across the two ranks of a CFG-parallel pair.
#include <ATen/ATen.h>

#include "models/model.h"
#include "optimizations/parallel/communicator.h"

namespace ditbench {

struct SequenceShard {
  at::Tensor local;         // this rank's rows along the sharded dim: ceil(S / P) of them
  int64_t full_length = 0;  // S, before padding
  int64_t padding =
      0;  // rows appended (zeros) to make S a multiple of P; they sit on the last ranks
};

// x: [..., S, ...] sharded along `dim` into P equal contiguous pieces, padded with zeros at the
// end of the sequence when P does not divide S. Rank r gets rows [r * S/P, (r + 1) * S/P).
SequenceShard shard_sequence(const at::Tensor& x, int64_t dim, int rank, int world);

// The key mask of this rank's shard of a length-S sequence: [B, ceil(S / P)] bool, false on the
// padding rows so padded keys never receive attention. key_mask: [B, S] or undefined (all valid);
// the result is undefined when there is neither a mask nor padding (the unmasked fast path).
at::Tensor shard_key_mask(const at::Tensor& key_mask, int64_t batch, int64_t length, int rank,
                          int world, const at::Device& device);

// The key mask of a joint local sequence [first, second] (e.g. [image shard, text shard]):
// [B, len_first + len_second] bool, undefined when both parts are undefined (all valid).
at::Tensor concat_key_masks(const at::Tensor& first, int64_t len_first, const at::Tensor& second,
                            int64_t len_second, int64_t batch, const at::Device& device);

// Inverse of shard_sequence over `comm` (the sequence group, shards in rank order): all-gathers
// the shards along `dim` and drops the padding. local: [..., S/P, ...] -> [..., full_length, ...].
at::Tensor gather_sequence(const at::Tensor& local, int64_t dim, int64_t full_length,
                           Communicator& comm);

// CFG parallelism (degree 2 only): a CFG batch [2b, ...] is [uncond; cond]; rank 0 of cfg_comm
// takes the uncond half, rank 1 the cond half.
at::Tensor cfg_split(const at::Tensor& batch, const Communicator& cfg_comm);
// Every per-sample tensor of the inputs split alike (undefined ones stay undefined).
TransformerInputs cfg_split(const TransformerInputs& inputs, const Communicator& cfg_comm);
// Inverse: all-gathers the halves back into [uncond; cond]. branch: [b, ...] -> [2b, ...].
at::Tensor cfg_gather(const at::Tensor& branch, Communicator& cfg_comm);

}  // namespace ditbench
