#pragma once
// The one attention call site of every model. q, k, v are [B, H, S, D]; the active backend and
// the context-parallel wrapper (if any) live behind it and are chosen per thread (one thread per
// rank), so models never name a kernel.
#include <ATen/ATen.h>

namespace ditbench {

// Joint attention over the (possibly sharded) sequence.
// q: [B, H, Sq, D], k/v: [B, H, Sk, D], key_mask: [B, Sk] bool, true = may attend, or undefined.
// Returns [B, H, Sq, D] in q's dtype.
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& key_mask = {});

// Attention with a full boolean mask [B, 1 or H, Sq, Sk] (true = may attend), always on the local
// rank and never sharded: small text-only attentions such as HunyuanVideo's token refiner.
at::Tensor attend_with_mask(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& mask);

}  // namespace ditbench
