#include "optimizations/attention/attention.h"

#include <algorithm>

#include "models/common/error.h"
#include "models/common/flop_count.h"
#include "optimizations/attention/backends.h"
#include "optimizations/attention/kernel_log.h"

namespace ditbench {

AttentionSettings& attention_settings() {
  thread_local AttentionSettings settings;
  return settings;
}

AttentionScope::AttentionScope(AttentionSettings settings) : saved_(attention_settings()) {
  attention_settings() = std::move(settings);
}
AttentionScope::~AttentionScope() { attention_settings() = saved_; }

namespace {

// This thread's attention log, and the entry the last call noted (kernel names attach to it).
thread_local std::vector<AttentionServed> attention_log;
thread_local int64_t last_noted = -1;

}  // namespace

void note_attention_served(const std::string& backend, const std::string& op) {
  for (size_t i = 0; i < attention_log.size(); ++i) {
    if (attention_log[i].backend == backend && attention_log[i].op == op) {
      ++attention_log[i].calls;
      last_noted = static_cast<int64_t>(i);
      return;
    }
  }
  attention_log.push_back({backend, op, 1, {}});
  last_noted = static_cast<int64_t>(attention_log.size()) - 1;
}

std::vector<AttentionServed> take_attention_log() {
  std::vector<AttentionServed> log;
  log.swap(attention_log);
  last_noted = -1;
  return log;
}

std::vector<std::string> take_kernel_log() {
  std::vector<std::string> flat;
  for (const auto& served : take_attention_log()) {
    if (served.kernels.empty()) {
      flat.push_back(served.backend + ": " + served.op);
      continue;
    }
    for (const auto& kernel : served.kernels) {
      if (std::find(flat.begin(), flat.end(), kernel) == flat.end()) flat.push_back(kernel);
    }
  }
  return flat;
}

LocalAttentionResult local_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const at::Tensor& key_mask, bool need_lse) {
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) {
    throw InputError("attention: q, k, v must be [B, H, S, D], got q " + c10::str(q.sizes()) +
                     ", k " + c10::str(k.sizes()) + ", v " + c10::str(v.sizes()));
  }
  if (key_mask.defined() &&
      (key_mask.dim() != 2 || key_mask.size(0) != k.size(0) || key_mask.size(1) != k.size(2))) {
    throw InputError("attention: key_mask must be [B, Sk] = [" + std::to_string(k.size(0)) + ", " +
                     std::to_string(k.size(2)) + "], got " + c10::str(key_mask.sizes()));
  }
  const auto& settings = attention_settings();
  const auto& backend = attention_backend(settings.backend);
  const auto check =
      check_backend(settings.backend, q.device(), q.scalar_type(), q.size(-1), key_mask.defined());
  if (!check.ok) throw Unsupported(check.reason);
  count_attention_flops(q.size(0), q.size(1), q.size(2), k.size(2), q.size(3));
  if (!settings.collect_kernel_names || !q.is_cuda() || !KernelNameCollector::available()) {
    return backend.run(q, k, v, key_mask, need_lse);
  }
  KernelNameCollector collector;
  auto result = backend.run(q, k, v, key_mask, need_lse);
  if (last_noted >= 0) {
    auto& kernels = attention_log[last_noted].kernels;
    for (auto& name : collector.take()) {
      if (std::find(kernels.begin(), kernels.end(), name) == kernels.end()) kernels.push_back(name);
    }
  }
  return result;
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
  count_attention_flops(q.size(0), q.size(1), q.size(2), k.size(2), q.size(3));
  return at::scaled_dot_product_attention(q, k, v, mask.to(at::kBool));
}

}  // namespace ditbench
