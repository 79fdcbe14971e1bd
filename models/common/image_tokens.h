#pragma once
// What the families' transformers share about a BlockState: the image tokens' bookkeeping under
// context parallelism (the shard prepare() keeps, gathered back in finish()) and typed access to
// the model-private BlockState::extra.
#include <ATen/ATen.h>

#include <c10/util/Exception.h>
#include <memory>

#include <cstdint>

#include "models/model.h"

namespace ditbench {

class Communicator;

// The image-token part of a family's private state (the family's state derives from it).
struct ImageTokenState {
  int64_t num_image_tokens = 0;            // N of the whole sequence (finish() gathers back to it)
  Communicator* sequence_group = nullptr;  // the group the sequence is sharded over, or null

  // Context parallelism over `group`: rank r of P keeps rows [r, r + 1) * ceil(N / P) of s.hidden
  // [B, N, D] and of the RoPE tables [N, ...] (undefined tables stay undefined); the last ranks'
  // shards end in zero padding, and s.hidden_valid_rows marks the real rows. Returns the shard's
  // key mask [B, N/P] (false on padding rows) for the attention.
  at::Tensor shard_image(BlockState& s, at::Tensor& rope_cos, at::Tensor& rope_sin,
                         Communicator& group);
  // x: this rank's rows [B, N/P, F] -> every rank's rows in rank order without the padding
  // [B, N, F]; x itself without context parallelism.
  at::Tensor gather_image(const at::Tensor& x) const;
};

// BlockState::extra as the family's State; an error naming the family before prepare() set it.
template <typename State>
State& extra_state(BlockState& s, const char* family) {
  TORCH_CHECK(s.extra, "BlockState has no ", family, " state; call prepare() first");
  return *static_cast<State*>(s.extra.get());
}
template <typename State>
const State& extra_state(const BlockState& s, const char* family) {
  TORCH_CHECK(s.extra, "BlockState has no ", family, " state; call prepare() first");
  return *static_cast<const State*>(s.extra.get());
}

// For graph capture (BlockTransformer::fork_state): s holding the same tensors with a copy of its
// family State, so blocks run on the fork leave s's State as it was.
template <typename State>
BlockState fork_with_state(const BlockState& s, const char* family) {
  BlockState fork = s;
  fork.extra = std::make_shared<State>(extra_state<State>(s, family));
  return fork;
}

}  // namespace ditbench
