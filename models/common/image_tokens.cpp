#include "models/common/image_tokens.h"

#include <algorithm>

#include "optimizations/parallel/communicator.h"
#include "optimizations/parallel/sequence_shard.h"

namespace ditbench {

at::Tensor ImageTokenState::shard_image(BlockState& s, at::Tensor& rope_cos, at::Tensor& rope_sin,
                                        Communicator& group) {
  const int world = group.size(), rank = group.rank();
  const int64_t batch = s.hidden.size(0), n = s.hidden.size(1);
  sequence_group = &group;
  s.hidden = shard_sequence(s.hidden, 1, rank, world).local;  // [B, N/P, D]
  if (rope_cos.defined()) {
    rope_cos = shard_sequence(rope_cos, 0, rank, world).local;  // [N/P, ...]
    rope_sin = shard_sequence(rope_sin, 0, rank, world).local;
  }
  const int64_t n_local = s.hidden.size(1);
  s.hidden_valid_rows = std::clamp<int64_t>(n - rank * n_local, 0, n_local);
  return shard_key_mask({}, batch, n, rank, world, s.hidden.device());  // [B, N/P]
}

at::Tensor ImageTokenState::gather_image(const at::Tensor& x) const {
  return sequence_group ? gather_sequence(x, 1, num_image_tokens, *sequence_group) : x;
}

}  // namespace ditbench
