#pragma once
// A tensor seen as rows of contiguous elements at one pitch, the shape a pitched copy (the copy
// engines' cudaMemcpy2D) moves without a gather kernel: a token-major k of a packed projection,
// [B = 1, S, H, D] with token stride 3·H·D, is S rows of H·D elements at pitch 3·H·D.
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace ditbench {

struct TensorRows {
  int64_t rows = 0;
  int64_t row_elements = 0;  // contiguous elements per row
  int64_t pitch = 0;         // elements from one row's start to the next's (>= row_elements)
};

// The rows of t in its logical order (row-major over t's dimensions), or nothing when t is not
// such a layout (a transposed inner block, dimensions that do not merge, overlapping rows).
// A contiguous t is one row.
std::optional<TensorRows> tensor_rows(const at::Tensor& t);

}  // namespace ditbench
