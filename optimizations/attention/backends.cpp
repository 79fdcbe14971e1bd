#include "optimizations/attention/backends.h"

#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "models/common/error.h"
#include "optimizations/attention/cudnn_fp8.h"
#include "optimizations/attention/cutlass_fmha.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/native/transformers/cuda/sdp_utils.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/util/Exception.h>
#endif

namespace ditbench {
namespace {

BackendCheck refuse(std::string reason) { return {false, std::move(reason)}; }

BackendCheck needs_cuda(const std::string& backend, const at::Device& device) {
#ifdef DITBENCH_HAS_CUDA
  if (!device.is_cuda()) return refuse(backend + " needs a CUDA device, not " + device.str());
  return {};
#else
  (void)device;
  return refuse(backend + " needs a CUDA build of ditbench");
#endif
}

BackendCheck needs_half_precision(const std::string& backend, at::ScalarType dtype) {
  if (dtype == at::kHalf || dtype == at::kBFloat16) return {};
  return refuse(backend + " takes fp16/bf16, not " + attention_dtype_name(dtype));
}

// The mask as an additive bias in q's dtype (0 where a key may be attended, -inf elsewhere),
// expanded to [B, H, Sq, Sk]. The row is allocated with a length rounded up to 8 elements, as
// ATen's own sdpa does, because the memory-efficient kernel reads the bias in aligned vectors.
at::Tensor additive_key_bias(const at::Tensor& q, const at::Tensor& key_mask) {
  const int64_t batch = key_mask.size(0), keys = key_mask.size(1);
  const int64_t padded = (keys + 7) / 8 * 8;
  auto storage = at::zeros({batch, 1, 1, padded}, q.options());  // [B, 1, 1, Sk rounded up]
  auto bias = storage.narrow(-1, 0, keys);                       // [B, 1, 1, Sk]
  bias.masked_fill_(key_mask.logical_not().view({batch, 1, 1, keys}),
                    -std::numeric_limits<double>::infinity());
  return bias.expand({batch, q.size(1), q.size(2), keys});  // [B, H, Sq, Sk]
}

// Fused kernels return the log-sum-exp padded (efficient: Sq rounded up to 32) or with a
// trailing unit dim (cuDNN: [B, H, Sq, 1]); bring it to [B, H, Sq] float32.
at::Tensor normalize_lse(at::Tensor lse, int64_t queries) {
  if (lse.dim() == 4) lse = lse.squeeze(-1);
  if (lse.size(-1) != queries) lse = lse.narrow(-1, 0, queries);
  return lse.to(at::kFloat);
}

#ifdef DITBENCH_HAS_CUDA
// ATen's own admission check for a fused kernel, on a small probe of the given head dim. With
// debug on it says why it refuses through TORCH_WARN; a thread-local handler captures that.
class CapturedWarnings : public c10::WarningHandler {
 public:
  void process(const c10::Warning& warning) override {
    if (!text.empty()) text += "; ";
    text += warning.msg();
  }
  std::string text;
};

BackendCheck aten_admits(bool (*admits)(const sdp::sdp_params&, bool), const std::string& backend,
                         const at::Device& device, at::ScalarType dtype, int64_t head_dim,
                         bool with_bias) {
  const int64_t probe_tokens = 64;
  auto options = at::TensorOptions().device(device).dtype(dtype);
  auto q = at::empty({1, 1, probe_tokens, head_dim}, options);  // [B, H, S, D]
  std::optional<at::Tensor> bias;
  if (with_bias) bias = at::zeros({1, 1, probe_tokens, probe_tokens}, options);
  sdp::sdp_params params{q, q, q, bias, 0.0, false, false};
  CapturedWarnings warnings;
  bool ok = false;
  {
    c10::WarningUtils::WarningHandlerGuard guard(&warnings);
    ok = admits(params, true);
  }
  if (ok) return {};
  return refuse(backend + " refused by ATen: " +
                (warnings.text.empty() ? std::string("no reason given") : warnings.text));
}
#endif

// ---- the backends ----

class MathBackend : public AttentionBackend {
 public:
  const std::string& name() const override { return name_; }
  BackendCheck can_serve(const at::Device&, at::ScalarType dtype, int64_t, bool) const override {
    if (!at::isFloatingType(dtype))
      return refuse("math takes floating point, not " + attention_dtype_name(dtype));
    return {};
  }
  LocalAttentionResult run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& key_mask, bool need_lse) const override {
    note_attention_served(name_, "ditbench float32 softmax (matmul, logsumexp, exp, matmul)");
    return math_attention(q, k, v, key_mask, need_lse);
  }

