#include "optimizations/attention/cutlass_fmha.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "models/common/error.h"
#include "optimizations/kernels/attention_merge.h"
#include "optimizations/kernels/fused.h"
#include "optimizations/kernels/strided_copy.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>

#include <c10/cuda/CUDAGuard.h>
#include "optimizations/kernels/attention_merge_cuda.h"
#endif

namespace ditbench {
namespace {

const std::string& backend_name() {
  static const std::string name = "cutlass_fmha";
  return name;
}

#ifdef DITBENCH_HAS_CUDA
// x [B, H, S, D] as the kernel's operand. A dim of size 1 takes a neighbour's stride: any stride
// reads the same elements, and the kernel wants each one a multiple of 8.
FmhaOperand operand_of(const at::Tensor& x) {
  FmhaOperand o{x.data_ptr(), x.stride(2), x.stride(1), x.stride(0)};
  if (x.size(2) == 1) o.token_stride = x.size(3);
  if (x.size(1) == 1) o.head_stride = o.token_stride;
  if (x.size(0) == 1) o.batch_stride = o.head_stride;
  return o;
}

// x copied into [B, S, H, D] storage (viewed as [B, H, S, D]): strides the kernel reads.
at::Tensor token_major(const at::Tensor& x) { return dense_like(x, x.scalar_type()).copy_(x); }

FmhaProblem problem_of(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const at::Tensor& out, const at::Tensor& lse) {
  FmhaProblem p;
  p.batch = q.size(0), p.heads = q.size(1), p.queries = q.size(2), p.keys = k.size(2);
  p.head_dim = q.size(3);
  p.half = q.scalar_type() == at::kHalf;
  p.q = operand_of(q), p.k = operand_of(k), p.v = operand_of(v);
  const auto o = operand_of(out);
  p.out = out.data_ptr();
  p.out_token_stride = o.token_stride, p.out_head_stride = o.head_stride;
  p.out_batch_stride = o.batch_stride;
  p.lse = lse.data_ptr<float>();
  return p;
}
#endif

constexpr int64_t kTileQueries = 128, kKeyBlock = 128;
constexpr int64_t kMaxTailParts = 16;  // the most parts try_merge_attention_parts merges
#ifdef DITBENCH_HAS_CUDA
static_assert(kMaxTailParts == kMaxMergeParts, "the merge kernel takes every part of a split");
#endif

#ifdef DITBENCH_HAS_CUDA
// The plan for `problem` under `variant` on the current device, unless
// DITBENCH_FMHA_SPLIT_TAIL=0 or the merge kernel is switched off.
FmhaTailSplit default_split(const FmhaProblem& problem, FmhaVariant variant) {
  const char* env = std::getenv("DITBENCH_FMHA_SPLIT_TAIL");
  if ((env != nullptr && std::string(env) == "0") || !fused_kernels_enabled()) return {};
  const auto shape = fmha_sm90_launch_shape(variant);
  return plan_fmha_tail_split(problem.batch, problem.heads, problem.queries, problem.keys,
                              shape.resident, shape.cluster);
}

bool split_fits(const FmhaTailSplit& split, const FmhaProblem& problem) {
  return split.parts > 1 && split.parts <= kMaxTailParts && problem.batch == 1 &&
         split.main_queries > 0 && split.main_queries % kTileQueries == 0 &&
         split.main_queries < problem.queries && problem.keys % split.parts == 0;
}

// Runs `problem` (batch 1, checked) as `split` says: the main queries in one launch into out's
// rows, the rest against each key chunk (a launch of batch `parts`, the rest's queries copied
// once per chunk), merged into out's remaining rows. Returns the lse [1, H, Sq] when asked. The
// rest's few query tiles a head run in `variant`'s one-block form: clusters would pad them.
at::Tensor run_split(const FmhaProblem& problem, const FmhaTailSplit& split, const at::Tensor& q,
                     const at::Tensor& out, bool need_lse, FmhaVariant variant) {
  const auto stream = at::cuda::getCurrentCUDAStream().stream();
  const int64_t heads = problem.heads, main = split.main_queries;
  const int64_t rest = problem.queries - main, parts = split.parts;
  const auto f32 = q.options().dtype(at::kFloat);
  auto main_lse = at::empty({1, heads, main}, f32);
  FmhaProblem first = problem;
  first.queries = main;
  first.lse = main_lse.data_ptr<float>();
  // The rest: `parts` problems of the same queries against consecutive key chunks.
  auto rest_q = at::empty({parts, rest, heads, problem.head_dim}, q.options());  // [P, R, H, D]
  copy_strided(rest_q, q.narrow(2, main, rest).transpose(1, 2).expand({parts, -1, -1, -1}));
  auto rest_out = at::empty_like(rest_q);                // [P, R, H, D]
  auto rest_lse = at::empty({parts, heads, rest}, f32);  // [P, H, R]
  FmhaProblem second = problem;
  second.batch = parts, second.queries = rest, second.keys = problem.keys / parts;
  second.q = operand_of(rest_q.transpose(1, 2));
  second.k.batch_stride = second.keys * problem.k.token_stride;
  second.v.batch_stride = second.keys * problem.v.token_stride;
  second.out = rest_out.data_ptr();
  second.out_token_stride = heads * problem.head_dim, second.out_head_stride = problem.head_dim;
  second.out_batch_stride = rest * heads * problem.head_dim;
  second.lse = rest_lse.data_ptr<float>();
  for (const auto* launch : {&first, &second}) {
    auto why = fmha_sm90_check(*launch);
    const auto kernel = launch == &second ? fmha_sm90_single_block_form(variant) : variant;
    if (why.empty()) why = fmha_sm90_forward(*launch, kernel, stream);
    if (!why.empty()) throw std::runtime_error(backend_name() + " (split tail): " + why);
  }
  std::vector<at::Tensor> outs, lses;
  for (int64_t i = 0; i < parts; ++i) {
    outs.push_back(rest_out.narrow(0, i, 1).transpose(1, 2));  // [1, H, R, D]
    lses.push_back(rest_lse.narrow(0, i, 1));                  // [1, H, R]
  }
  auto merged = try_merge_attention_parts(outs, lses, out.narrow(2, main, rest));
  if (!merged.first.defined()) {
    throw std::runtime_error(backend_name() + ": the merge of the split tail did not run");
  }
  return need_lse ? at::cat({main_lse, merged.second}, 2) : at::Tensor();
}
#endif

// The variant DITBENCH_FMHA_KERNEL names (fmha_variants), none when unset (the default for the
// problem's keys).
std::optional<FmhaVariant> chosen_variant() {
  const char* env = std::getenv("DITBENCH_FMHA_KERNEL");
  if (env == nullptr || *env == 0) return std::nullopt;
  std::string known;
  for (const auto& [variant, name] : fmha_variants()) {
    if (name == env) return variant;
    known += (known.empty() ? "" : ", ") + name;
  }
  throw InputError("DITBENCH_FMHA_KERNEL: unknown FMHA kernel '" + std::string(env) +
                   "' (known: " + known + ")");
}

class CutlassFmhaBackend : public AttentionBackend {
 public:
  const std::string& name() const override { return backend_name(); }
  BackendCheck can_serve(const at::Device& device, at::ScalarType dtype, int64_t head_dim,
                         bool) const override {
#ifdef DITBENCH_HAS_CUDA
    if (!device.is_cuda()) return {false, name() + " needs a CUDA device, not " + device.str()};
    if (dtype != at::kBFloat16)
      return {false, name() + " takes bf16, not " + attention_dtype_name(dtype)};
    if (head_dim != 128) {
      return {false, name() + ": head dim " + std::to_string(head_dim) + " (built for 128)"};
    }
    // A probe on that device: the kernel's own check answers (build, compute capability).
    c10::cuda::CUDAGuard guard(device);
    auto probe = at::empty({1, 1, 8, head_dim}, at::TensorOptions().device(device).dtype(dtype));
    auto lse = at::empty({1, 1, 8}, probe.options().dtype(at::kFloat));
    const auto why = fmha_sm90_check(problem_of(probe, probe, probe, probe, lse));
    if (!why.empty()) return {false, name() + ": " + why};
    return {};
#else
    (void)device, (void)dtype, (void)head_dim;
    return {false, name() + " needs a CUDA build of ditbench"};
#endif
  }
  LocalAttentionResult run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& key_mask, bool need_lse) const override {
    const auto chosen = chosen_variant();
    auto attend = [this, chosen](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 bool need_lse) {
      const auto variant = chosen.value_or(fmha_default_variant(k.size(2)));
      note_attention_served(name(), "ditbench CUTLASS FMHA sm90 (" + variant_name(variant) + ")");
      return cutlass_fmha_attention(q, k, v, need_lse, variant);
    };
    return attend_by_key_selection(q, k, v, key_mask, need_lse, attend);
  }

