#include "optimizations/cache/cache_policy.h"

#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>

#include "models/common/error.h"
#include "optimizations/cache/first_block_cache.h"
#include "optimizations/cache/teacache.h"

namespace ditbench {

CachePolicy::~CachePolicy() = default;

int CachePolicy::computed_steps() const {
  return static_cast<int>(records_.size()) - reused_steps();
}

int CachePolicy::reused_steps() const { return total_reused_; }

void CachePolicy::begin_step(int step, int num_steps) {
  if (num_steps <= 0 || step < 0 || step >= num_steps) {
    throw std::invalid_argument(name() + ": step " + std::to_string(step) + " outside [0, " +
                                std::to_string(num_steps) + ")");
  }
  if (step == 0) reset();
}

namespace {

// mean difference / mean reference from relative_l1_sums; null when not finite.
std::optional<double> ratio_from_sums(const at::Tensor& sums) {
  const at::Tensor host = sums.cpu();
  const auto s = host.accessor<double, 1>();
  const double rel = (s[0] / s[2]) / (s[1] / s[2]);
  if (!std::isfinite(rel)) return std::nullopt;
  return rel;
}

}  // namespace

at::Tensor CachePolicy::relative_l1_sums(const at::Tensor& ref, const at::Tensor& cur) const {
  // The difference is formed in the tensors' dtype like the references. The sums accumulate in
  // float32 (float64 for float64 tensors): reducing half-precision input straight into float64
  // would first materialize a float64 copy of a whole hidden state on the GPU.
  const at::ScalarType accumulate = ref.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  // sums: [3] float64 = sum|cur - ref|, sum|ref|, element count, on the tensors' device so a GPU
  // communicator can reduce it.
  at::Tensor sums = at::stack(
      {(cur - ref).abs().sum(accumulate).to(at::kDouble), ref.abs().sum(accumulate).to(at::kDouble),
       at::scalar_tensor(static_cast<double>(ref.numel()), ref.options().dtype(at::kDouble))});
  if (all_reduce_) all_reduce_(sums);
  return sums;
}

std::optional<double> CachePolicy::relative_l1(const at::Tensor& ref, const at::Tensor& cur) const {
  const at::Tensor sums = relative_l1_sums(ref, cur);
  if (wait_for_reduce_) wait_for_reduce_();
  return ratio_from_sums(sums);
}

const std::vector<CacheStepRecord>& CachePolicy::records() const {
  if (!pending_output_changes_.empty() && wait_for_reduce_) wait_for_reduce_();
  for (const auto& [index, sums] : pending_output_changes_)
    records_[index].output_change = ratio_from_sums(sums);
  pending_output_changes_.clear();
  return records_;
}

bool CachePolicy::caps_allow_reuse() const {
  if (options_.max_cached_steps >= 0 && total_reused_ >= options_.max_cached_steps) return false;
  if (options_.max_consecutive_cached >= 0 &&
      consecutive_reused_ >= options_.max_consecutive_cached) {
    return false;
  }
  return true;
}

at::Tensor CachePolicy::finish_step(const CacheStepRecord& r, at::Tensor output) {
  if (r.reused) {
    ++total_reused_;
    ++consecutive_reused_;
    // A reused step's output is an approximation: it starts no pair of computed outputs.
    previous_output_ = at::Tensor();
  } else {
    consecutive_reused_ = 0;
    const bool follows_computed_step = previous_output_.defined() && !records_.empty() &&
                                       records_.back().step == r.step - 1 &&
                                       previous_output_.sizes() == output.sizes();
    if (follows_computed_step)
      pending_output_changes_.emplace_back(records_.size(),
                                           relative_l1_sums(previous_output_, output));
    previous_output_ = output;
  }
  records_.push_back(r);
  return output;
}

void CachePolicy::clear_records() {
  records_.clear();
  pending_output_changes_.clear();
  previous_output_ = at::Tensor();
  total_reused_ = 0;
  consecutive_reused_ = 0;
}

namespace {

// The uncached forward pass, recorded so every run reports per-step decisions alike.
class NoCache : public CachePolicy {
 public:
  explicit NoCache(CacheOptions options) : CachePolicy(std::move(options)) {}
  std::string name() const override { return "none"; }
  at::Tensor forward(BlockTransformer& model, const TransformerInputs& in, int step,
                     int num_steps) override {
    begin_step(step, num_steps);
    CacheStepRecord r;
    r.step = step;
    return finish_step(r, model.forward(in));
  }
  void reset() override { clear_records(); }
};

void validate(const CacheOptions& o) {
  if (!std::isfinite(o.threshold) || o.threshold < 0) {
    throw InputError("cache option threshold: must be a finite number >= 0, got " +
                     std::to_string(o.threshold));
  }
  if (o.warmup_steps < 0) {
    throw InputError("cache option warmup_steps: must be >= 0, got " +
                     std::to_string(o.warmup_steps));
  }
  if (o.max_cached_steps < -1) {
    throw InputError("cache option max_cached_steps: must be >= 0 or -1 (no cap), got " +
                     std::to_string(o.max_cached_steps));
  }
  if (o.max_consecutive_cached < -1) {
    throw InputError("cache option max_consecutive_cached: must be >= 0 or -1 (no cap), got " +
                     std::to_string(o.max_consecutive_cached));
  }
}

std::string joined(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace

const std::vector<std::string>& cache_policy_names() {
  static const std::vector<std::string> names = {"none", "fbcache", "teacache"};
  return names;
}

std::unique_ptr<CachePolicy> make_cache_policy(const std::string& name,
                                               const CacheOptions& options) {
  validate(options);
  if (name == "none") return std::make_unique<NoCache>(options);
  if (name == "fbcache") return std::make_unique<FirstBlockCache>(options);
  if (name == "teacache") return std::make_unique<TeaCache>(options);
  throw InputError("unknown cache policy '" + name + "' (known: " + joined(cache_policy_names()) +
                   ")");
}

const std::map<std::string, std::array<double, 5>>& teacache_coefficient_sets() {
  // ali-vilab/TeaCache's published fits (../shared/specs/caches.md), c0..c4.
  static const std::map<std::string, std::array<double, 5>> sets = {
      {"hunyuan-video",
       {7.33226126e+02, -4.01131952e+02, 6.75869174e+01, -3.14987800e+00, 9.61237896e-02}},
      {"flux", {4.98651651e+02, -2.83781631e+02, 5.58554382e+01, -3.82021401e+00, 2.64230861e-01}},
      {"mochi", {-3.51241319e+03, 8.11675948e+02, -6.09400215e+01, 2.42429681e+00, 3.05291719e-03}},
      {"cogvideox-2b",
       {-3.10658903e+01, 2.54732368e+01, -5.92380459e+00, 1.75769064e+00, -3.61568434e-03}},
      {"cogvideox-5b",
       {-1.53880483e+03, 8.43202495e+02, -1.34363087e+02, 7.97131516e+00, -5.23162339e-02}},
      {"cogvideox1.5-5b",
       {2.50210439e+02, -1.65061612e+02, 3.57804877e+01, -7.81551492e-01, 3.58559703e-02}},
      {"wan2.1-t2v-1.3b",
       {2.39676752e+03, -1.31110545e+03, 2.01331979e+02, -8.29855975e+00, 1.37887774e-01}},
      {"wan2.1-t2v-1.3b-ret",
       {-5.21862437e+04, 9.23041404e+03, -5.28275948e+02, 1.36987616e+01, -4.99875664e-02}},
      {"wan2.1-t2v-14b",
       {-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404}},
      {"wan2.1-t2v-14b-ret",
       {-3.03318725e+05, 4.90537029e+04, -2.65530556e+03, 5.87365115e+01, -3.15583525e-01}},
  };
  return sets;
}

std::array<double, 5> parse_teacache_coefficients(const std::string& spec) {
  const auto& sets = teacache_coefficient_sets();
  if (auto it = sets.find(spec); it != sets.end()) return it->second;
  auto fail = [&]() -> InputError {
    std::vector<std::string> names;
    for (const auto& [n, c] : sets) names.push_back(n);
    return InputError("TeaCache coefficients '" + spec + "': not a known set (" + joined(names) +
                      ") nor five comma-separated numbers c0..c4");
  };
  std::array<double, 5> c{};
  size_t pos = 0;
  for (size_t i = 0; i < c.size(); ++i) {
    const size_t end = spec.find(',', pos);
    if ((end == std::string::npos) != (i + 1 == c.size())) throw fail();
    const std::string item = spec.substr(pos, end == std::string::npos ? end : end - pos);
    size_t used = 0;
    try {
      c[i] = std::stod(item, &used);
    } catch (const std::exception&) {
      throw fail();
    }
    if (item.find_first_not_of(" \t", used) != std::string::npos || !std::isfinite(c[i])) {
      throw fail();
    }
    pos = end + 1;
  }
  return c;
}

std::array<double, 5> fit_teacache_coefficients(const std::vector<double>& rel_input,
                                                const std::vector<double>& rel_output) {
  if (rel_input.size() != rel_output.size()) {
    throw InputError("TeaCache fit: rel_input has " + std::to_string(rel_input.size()) +
                     " values but rel_output has " + std::to_string(rel_output.size()));
  }
  for (size_t i = 0; i < rel_input.size(); ++i) {
    if (!std::isfinite(rel_input[i]) || !std::isfinite(rel_output[i])) {
      throw InputError("TeaCache fit: value " + std::to_string(i) + " is not finite");
    }
  }
  if (std::set<double>(rel_input.begin(), rel_input.end()).size() < 5) {
    throw InputError(
        "TeaCache fit: rel_input needs at least 5 distinct values for a 4th-order fit");
  }
  const auto n = static_cast<int64_t>(rel_input.size());
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  // x, y: [n]
  const at::Tensor x = at::tensor(at::ArrayRef<double>(rel_input), f64);
  const at::Tensor y = at::tensor(at::ArrayRef<double>(rel_output), f64);
  // Vandermonde matrix, highest power first: [n, 5]. Its columns are scaled to unit norm before
  // the least-squares solve (as np.polyfit does): powers of small relative changes differ by
  // orders of magnitude and would otherwise make the system needlessly ill-conditioned.
  const at::Tensor vander = at::stack({x.pow(4), x.pow(3), x.pow(2), x, at::ones_like(x)}, 1);
  const at::Tensor column_norm = vander.square().sum(0).sqrt();  // [5]
  // gelsd (SVD) with np.polyfit's rcond = n·eps.
  const auto solved =
      at::linalg_lstsq(vander / column_norm, y.unsqueeze(1),
                       static_cast<double>(n) * std::numeric_limits<double>::epsilon(), "gelsd");
  const at::Tensor coefficients = std::get<0>(solved).squeeze(1) / column_norm;  // [5]
  std::array<double, 5> c{};
  for (int64_t i = 0; i < 5; ++i) c[i] = coefficients[i].item<double>();
  return c;
}

nlohmann::json cache_record_json(const CachePolicy& policy) {
  const CacheOptions& o = policy.options();
  nlohmann::json per_step = nlohmann::json::array();
  for (const auto& r : policy.records()) {
    nlohmann::json step = {{"step", r.step}, {"signal", nullptr}, {"reused", r.reused}};
    if (r.signal) step["signal"] = *r.signal;
    if (r.accumulated) step["accumulated"] = *r.accumulated;
    if (r.output_change) step["output_change"] = *r.output_change;
    per_step.push_back(std::move(step));
  }
  nlohmann::json j = {{"policy", policy.name()},
                      {"threshold", o.threshold},
                      {"warmup_steps", o.warmup_steps},
                      {"max_cached_steps", o.max_cached_steps},
                      {"max_consecutive_cached", o.max_consecutive_cached},
                      {"computed_steps", policy.computed_steps()},
                      {"reused_steps", policy.reused_steps()},
                      {"per_step", std::move(per_step)}};
  if (policy.name() == "teacache") j["coefficients"] = o.teacache_coefficients;
  return j;
}

}  // namespace ditbench