 private:
  std::string name_ = "math";
};

class FlashBackend : public AttentionBackend {
 public:
  const std::string& name() const override { return name_; }
  BackendCheck can_serve(const at::Device& device, at::ScalarType dtype, int64_t head_dim,
                         bool) const override {
    if (auto check = needs_cuda(name_, device); !check.ok) return check;
    if (auto check = needs_half_precision(name_, dtype); !check.ok) return check;
    if (head_dim > 256) return refuse("flash: head dim " + std::to_string(head_dim) + " > 256");
    if (head_dim % 8 != 0) {
      return refuse("flash: head dim " + std::to_string(head_dim) + " is not a multiple of 8");
    }
#ifdef DITBENCH_HAS_CUDA
    // The mask never reaches the kernel (keys are selected instead), so admit it unmasked.
    return aten_admits(&sdp::can_use_flash_attention, name_, device, dtype, head_dim, false);
#else
    return {};
#endif
  }
  LocalAttentionResult run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& key_mask, bool need_lse) const override {
    note_attention_served(name_, "aten::_scaled_dot_product_flash_attention");
    return attend_by_key_selection(
        q, k, v, key_mask, need_lse,
        [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, bool need_lse) {
          auto result = at::_scaled_dot_product_flash_attention(q, k, v);
          LocalAttentionResult out{std::get<0>(result), {}};
          if (need_lse) out.lse = normalize_lse(std::get<1>(result), q.size(2));
          return out;
        });
  }

 private:
  std::string name_ = "flash";
};

class EfficientBackend : public AttentionBackend {
 public:
  const std::string& name() const override { return name_; }
  BackendCheck can_serve(const at::Device& device, at::ScalarType dtype, int64_t head_dim,
                         bool has_mask) const override {
    if (auto check = needs_cuda(name_, device); !check.ok) return check;
    if (dtype != at::kHalf && dtype != at::kBFloat16 && dtype != at::kFloat) {
      return refuse(name_ + " takes fp16/bf16/float32, not " + attention_dtype_name(dtype));
    }
#ifdef DITBENCH_HAS_CUDA
    return aten_admits(&sdp::can_use_mem_efficient_attention, name_, device, dtype, head_dim,
                       has_mask);
#else
    (void)head_dim, (void)has_mask;
    return {};
#endif
  }
  LocalAttentionResult run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& key_mask, bool need_lse) const override {
    note_attention_served(name_, "aten::_scaled_dot_product_efficient_attention");
    std::optional<at::Tensor> bias;
    if (key_mask.defined()) bias = additive_key_bias(q, key_mask);
    auto result = at::_scaled_dot_product_efficient_attention(q, k, v, bias, need_lse);
    LocalAttentionResult out{std::get<0>(result), {}};
    if (need_lse) out.lse = normalize_lse(std::get<1>(result), q.size(2));
    return out;
  }

 private:
  std::string name_ = "efficient";
};

class CudnnBackend : public AttentionBackend {
 public:
  const std::string& name() const override { return name_; }
  BackendCheck can_serve(const at::Device& device, at::ScalarType dtype, int64_t head_dim,
                         bool has_mask) const override {
    if (auto check = needs_cuda(name_, device); !check.ok) return check;
    if (auto check = needs_half_precision(name_, dtype); !check.ok) return check;
#ifdef DITBENCH_HAS_CUDA
    return aten_admits(&sdp::can_use_cudnn_attention, name_, device, dtype, head_dim, has_mask);
#else
    (void)head_dim, (void)has_mask;
    return {};
#endif
  }
  LocalAttentionResult run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& key_mask, bool need_lse) const override {
    note_attention_served(name_, "aten::_scaled_dot_product_cudnn_attention");
    // cuDNN takes the mask as an additive bias, as ATen's sdpa hands it over.
    std::optional<at::Tensor> bias;
    if (key_mask.defined()) bias = additive_key_bias(q, key_mask);
    auto result = at::_scaled_dot_product_cudnn_attention(q, k, v, bias, need_lse);
    LocalAttentionResult out{std::get<0>(result), {}};
    if (need_lse) out.lse = normalize_lse(std::get<1>(result), q.size(2));
    return out;
  }

 private:
  std::string name_ = "cudnn";
};

