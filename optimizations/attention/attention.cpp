#include "optimizations/attention/attention.h"

#include <cmath>

namespace ditbench {

AttentionSettings& attention_settings() {
  thread_local AttentionSettings settings;
  return settings;
}

AttentionScope::AttentionScope(AttentionSettings settings) : saved_(attention_settings()) {
  attention_settings() = std::move(settings);
}
AttentionScope::~AttentionScope() { attention_settings() = saved_; }

LocalAttentionResult local_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const at::Tensor& key_mask, bool need_lse) {
  // Reference path (math in float32 for the log-sum-exp); backends replace this.
  at::Tensor mask;
  if (key_mask.defined()) mask = key_mask.to(at::kBool).unsqueeze(1).unsqueeze(1);  // [B,1,1,Sk]
  if (!need_lse) {
    return {mask.defined() ? at::scaled_dot_product_attention(q, k, v, mask)
                           : at::scaled_dot_product_attention(q, k, v),
            {}};
  }
  auto scores = at::matmul(q.to(at::kFloat), k.to(at::kFloat).transpose(-2, -1)) /
                std::sqrt(static_cast<double>(q.size(-1)));  // [B,H,Sq,Sk]
  if (mask.defined()) scores = scores.masked_fill(mask.logical_not(), -INFINITY);
  auto lse = at::logsumexp(scores, -1);                                      // [B,H,Sq]
  auto out = at::matmul(at::exp(scores - lse.unsqueeze(-1)), v.to(at::kFloat));
  return {out.to(q.scalar_type()), lse};
}

at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& key_mask) {
  auto& settings = attention_settings();
  if (settings.context_parallel) {
    return settings.context_parallel->attend(q, k, v, key_mask, &local_attention);
  }
  return local_attention(q, k, v, key_mask, false).out;
}

at::Tensor attend_with_mask(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& mask) {
  return at::scaled_dot_product_attention(q, k, v, mask.to(at::kBool));
}

}  // namespace ditbench
