#include "models/common/joint_sequence.h"

namespace ditbench {

at::Tensor joint_of(const at::Tensor& joint, const at::Tensor& first, const at::Tensor& second) {
  const int64_t a = first.size(1), b = second.size(1);
  auto is_view = [&](const at::Tensor& t, int64_t start, int64_t len) {
    auto view = joint.narrow(1, start, len);
    return t.data_ptr() == view.data_ptr() && t.sizes() == view.sizes() &&
           t.strides() == view.strides();
  };
  if (joint.defined() && joint.size(1) == a + b && is_view(first, 0, a) && is_view(second, a, b)) {
    return joint;
  }
  return at::cat({first, second}, 1);  // [B, a + b, D]
}

at::Tensor real_rows(const at::Tensor& stream, int64_t valid_rows) {
  return valid_rows >= 0 ? stream.narrow(1, 0, valid_rows) : stream;
}

}  // namespace ditbench