// ATen's own choice. When the log-sum-exp is asked for (ring attention), the public op does not
// return it, so the kernel ATen would choose is called directly instead; the record names it.
class SdpaBackend : public AttentionBackend {
 public:
  const std::string& name() const override { return name_; }
  BackendCheck can_serve(const at::Device&, at::ScalarType dtype, int64_t, bool) const override {
    if (!at::isFloatingType(dtype))
      return refuse("sdpa takes floating point, not " + attention_dtype_name(dtype));
    return {};
  }
  LocalAttentionResult run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& key_mask, bool need_lse) const override {
    std::optional<at::Tensor> mask;  // [B, 1, 1, Sk] bool
    if (key_mask.defined()) mask = key_mask.to(at::kBool).view({key_mask.size(0), 1, 1, -1});
    const auto choice = static_cast<at::SDPBackend>(at::_fused_sdp_choice(q, k, v, mask));
    if (!need_lse) {
      note_attention_served(name_,
                            "aten::scaled_dot_product_attention -> " + choice_name(choice, q));
      return {at::scaled_dot_product_attention(q, k, v, mask), {}};
    }
    switch (choice) {
      case at::SDPBackend::flash_attention:
        if (q.is_cpu()) {
          note_attention_served(name_, "aten::_scaled_dot_product_flash_attention_for_cpu");
          std::optional<at::Tensor> bias;
          if (key_mask.defined()) bias = additive_key_bias(q, key_mask.to(at::kBool));
          auto result = at::_scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, false, bias);
          return {std::get<0>(result), normalize_lse(std::get<1>(result), q.size(2))};
        }
        return attention_backend("flash").run(q, k, v, key_mask, need_lse);
      case at::SDPBackend::efficient_attention:
        return attention_backend("efficient").run(q, k, v, key_mask, need_lse);
      case at::SDPBackend::cudnn_attention:
        return attention_backend("cudnn").run(q, k, v, key_mask, need_lse);
      default:
        return attention_backend("math").run(q, k, v, key_mask, need_lse);
    }
  }

 private:
  static std::string choice_name(at::SDPBackend choice, const at::Tensor& q) {
    switch (choice) {
      case at::SDPBackend::math:
        return "math";
      case at::SDPBackend::flash_attention:
        return q.is_cpu() ? "flash_attention_for_cpu" : "flash_attention";
      case at::SDPBackend::efficient_attention:
        return "efficient_attention";
      case at::SDPBackend::cudnn_attention:
        return "cudnn_attention";
      case at::SDPBackend::overrideable:
        return "overrideable";
      default:
        return "error";
    }
  }
  std::string name_ = "sdpa";
};

struct Registry {
  std::vector<std::string> names;
  std::map<std::string, std::unique_ptr<AttentionBackend>> backends;
  void add(std::unique_ptr<AttentionBackend> backend) {
    names.push_back(backend->name());
    backends.emplace(backend->name(), std::move(backend));
  }
};

const Registry& registry() {
  static const Registry instance = [] {
    Registry r;
    r.add(std::make_unique<MathBackend>());
    r.add(std::make_unique<SdpaBackend>());
    r.add(std::make_unique<FlashBackend>());
    r.add(std::make_unique<EfficientBackend>());
    r.add(std::make_unique<CudnnBackend>());
    r.add(make_cudnn_fp8_backend());
    r.add(make_cutlass_fmha_backend());
    return r;
  }();
  return instance;
}

}  // namespace

at::Tensor dense_like(const at::Tensor& x, at::ScalarType dtype) {
  const auto options = x.options().dtype(dtype);
  if (x.dim() == 4 && x.size(1) > 1 && x.size(2) > 1 && x.stride(1) < x.stride(2)) {
    return at::empty({x.size(0), x.size(2), x.size(1), x.size(3)}, options).transpose(1, 2);
  }
  return at::empty(x.sizes(), options);
}

std::string attention_dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat:
      return "float32";
    case at::kHalf:
      return "fp16";
    case at::kBFloat16:
      return "bf16";
    case at::kDouble:
      return "float64";
    default:
      return c10::toString(dtype);
  }
}

const std::vector<std::string>& attention_backend_names() { return registry().names; }

const AttentionBackend& attention_backend(const std::string& name) {
  const auto& r = registry();
  auto it = r.backends.find(name);
  if (it == r.backends.end()) {
    std::string known;
    for (const auto& n : r.names) known += (known.empty() ? "" : ", ") + n;
    throw InputError("unknown attention backend '" + name + "' (known: " + known + ")");
  }
  return *it->second;
}

BackendCheck check_backend(const std::string& name, const at::Device& device, at::ScalarType dtype,
                           int64_t head_dim, bool has_mask) {
  const auto& backend = attention_backend(name);
  // The answer is fixed for a process (ATen's checks read the device and global flags only), and
  // every attention call asks, so it is remembered per thread.
  using Key = std::tuple<std::string, std::string, int, int64_t, bool>;
  thread_local std::map<Key, BackendCheck> answers;
  Key key{name, device.str(), static_cast<int>(dtype), head_dim, has_mask};
  auto it = answers.find(key);
  if (it == answers.end()) {
    it = answers.emplace(key, backend.can_serve(device, dtype, head_dim, has_mask)).first;
  }
  return it->second;
}

