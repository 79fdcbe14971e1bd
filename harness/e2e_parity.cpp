#include "harness/e2e_parity.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "harness/generate.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/pipeline.h"
#include "optimizations/cache/cache_policy.h"

#include <optional>

namespace ditbench {
namespace fs = std::filesystem;

namespace {

double relative_error(const at::Tensor& out, const at::Tensor& ref) {
  auto o = out.to(at::kCPU, at::kDouble), r = ref.to(at::kCPU, at::kDouble);
  return (o - r).norm().item<double>() / r.norm().item<double>();
}

template <typename T>
T get(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) throw InputError(where + ": missing \"" + key + "\"");
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw InputError(where + "/" + key + ": wrong type");
  }
}

// The stored final latents of a cached run: "<policy>.<threshold>.latents", the threshold as
// Python prints it; matched numerically so that 0.1 and 0.10 agree.
at::Tensor cached_latents(const std::map<std::string, at::Tensor>& tensors,
                          const std::string& policy, double threshold, const std::string& file) {
  const std::string prefix = policy + ".", suffix = ".latents";
  for (const auto& [name, t] : tensors) {
    if (name.rfind(prefix, 0) != 0 || name.size() <= prefix.size() + suffix.size()) continue;
    if (name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    auto thr = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    char* end = nullptr;
    double v = std::strtod(thr.c_str(), &end);
    if (end && *end == '\0' &&
        std::abs(v - threshold) <= 1e-12 * std::max(1.0, std::abs(threshold))) {
      return t;
    }
  }
  throw InputError(file + ": no tensor '" + policy + "." + std::to_string(threshold) + ".latents'");
}

}  // namespace

