#include "harness/e2e_parity.h"

#include <c10/core/InferenceMode.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "harness/generate.h"
#include "metrics/quality.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/common/tensor_io.h"
#include "models/pipeline.h"
#include "optimizations/attention/attention.h"
#include "optimizations/attention/backends.h"
#include "optimizations/cache/cache_policy.h"

namespace ditbench {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

template <typename T>
T get(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) throw InputError(where + ": missing \"" + key + "\"");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    throw InputError(where + "/" + key + ": wrong type");
  }
}

json finite_or_null(double v) { return std::isfinite(v) ? json(v) : json(); }

double relative_error_on_cpu(const at::Tensor& out, const at::Tensor& ref) {
  return relative_error(out.to(at::kCPU), ref);
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

// The value a cache compared with its threshold at step i of `steps` (expected.json's per_step
// format, which cache_record_json also writes): FBCache's signal; TeaCache's accumulated
// distance before the step's reset (recorded when it reused, else the previous step's
// accumulated distance plus the rescaled signal). None on a step without a signal.
std::optional<double> compared_value(const std::string& policy, const json& steps, size_t i,
                                     const std::array<double, 5>& coefficients) {
  const auto& signal = steps[i].at("signal");
  if (policy == "teacache") {
    if (steps[i].at("reused").get<bool>()) return steps[i].at("accumulated").get<double>();
    if (i == 0 || signal.is_null()) return std::nullopt;
    double poly = 0;
    for (double k : coefficients) poly = poly * signal.get<double>() + k;
    const auto& previous = steps[i - 1].value("accumulated", json());
    return (previous.is_null() ? 0.0 : previous.get<double>()) + poly;
  }
  if (signal.is_null()) return std::nullopt;
  return signal.get<double>();
}

// PSNR and SSIM means of `frames` against `reference` ([F, H, W, 3] in [0, 1]).
json frame_quality(const at::Tensor& reference, const at::Tensor& frames) {
  const auto q = compare_frames(reference, frames);
  return {{"psnr", finite_or_null(q.psnr_mean)},
          {"ssim", finite_or_null(q.ssim_mean)},
          {"identical", q.identical}};
}

std::unique_ptr<DiffusionPipeline> replay_pipeline(const std::string& checkpoint,
                                                   const at::Tensor& ref_frames, int cls, int steps,
                                                   double guidance, const std::string& run_file,
                                                   at::ScalarType dtype, at::Device device) {
  PipelineSpec spec;
  spec.model = "hunyuan-video";
  spec.checkpoint = checkpoint;
  spec.dtype = dtype;
  spec.device = device;
  spec.frames = ref_frames.size(0);
  spec.height = ref_frames.size(1);
  spec.width = ref_frames.size(2);
  spec.steps = steps;
  spec.guidance = guidance;
  spec.prompt_file =
      (fs::path(checkpoint) / ("prompt_" + std::to_string(cls) + ".safetensors")).string();
  spec.noise_file = run_file;
  return create_pipeline(spec);
}

}  // namespace