LocalAttentionResult math_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& key_mask, bool need_lse,
                                    int64_t max_scores_per_chunk) {
  const int64_t batch = q.size(0), heads = q.size(1), queries = q.size(2), keys = k.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  auto k_t = k.to(at::kFloat).transpose(-2, -1);  // [B, H, D, Sk]
  auto v_f = v.to(at::kFloat);                    // [B, H, Sk, D]
  at::Tensor masked_out;                          // [B, 1, 1, Sk] bool, true = masked out
  if (key_mask.defined())
    masked_out = key_mask.to(at::kBool).logical_not().view({batch, 1, 1, keys});
  const int64_t chunk =
      std::max<int64_t>(1, max_scores_per_chunk / std::max<int64_t>(1, batch * heads * keys));
  std::vector<at::Tensor> outs, lses;
  for (int64_t start = 0; start < queries; start += chunk) {
    const int64_t n = std::min(chunk, queries - start);
    auto scores = at::matmul(q.narrow(2, start, n).to(at::kFloat), k_t).mul_(scale);  // [B,H,n,Sk]
    if (masked_out.defined())
      scores.masked_fill_(masked_out, -std::numeric_limits<float>::infinity());
    auto lse = at::logsumexp(scores, -1);  // [B, H, n]
    // A query with no key to attend gets zeros (exp(-inf - 0)) and keeps lse = -inf.
    auto finite_lse = at::where(at::isinf(lse), at::zeros_like(lse), lse);
    auto probs = scores.sub_(finite_lse.unsqueeze(-1)).exp_();   // [B, H, n, Sk]
    outs.push_back(at::matmul(probs, v_f).to(q.scalar_type()));  // [B, H, n, D]
    if (need_lse) lses.push_back(lse);
  }
  LocalAttentionResult result{outs.size() == 1 ? outs[0] : at::cat(outs, 2), {}};
  if (need_lse) result.lse = lses.size() == 1 ? lses[0] : at::cat(lses, 2);
  return result;
}

LocalAttentionResult attend_by_key_selection(const at::Tensor& q, const at::Tensor& k,
                                             const at::Tensor& v, const at::Tensor& key_mask,
                                             bool need_lse, const UnmaskedAttentionFn& kernel) {
  if (!key_mask.defined()) return kernel(q, k, v, need_lse);
#ifdef DITBENCH_HAS_CUDA
  // The selection's size is read on the host: a sync that would end a CUDA graph capture.
  if (q.is_cuda() &&
      c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None) {
    throw Unsupported(
        "a key mask is served by selecting the valid keys, which reads their count on the host "
        "and cannot be captured into a CUDA graph; a backend that takes the mask (sdpa, "
        "efficient, cudnn) can");
  }
#endif
  auto mask = key_mask.to(at::kBool);  // [B, Sk]
  // Runs the kernel on the keys one mask row selects; q, k, v share that row.
  auto on_selected_keys = [&](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const at::Tensor& row) -> LocalAttentionResult {
    auto index = row.nonzero().squeeze(1);  // [Sv]
    if (index.numel() == row.numel()) return kernel(q, k, v, need_lse);
    if (index.numel() == 0) {
      LocalAttentionResult empty{at::zeros_like(q), {}};
      if (need_lse) {
        empty.lse =
            at::full({q.size(0), q.size(1), q.size(2)}, -std::numeric_limits<float>::infinity(),
                     q.options().dtype(at::kFloat));
      }
      return empty;
    }
    return kernel(q, k.index_select(2, index), v.index_select(2, index), need_lse);
  };
  const int64_t batch = q.size(0);
  if (batch == 1 || mask.eq(mask.narrow(0, 0, 1)).all().item<bool>()) {
    return on_selected_keys(q, k, v, mask[0]);
  }
  std::vector<at::Tensor> outs, lses;
  for (int64_t b = 0; b < batch; ++b) {
    auto part = on_selected_keys(q.narrow(0, b, 1), k.narrow(0, b, 1), v.narrow(0, b, 1), mask[b]);
    outs.push_back(part.out);
    if (need_lse) lses.push_back(part.lse);
  }
  LocalAttentionResult result{at::cat(outs, 0), {}};
  if (need_lse) result.lse = at::cat(lses, 0);
  return result;
}

}  // namespace ditbench
