#pragma once
// One-pass merge of partial attention results over disjoint key blocks (ring attention's rounds)
// by their log-sum-exps, replacing the float32 ATen fold (several full-size temporaries per
// round) with one read of every part and one write of the result.
#include <ATen/ATen.h>

#include <utility>
#include <vector>

namespace ditbench {

// outs[i]: [B, H, S, D] with unit stride over D, all of one dtype (float32, float16 or bfloat16)
// and shape; lses[i]: [B, H, S] float32; all on one CUDA device, at most 16 parts. Returns {out
// [B, H, S, D] in the parts' dtype and outs[0]'s layout, lse [B, H, S] float32}, equal to folding
// the parts in float32 (merge_attention) up to the order of the sums, rounded once; both undefined
// when the kernel does not serve these tensors (CPU, no CUDA build, fused kernels switched off).
// With `into` (the parts' shape, dtype and device, unit stride over D, any other strides) the
// result is written there and `into` returned as out.
std::pair<at::Tensor, at::Tensor> try_merge_attention_parts(const std::vector<at::Tensor>& outs,
                                                            const std::vector<at::Tensor>& lses,
                                                            const at::Tensor& into = {});

}  // namespace ditbench