E2eParityReport run_e2e_parity(const std::string& refdir, const std::string& checkpoint,
                               const E2eReplay& replay) {
  const E2eTolerances& tol = replay.tol;
  const auto expected_file = (fs::path(refdir) / "expected.json").string();
  std::ifstream in(expected_file);
  if (!in) throw InputError(expected_file + ": cannot be read");
  json expected;
  try {
    expected = json::parse(in);
  } catch (const json::exception& e) {
    throw InputError(expected_file + ": not valid JSON (" + e.what() + ")");
  }
  if (!expected.contains("runs") || !expected["runs"].is_array()) {
    throw InputError(expected_file + ": /runs must be an array");
  }

  E2eParityReport report;
  report.reference_precision = replay.device.is_cpu() && replay.dtype == at::kFloat;
  report.pass = true;
  report.json = {{"refdir", refdir},
                 {"checkpoint", checkpoint},
                 {"device", replay.device.str()},
                 {"dtype", replay.dtype == at::kFloat      ? std::string("float32")
                           : replay.dtype == at::kBFloat16 ? std::string("bfloat16")
                                                           : c10::toString(replay.dtype)},
                 {"attention", replay.attention},
                 {"reference_precision", report.reference_precision},
                 {"runs", json::array()}};
  AttentionSettings attention;
  attention.backend = replay.attention;
  AttentionScope attention_scope(attention);

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
    const auto ref_latents = require_tensor(tensors, "baseline.latents", run_file);

    const double guidance = run.value("guidance", 6.0);
    auto pipeline = replay_pipeline(checkpoint, ref_frames, cls, steps, guidance, run_file,
                                    replay.dtype, replay.device);
    const auto check = check_backend(replay.attention, replay.device, replay.dtype,
                                     pipeline->head_dim(), /*has_mask=*/true);
    if (!check.ok) throw Unsupported("attention " + replay.attention + ": " + check.reason);
    // The reference's cached latents are decoded in its own precision (float32 on the CPU).
    std::unique_ptr<DiffusionPipeline> reference_decoder;
    if (!report.reference_precision) {
      reference_decoder = replay_pipeline(checkpoint, ref_frames, cls, steps, guidance, run_file,
                                          at::kFloat, at::kCPU);
    }
    DiffusionPipeline& decoder = reference_decoder ? *reference_decoder : *pipeline;
    StageTimer timer(replay.device);
    GenerationSettings gen;
    gen.seed = seed;
    gen.steps = steps;

    json run_json = {{"run", name}};
    // Baseline.
    {
      std::vector<std::unique_ptr<CachePolicy>> caches;
      caches.push_back(make_cache_policy("none", {}));
      auto g = generate(*pipeline, caches, timer, gen);
      const double lat = relative_error_on_cpu(g.latents, ref_latents);
      const double fr = relative_error_on_cpu(g.frames, ref_frames);
      run_json["baseline"] = {{"latents_rel_error", lat},
                              {"frames_rel_error", fr},
                              {"frames", frame_quality(ref_frames, g.frames)}};
      if (report.reference_precision) {
        const bool ok = lat <= tol.baseline && fr <= tol.baseline;
        report.pass = report.pass && ok;
        run_json["baseline"]["pass"] = ok;
      }
    }
    // Cached configs.
    run_json["configs"] = json::array();
    const auto& configs = run.at("configs");
    for (size_t c = 0; c < configs.size(); ++c) {
      const auto& cfg = configs[c];
      const std::string cw = where + "/configs/" + std::to_string(c);
      const auto policy = get<std::string>(cfg, "policy", cw);
      const auto threshold = get<double>(cfg, "threshold", cw);
      const auto ref_cached = cached_latents(tensors, policy, threshold, run_file);
      CacheOptions options;
      options.threshold = threshold;
      options.teacache_coefficients = pipeline->teacache_coefficients();
      std::vector<std::unique_ptr<CachePolicy>> caches;
      caches.push_back(make_cache_policy(policy, options));
      auto g = generate(*pipeline, caches, timer, gen);

      const auto& ref_steps = cfg.at("per_step");
      const json our_steps = cache_record_json(*caches[0])["per_step"];
      const auto coefficients = parse_teacache_coefficients(options.teacache_coefficients);
      std::vector<int> mismatched, borderline;
      json differing = json::array();
      double max_signal_rel = 0;
      for (size_t i = 0; i < ref_steps.size() && i < our_steps.size(); ++i) {
        const bool ref_reused = ref_steps[i].at("reused").get<bool>();
        const bool reused = our_steps[i].at("reused").get<bool>();
        const auto& sig = ref_steps[i].at("signal");
        const auto& our_sig = our_steps[i].at("signal");
        if (!sig.is_null() && !our_sig.is_null()) {
          const double rs = sig.get<double>();
          max_signal_rel = std::max(
              max_signal_rel, std::abs(our_sig.get<double>() - rs) / std::max(std::abs(rs), 1e-30));
        }
        if (ref_reused == reused) continue;
        const auto basis = compared_value(policy, ref_steps, i, coefficients);
        const auto ours = compared_value(policy, our_steps, i, coefficients);
        const bool near = basis && std::abs(*basis - threshold) <= tol.borderline * threshold;
        (near ? borderline : mismatched).push_back(static_cast<int>(i));
        differing.push_back({{"step", i},
                             {"reference_value", basis ? json(*basis) : json()},
                             {"value", ours ? json(*ours) : json()},
                             {"threshold", threshold},
                             {"reference_reused", ref_reused},
                             {"reused", reused}});
      }
      const bool counts_ok = ref_steps.size() == our_steps.size();
      const bool decisions_equal = counts_ok && differing.empty();
      const double lat = relative_error_on_cpu(g.latents, ref_cached);
      at::Tensor ref_cached_frames;
      {
        c10::InferenceMode inference;
        ref_cached_frames = decoder.postprocess(decoder.decode(ref_cached.to(at::kFloat)));
      }
      json config = {{"policy", policy},
                     {"threshold", threshold},
                     {"reused_reference", cfg.value("reused", -1)},
                     {"reused", caches[0]->reused_steps()},
                     {"steps_reference", ref_steps.size()},
                     {"steps", our_steps.size()},
                     {"decisions_equal", decisions_equal},
                     {"decisions_differing", differing.size()},
                     {"differing_steps", differing},
                     {"mismatched_steps", mismatched},
                     {"borderline_steps", borderline},
                     {"max_signal_rel_diff", max_signal_rel},
                     {"latents_rel_error", lat},
                     {"frames", frame_quality(ref_cached_frames, g.frames)},
                     {"vs_baseline", frame_quality(ref_frames, g.frames)},
                     {"reference_psnr_vs_baseline", cfg.value("psnr_vs_baseline", json())}};
      if (report.reference_precision) {
        const bool ok =
            counts_ok && mismatched.empty() && (!decisions_equal || lat <= tol.cached_latents);
        report.pass = report.pass && ok;
        config["pass"] = ok;
      }
      run_json["configs"].push_back(std::move(config));
    }
    report.json["runs"].push_back(run_json);
  }
  report.json["pass"] = report.pass;
  return report;
}