 private:
  static std::string variant_name(FmhaVariant chosen) {
    for (const auto& [variant, name] : fmha_variants())
      if (variant == chosen) return name;
    return "?";
  }
};

}  // namespace

FmhaTailSplit plan_fmha_tail_split(int64_t batch, int64_t heads, int64_t queries, int64_t keys,
                                   int64_t sms, int64_t cluster) {
  const int64_t query_tiles = (queries + kTileQueries - 1) / kTileQueries;
  const int64_t per_cluster = std::max<int64_t>(cluster, 1);
  // One launch: each head's tiles padded to whole clusters.
  const int64_t tiles = (query_tiles + per_cluster - 1) / per_cluster * per_cluster * heads;
  if (batch != 1 || sms <= 0 || tiles < 4 * sms || tiles % sms == 0) return {};
  auto rounds = [sms](int64_t n) { return static_cast<double>((n + sms - 1) / sms); };
  const double blocks = static_cast<double>(keys) / kKeyBlock;  // a whole tile's key blocks
  // The main launch: the most whole query tiles (of every head, whole clusters of them) within
  // its full rounds.
  const int64_t main_tiles = std::min(query_tiles * heads / sms * sms / heads, query_tiles - 1) /
                             per_cluster * per_cluster;
  if (main_tiles == 0) return {};
  const int64_t rest_tiles = (query_tiles - main_tiles) * heads;
  FmhaTailSplit best;
  double best_cost = rounds(tiles);  // one launch
  for (int64_t parts = 2; parts <= kMaxTailParts; ++parts) {
    if (keys % parts != 0 || keys / parts < 1024) continue;
    const double tile = (blocks / parts + 2) / blocks;  // in whole tiles
    const double cost =
        rounds(main_tiles * heads) + rounds(rest_tiles * parts) * tile + 16 / blocks;
    if (cost < best_cost) best = {main_tiles * kTileQueries, parts}, best_cost = cost;
  }
  return best;
}