E2eParityReport run_e2e_parity(const std::string& refdir, const std::string& checkpoint,
                               const E2eTolerances& tol) {
  const auto expected_file = (fs::path(refdir) / "expected.json").string();
  std::ifstream in(expected_file);
  if (!in) throw InputError(expected_file + ": cannot be read");
  nlohmann::json expected;
  try {
    expected = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(expected_file + ": not valid JSON (" + e.what() + ")");
  }
  if (!expected.contains("runs") || !expected["runs"].is_array()) {
    throw InputError(expected_file + ": /runs must be an array");
  }

  E2eParityReport report;
  report.pass = true;
  report.json = {{"refdir", refdir}, {"checkpoint", checkpoint}, {"runs", nlohmann::json::array()}};
  const auto& runs = expected["runs"];
  for (size_t r = 0; r < runs.size(); ++r) {
    const auto& run = runs[r];
    const std::string where = expected_file + ": /runs/" + std::to_string(r);
    const auto name = get<std::string>(run, "run", where);
    const auto cls = get<int>(run, "class", where);
    const auto seed = get<int64_t>(run, "seed", where);
    const auto steps = get<int>(run, "steps", where);
    const auto run_file = (fs::path(refdir) / (name + ".safetensors")).string();
    auto tensors = load_safetensors(run_file);
    auto ref_frames =
        tensors.count("baseline.frames") ? tensors.at("baseline.frames") : at::Tensor();
    if (!ref_frames.defined() || ref_frames.dim() != 4) {
      throw InputError(run_file + ": tensor 'baseline.frames' [F, H, W, 3] missing");
    }

    PipelineSpec spec;
    spec.model = "hunyuan-video";
    spec.checkpoint = checkpoint;
    spec.dtype = at::kFloat;
    spec.device = at::kCPU;
    spec.frames = ref_frames.size(0);
    spec.height = ref_frames.size(1);
    spec.width = ref_frames.size(2);
    spec.steps = steps;
    spec.guidance = run.value("guidance", 6.0);
    spec.prompt_file =
        (fs::path(checkpoint) / ("prompt_" + std::to_string(cls) + ".safetensors")).string();
    spec.noise_file = run_file;
    auto pipeline = create_pipeline(spec);
    StageTimer timer(at::kCPU);
    GenerationSettings gen;
    gen.seed = seed;
    gen.steps = steps;

    nlohmann::json run_json = {{"run", name}};
    // Baseline.
    {
      std::vector<std::unique_ptr<CachePolicy>> caches;
      caches.push_back(make_cache_policy("none", {}));
      auto g = generate(*pipeline, caches, timer, gen);
      double lat = relative_error(g.latents, tensors.at("baseline.latents"));
      double fr = relative_error(g.frames, ref_frames);
      bool ok = lat <= tol.baseline && fr <= tol.baseline;
      report.pass = report.pass && ok;
      run_json["baseline"] = {{"latents_rel_error", lat}, {"frames_rel_error", fr}, {"pass", ok}};
    }
    // Cached configs.
    run_json["configs"] = nlohmann::json::array();
    const auto& configs = run.at("configs");
    for (size_t c = 0; c < configs.size(); ++c) {
      const auto& cfg = configs[c];
      const std::string cw = where + "/configs/" + std::to_string(c);
      const auto policy = get<std::string>(cfg, "policy", cw);
      const auto threshold = get<double>(cfg, "threshold", cw);
      CacheOptions options;
      options.threshold = threshold;
      options.teacache_coefficients = pipeline->teacache_coefficients();
      std::vector<std::unique_ptr<CachePolicy>> caches;
      caches.push_back(make_cache_policy(policy, options));
      auto g = generate(*pipeline, caches, timer, gen);

      const auto& ref_steps = cfg.at("per_step");
      const auto& ours = caches[0]->records();
      const auto coefficients = parse_teacache_coefficients(options.teacache_coefficients);
      std::vector<int> mismatched, borderline;
      double max_signal_rel = 0;
      for (size_t i = 0; i < ref_steps.size() && i < ours.size(); ++i) {
        const bool ref_reused = ref_steps[i].at("reused").get<bool>();
        const auto& sig = ref_steps[i].at("signal");
        if (!sig.is_null() && ours[i].signal) {
          double rs = sig.get<double>();
          max_signal_rel = std::max(max_signal_rel,
                                    std::abs(*ours[i].signal - rs) / std::max(std::abs(rs), 1e-30));
        }
        if (ref_reused == ours[i].reused) continue;
        // The quantity the reference compared with the threshold: FBCache's signal; TeaCache's
        // accumulated distance before the step's reset (recorded when it reused, else the
        // previous step's accumulated distance plus the rescaled signal).
        std::optional<double> basis;
        if (policy == "teacache") {
          if (ref_reused) {
            basis = ref_steps[i].at("accumulated").get<double>();
          } else if (i > 0 && !sig.is_null()) {
            const double x = sig.get<double>();
            double poly = 0;
            for (double k : coefficients) poly = poly * x + k;
            basis = ref_steps[i - 1].value("accumulated", 0.0) + poly;
          }
        } else if (!sig.is_null()) {
          basis = sig.get<double>();
        }
        const bool near = basis && std::abs(*basis - threshold) <= tol.borderline * threshold;
        (near ? borderline : mismatched).push_back(static_cast<int>(i));
      }
      const bool counts_ok = ref_steps.size() == ours.size();
      const bool decisions_equal = counts_ok && mismatched.empty() && borderline.empty();
      double lat = relative_error(g.latents, cached_latents(tensors, policy, threshold, run_file));
      bool ok = counts_ok && mismatched.empty() && (!decisions_equal || lat <= tol.cached_latents);
      report.pass = report.pass && ok;
      run_json["configs"].push_back({{"policy", policy},
                                     {"threshold", threshold},
                                     {"reused_reference", cfg.value("reused", -1)},
                                     {"reused", caches[0]->reused_steps()},
                                     {"decisions_equal", decisions_equal},
                                     {"mismatched_steps", mismatched},
                                     {"borderline_steps", borderline},
                                     {"max_signal_rel_diff", max_signal_rel},
                                     {"latents_rel_error", lat},
                                     {"pass", ok}});
    }
    report.json["runs"].push_back(run_json);
  }
  report.json["pass"] = report.pass;
  return report;
}

}  // namespace ditbench