namespace {

std::string format(const char* spec, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, spec, v);
  return buf;
}

// A PSNR of the report: dB with two decimals, "identical" for equal frames, "–" when absent.
std::string psnr_text(const json& quality) {
  if (quality.is_object() && quality.value("identical", false)) return "identical";
  const auto& p = quality.is_object() ? quality.value("psnr", json()) : quality;
  return p.is_number() ? format("%.2f", p.get<double>()) : "–";
}

std::string ssim_text(const json& quality) {
  const auto& s = quality.value("ssim", json());
  return s.is_number() ? format("%.4f", s.get<double>()) : "–";
}

// The number of differing decisions and the first step that differs (after it the trajectories
// part, so later decisions follow from it).
std::string differing_text(const json& config) {
  const auto& steps = config.at("differing_steps");
  if (steps.empty()) return "0";
  return std::to_string(steps.size()) + " (first: step " +
         std::to_string(steps[0].at("step").get<int>()) + ")";
}

std::string value_text(const json& v) {
  return v.is_number() ? format("%.6g", v.get<double>()) : "–";
}

}  // namespace

std::string e2e_parity_markdown(const E2eParityReport& report) {
  const auto& j = report.json;
  const bool ref = report.reference_precision;
  std::ostringstream md;
  md << "## End-to-end replay of " << j.value("refdir", "") << "\n\n"
     << "Checkpoint " << j.value("checkpoint", "") << ", " << j.value("device", "") << " "
     << j.value("dtype", "") << ", attention " << j.value("attention", "")
     << ", against the float32 CPU references. PSNR/SSIM: the decoded frames against the "
        "reference's frames of the same config (for cached configs, the reference's final latents "
        "decoded in float32 on the CPU); vs baseline: PSNR against the reference baseline's "
        "frames, "
        "ours / the reference's own.\n\n"
     << "| run | config | reused (ref / ours) | decisions differing | PSNR (dB) | SSIM | "
        "vs baseline (dB) | final latents rel. error |"
     << (ref ? " pass |" : "") << "\n"
     << "|---|---|--:|--:|--:|--:|--:|--:|" << (ref ? "---|" : "") << "\n";
  auto pass_cell = [&](const json& row) {
    return ref ? std::string(" ") + (row.value("pass", false) ? "yes" : "no") + " |" : "";
  };
  std::ostringstream details;
  for (const auto& run : j.at("runs")) {
    const std::string name = run.value("run", "");
    const auto& b = run.at("baseline");
    md << "| " << name << " | baseline | 0 / 0 | – | " << psnr_text(b.at("frames")) << " | "
       << ssim_text(b.at("frames")) << " | – | "
       << format("%.2e", b.at("latents_rel_error").get<double>()) << " |" << pass_cell(b) << "\n";
    for (const auto& c : run.at("configs")) {
      const std::string config =
          c.value("policy", "") + " " + format("%g", c.value("threshold", 0.0));
      md << "| " << name << " | " << config << " | " << c.value("reused_reference", -1) << " / "
         << c.value("reused", -1) << " | " << differing_text(c) << " | "
         << psnr_text(c.at("frames")) << " | " << ssim_text(c.at("frames")) << " | "
         << psnr_text(c.at("vs_baseline")) << " / " << psnr_text(c.at("reference_psnr_vs_baseline"))
         << " | " << format("%.2e", c.at("latents_rel_error").get<double>()) << " |" << pass_cell(c)
         << "\n";
      if (c.value("steps", 0) != c.value("steps_reference", 0)) {
        details << "- " << name << " " << config << ": " << c.value("steps", 0)
                << " steps recorded, the reference " << c.value("steps_reference", 0) << "\n";
      }
      if (c.at("differing_steps").empty()) continue;
      details << "- " << name << " " << config << ":";
      const char* sep = " ";
      for (const auto& d : c.at("differing_steps")) {
        details << sep << "step " << d.at("step").get<int>() << " (reference "
                << value_text(d.at("reference_value")) << ", ours " << value_text(d.at("value"))
                << " vs " << format("%g", d.at("threshold").get<double>()) << "; reference "
                << (d.at("reference_reused").get<bool>() ? "reused" : "computed") << ", ours "
                << (d.at("reused").get<bool>() ? "reused" : "computed") << ")";
        sep = ", ";
      }
      details << "\n";
    }
  }
  if (!details.str().empty()) {
    md << "\nDecisions that differ (the value compared with the threshold: FBCache's relative "
          "residual difference, TeaCache's accumulated distance):\n\n"
       << details.str();
  }
  if (ref) md << "\nWithin the float32 CPU criteria: " << (report.pass ? "yes" : "no") << "\n";
  return md.str();
}

}  // namespace ditbench