LocalAttentionResult cutlass_fmha_attention(const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, bool need_lse,
                                            std::optional<FmhaVariant> chosen,
                                            std::optional<FmhaTailSplit> split) {
  const FmhaVariant variant = chosen.value_or(fmha_default_variant(k.size(2)));
#ifdef DITBENCH_HAS_CUDA
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "cutlass_fmha: q, k, v must be 4-d");
  for (const auto* x : {&q, &k, &v}) {
    if (!x->is_cuda() || x->scalar_type() != at::kBFloat16) {
      throw Unsupported(backend_name() + " takes bf16 CUDA tensors, not " +
                        attention_dtype_name(x->scalar_type()) + " on " + x->device().str());
    }
  }
  const int64_t queries = q.size(2), padded = (queries + 7) / 8 * 8;
  at::Tensor q_in = q;
  if (padded != queries) {  // [B, H, padded, D], the extra queries zero
    q_in = at::zeros({q.size(0), padded, q.size(1), q.size(3)}, q.options()).transpose(1, 2);
    q_in.narrow(2, 0, queries).copy_(q);
  }
  c10::cuda::CUDAGuard guard(q.device());
  auto out = dense_like(q_in, q.scalar_type());  // [B, H, padded, D], token-major storage
  auto lse = at::empty({q.size(0), q.size(1), padded}, q.options().dtype(at::kFloat));
  auto problem = problem_of(q_in, k, v, out, lse);
  at::Tensor k_in = k, v_in = v;
  auto why = fmha_sm90_check(problem);
  if (!why.empty()) {  // a layout the kernel cannot read: token-major copies can be read
    q_in = token_major(q_in), k_in = token_major(k), v_in = token_major(v);
    problem = problem_of(q_in, k_in, v_in, out, lse);
    why = fmha_sm90_check(problem);
    if (!why.empty()) throw Unsupported(backend_name() + ": " + why);
  }
  const auto tail = split ? *split : default_split(problem, variant);
  if (split_fits(tail, problem)) {
    auto split_lse = run_split(problem, tail, q_in, out, need_lse, variant);
    if (need_lse) lse = split_lse;
  } else {
    why = fmha_sm90_forward(problem, variant, at::cuda::getCurrentCUDAStream().stream());
    if (!why.empty()) throw std::runtime_error(backend_name() + ": " + why);
  }
  LocalAttentionResult result{out, {}};
  if (padded != queries) result.out = out.narrow(2, 0, queries);
  if (need_lse) result.lse = padded != queries ? lse.narrow(2, 0, queries) : lse;
  return result;
#else
  (void)q, (void)k, (void)v, (void)need_lse, (void)variant, (void)split;
  throw Unsupported(backend_name() + " needs a CUDA build of ditbench");
#endif
}

std::unique_ptr<AttentionBackend> make_cutlass_fmha_backend() {
  return std::make_unique<CutlassFmhaBackend>();
}

}  // namespace ditbench
