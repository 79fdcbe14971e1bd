#pragma once
// The one attention call site of every model. q, k, v are [B, H, S, D]; the active backend and
// the context-parallel wrapper (if any) live behind it and are chosen per thread (one thread per
// rank), so models never name a kernel.
#include <ATen/ATen.h>

#include <functional>
#include <string>
#include <tuple>
#include <vector>

namespace ditbench {

// Attention on the local rank with a key mask. Returns the output [B, H, Sq, D] and, when asked
// for, the log-sum-exp of the scores per query [B, H, Sq] in float32 (ring attention merges
// partial results with it). key_mask: [B, Sk] bool (true = may attend) or undefined.
struct LocalAttentionResult {
  at::Tensor out;
  at::Tensor lse;  // undefined unless requested
};
using LocalAttentionFn = std::function<LocalAttentionResult(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_mask,
    bool need_lse)>;

// A context-parallel strategy (Ulysses, ring, USP) wrapped around the local attention. q, k, v and
// key_mask are this rank's shard of the sequence.
class ContextParallelAttention {
 public:
  virtual ~ContextParallelAttention() = default;
  virtual at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& key_mask, const LocalAttentionFn& local) = 0;
};

// Per-thread attention settings: the backend by registry name ("sdpa", "math", ...), the
// context-parallel wrapper (not owned; null on one rank), and the kernels that served calls.
struct AttentionSettings {
  std::string backend = "sdpa";
  ContextParallelAttention* context_parallel = nullptr;
  // Collect the GPU kernel names of each call (CUPTI builds only; costs a host callback per
  // launch, so runners turn it on for a warmup run, not for timed ones).
  bool collect_kernel_names = false;
};
AttentionSettings& attention_settings();  // this thread's settings

// Installs settings for the current thread and restores the previous ones on destruction.
class AttentionScope {
 public:
  explicit AttentionScope(AttentionSettings settings);
  ~AttentionScope();
  AttentionScope(const AttentionScope&) = delete;
  AttentionScope& operator=(const AttentionScope&) = delete;

 private:
  AttentionSettings saved_;
};

// Joint attention over the (possibly sharded) sequence.
// q: [B, H, Sq, D], k/v: [B, H, Sk, D], key_mask: [B, Sk] bool, true = may attend, or undefined.
// Returns [B, H, Sq, D] in q's dtype.
at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& key_mask = {});

// Attention with a full boolean mask [B, 1 or H, Sq, Sk] (true = may attend), always on the local
// rank and never sharded: small text-only attentions such as HunyuanVideo's token refiner.
at::Tensor attend_with_mask(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& mask);

// The local attention of the current thread's backend (what `attend` runs on one rank).
LocalAttentionResult local_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const at::Tensor& key_mask, bool need_lse);

// What served this thread's attention calls since the last take: one entry per distinct
// (backend, op) in first-seen order.
struct AttentionServed {
  std::string backend;  // registry name ("flash")
  std::string op;       // the ATen op that ran ("aten::_scaled_dot_product_flash_attention")
  int64_t calls = 0;
  std::vector<std::string> kernels;  // distinct GPU kernel names, when collected
};
std::vector<AttentionServed> take_attention_log();

// The same log flattened for record.attention.kernels: the kernel names where they were
// collected, else "<backend>: <op>" per entry. Clears the log.
std::vector<std::string> take_kernel_log();

// Backends call this once per call with the op that actually ran.
void note_attention_served(const std::string& backend, const std::string& op);

}  // namespace ditbench
