#pragma once
// Helpers for dual-stream transformers whose single-stream blocks run on one joint sequence and
// expose the image and text streams as views of it (HunyuanVideo [image, text], FLUX [text,
// image]).
#include <ATen/ATen.h>

#include <cstdint>

namespace ditbench {

// The joint tensor [first, second] along dim 1: `joint` itself while `first` and `second` are
// still its two consecutive views (no copy), else their concatenation (the first single-stream
// block, or a cache replaced a stream).
at::Tensor joint_of(const at::Tensor& joint, const at::Tensor& first, const at::Tensor& second);

// Rows [0, valid_rows) of a [B, N, D] stream along dim 1, or all of them when valid_rows < 0
// (BlockState::hidden_valid_rows: context-parallel padding rows are left out).
at::Tensor real_rows(const at::Tensor& stream, int64_t valid_rows);

}  // namespace ditbench
