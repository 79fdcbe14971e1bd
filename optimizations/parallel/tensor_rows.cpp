#include "optimizations/parallel/tensor_rows.h"

namespace ditbench {

std::optional<TensorRows> tensor_rows(const at::Tensor& t) {
  if (t.is_contiguous()) return TensorRows{1, t.numel(), t.numel()};
  // The row: the innermost dimensions that are dense together (size-1 dimensions never matter).
  int64_t d = t.dim() - 1, row = 1;
  while (d >= 0 && (t.size(d) == 1 || t.stride(d) == row)) row *= t.size(d--);
  // The rest must be one run of rows at a single pitch.
  int64_t rows = 1, pitch = 0;
  for (; d >= 0; --d) {
    if (t.size(d) == 1) continue;
    if (pitch == 0) {
      pitch = t.stride(d);
      rows = t.size(d);
    } else if (t.stride(d) == pitch * rows) {
      rows *= t.size(d);
    } else {
      return std::nullopt;
    }
  }
  if (pitch < row) return std::nullopt;
  return TensorRows{rows, row, pitch};
}

}  // namespace ditbench
