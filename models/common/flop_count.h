#pragma once
// The transformer's arithmetic, counted as it runs: every GEMM of the one Linear type and of its
// fused forms adds 2·M·K·N, every attention call 4·B·H·Sq·Sk·D (Q·Kᵀ and P·V), to the FlopCount
// objects alive on the calling thread. Without one nothing is counted (one thread-local read per
// call). Counting at the call sites, not from the config, gives what actually ran: the valid
// text keys only, a rank's own share under context parallelism, the steps a cache computed.
// Header-only: the Linear type, the attention call site and the harness sit in different
// libraries.
#include <cstdint>

namespace ditbench {

class FlopCount {
 public:
  // nested: the counts also go to the counters that were alive when this one began (the
  // default); isolated: they stop here (the harness keeps a CUDA graph capture's counts, which
  // run nothing, out of the step's and adds them at each replay).
  enum class Scope { nested, isolated };
  explicit FlopCount(Scope scope = Scope::nested) : outer_(current()), scope_(scope) {
    current() = this;
  }
  ~FlopCount() { current() = outer_; }
  FlopCount(const FlopCount&) = delete;
  FlopCount& operator=(const FlopCount&) = delete;

  double gemm() const { return gemm_; }
  double attention() const { return attention_; }
  double total() const { return gemm_ + attention_; }

  // Adds to the innermost counter and, through nested ones, to the outer counters.
  static void add(double gemm, double attention) {
    for (FlopCount* c = current(); c; c = c->scope_ == Scope::nested ? c->outer_ : nullptr) {
      c->gemm_ += gemm;
      c->attention_ += attention;
    }
  }

 private:
  static FlopCount*& current() {
    static thread_local FlopCount* innermost = nullptr;
    return innermost;
  }
  FlopCount* outer_;
  Scope scope_;
  double gemm_ = 0, attention_ = 0;
};

// x [M, K] · Wᵀ [K, N].
inline void count_gemm_flops(int64_t m, int64_t k, int64_t n) {
  FlopCount::add(2.0 * double(m) * double(k) * double(n), 0.0);
}

// A convolution: each of its output values is a dot product over one filter (the patch
// embeddings' stride-equals-kernel convolutions are GEMMs over the patches).
inline void count_conv_flops(int64_t output_numel, int64_t weight_numel, int64_t out_channels) {
  FlopCount::add(2.0 * double(output_numel) * double(weight_numel / out_channels), 0.0);
}

// softmax(Q Kᵀ) V with q [B, H, Sq, D] and k, v [B, H, Sk, D].
inline void count_attention_flops(int64_t b, int64_t h, int64_t sq, int64_t sk, int64_t d) {
  FlopCount::add(0.0, 4.0 * double(b) * double(h) * double(sq) * double(sk) * double(d));
}

}  // namespace ditbench
