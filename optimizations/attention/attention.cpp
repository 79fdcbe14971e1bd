#include "optimizations/attention/attention.h"

namespace ditbench {

at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& key_mask) {
  if (!key_mask.defined()) return at::scaled_dot_product_attention(q, k, v);
  // [B, Sk] -> [B, 1, 1, Sk], broadcast over heads and queries.
  auto mask = key_mask.to(at::kBool).unsqueeze(1).unsqueeze(1);
  return at::scaled_dot_product_attention(q, k, v, mask);
}

at::Tensor attend_with_mask(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& mask) {
  return at::scaled_dot_product_attention(q, k, v, mask.to(at::kBool));
}

}  // namespace ditbench
