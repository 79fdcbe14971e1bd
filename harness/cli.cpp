#include "harness/cli.h"

#include <CLI/CLI.hpp>

#include <cmath>
#include <iostream>

#include "build_info.h"
#include "harness/e2e_parity.h"
#include "harness/runner.h"
#include "harness/suite.h"
#include "metrics/frames.h"
#include "metrics/quality.h"
#include "models/common/error.h"
#include "models/pipeline.h"
#include "optimizations/attention/backends.h"
#include "optimizations/attention/kernel_log.h"
#include "optimizations/cache/cache_policy.h"
#include "optimizations/quant/quant.h"

namespace ditbench {
namespace {

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& i : items) s += (s.empty() ? "" : ", ") + i;
  return s;
}

nlohmann::json finite_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}

int cmd_list() {
  std::cout << "ditbench " << build::kVersion << " (" << build::kGitCommit << "), LibTorch "
            << build::kTorchVersion << "\n\nmodels:\n";
  for (const auto& f : model_families()) {
    std::cout << "  " << f.name << "  presets: " << join(f.presets) << "\n";
  }
  std::cout << "\nattention backends:\n";
  const at::Device device = at::hasCUDA() ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  const auto dtype = device.is_cuda() ? at::kBFloat16 : at::kFloat;
  for (const auto& b : attention_backend_names()) {
    auto check = check_backend(b, device, dtype, 128, true);
    std::cout << "  " << b << "  on " << device.str() << " " << c10::toString(dtype) << ": "
              << (check.ok ? "yes" : "no (" + check.reason + ")") << "\n";
  }
  std::cout << "\ncaches: " << join(cache_policy_names()) << "\n";
  std::vector<std::string> sets;
  for (const auto& [name, c] : teacache_coefficient_sets()) sets.push_back(name);
  std::cout << "teacache coefficient sets: " << join(sets) << "\n";
  std::cout << "quantization: " << join(quant_mode_names()) << "\n";
  auto yes = [](bool b) { return b ? "yes" : "no"; };
  std::cout << "\nthis build:\n"
            << "  CUDA: " << yes(build::kHasCuda)
            << " (devices now: " << (at::hasCUDA() ? "present" : "none")
            << ")\n  NCCL: " << yes(build::kHasNccl) << "\n  CUPTI: " << yes(build::kHasCupti)
            << (KernelNameCollector::available()
                    ? ""
                    : " (" + KernelNameCollector::unavailable_reason() + ")")
            << "\n  NVTX: " << yes(build::kHasNvtx) << "\n  OpenCV: " << yes(build::kHasOpenCV)
            << "\n  FFmpeg: " << yes(build::kHasFFmpeg) << "\n";
  return 0;
}

int cmd_plan(const std::string& suite_file) {
  auto suite = load_suite(suite_file);
  auto configs = expand_matrix(suite);
  std::cout << plan_text(configs);
  return 0;
}

int cmd_run(const std::string& suite_file, RunOptions options) {
  auto suite = load_suite(suite_file);
  if (options.out_dir.empty()) options.out_dir = std::filesystem::path("results") / suite.name;
  auto summary = run_suite(suite, options);
  std::cerr << "ditbench: " << summary.ok << " ok, " << summary.failed << " failed, "
            << summary.skipped << " skipped";
  if (summary.resumed) std::cerr << ", " << summary.resumed << " already done";
  std::cerr << "; results in " << (options.out_dir / "results.jsonl").string() << "\n";
  if (summary.interrupted) return 130;
  return summary.failed > 0 ? 1 : 0;
}

int cmd_parity(const std::string& dir, double tol, const std::string& checkpoint) {
  if (!checkpoint.empty()) {
    auto report = run_e2e_parity(dir, checkpoint);
    std::cout << report.json.dump() << "\n";
    return report.pass ? 0 : 1;
  }
  auto r = run_fixture_parity(dir);
  bool pass = r.rel_error <= tol;
  for (double e : r.first_block_errors) pass = pass && e <= tol;
  nlohmann::json out = {{"fixture", dir},
                        {"class", r.model_class},
                        {"rel_error", r.rel_error},
                        {"tol", tol},
                        {"pass", pass}};
  if (!r.first_block_errors.empty()) out["first_block_rel_error"] = r.first_block_errors;
  std::cout << out.dump() << "\n";
  return pass ? 0 : 1;
}

int cmd_metrics(const std::string& ref, const std::string& test) {
  auto a = load_frames(ref);
  auto b = load_frames(test);
  auto q = compare_frames(a, b);
  nlohmann::json out = {{"reference", ref},
                        {"test", test},
                        {"frames", a.size(0)},
                        {"identical", q.identical},
                        {"psnr_mean", finite_or_null(q.psnr_mean)},
                        {"psnr_min", finite_or_null(q.psnr_min)},
                        {"ssim_mean", q.ssim_mean},
                        {"ssim_min", q.ssim_min}};
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace

int cli_main(int argc, char** argv) {
  CLI::App app{"ditbench: benchmark and evaluation harness for diffusion transformers"};
  app.set_version_flag("--version", std::string("ditbench ") + build::kVersion + " (" +
                                        build::kGitCommit + "), LibTorch " + build::kTorchVersion);
  app.require_subcommand(1);

  auto* list = app.add_subcommand("list", "models, presets, backends, caches, what this build has");

  std::string suite_file;
  auto* plan =
      app.add_subcommand("plan", "print the expanded matrix of a suite without running it");
  plan->add_option("suite", suite_file, "suite JSON file")->required();

  RunOptions run_options;
  std::string out_dir;
  auto* run = app.add_subcommand("run", "run a suite: DIR/results.jsonl and DIR/report.md");
  run->add_option("suite", suite_file, "suite JSON file")->required();
  run->add_option("--out", out_dir, "output folder (default results/<suite name>)");
  run->add_option("--filter", run_options.filter,
                  "run only configs matching all terms (key=value or substring)");
  run->add_flag("--resume", run_options.resume,
                "skip configs already finished in DIR/results.jsonl");
  run->add_flag("!--no-progress", run_options.progress, "no progress lines");

  std::string parity_dir, checkpoint;
  double tol = 1e-4;
  auto* parity = app.add_subcommand("parity", "check a model against a reference fixture folder");
  parity
      ->add_option("dir", parity_dir,
                   "fixture folder (model/ + io.safetensors) or e2e reference folder")
      ->required();
  parity->add_option("--tol", tol, "relative error tolerance (fixture folders)");
  parity->add_option("--checkpoint", checkpoint, "checkpoint folder: replay end-to-end references");

  std::string ref, test;
  auto* metrics = app.add_subcommand("metrics", "PSNR and SSIM of two frame sources");
  metrics->add_option("reference", ref, "image, video, or file.safetensors:tensor")->required();
  metrics->add_option("test", test, "image, video, or file.safetensors:tensor")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  try {
    if (*list) return cmd_list();
    if (*plan) return cmd_plan(suite_file);
    if (*run) {
      run_options.out_dir = out_dir;
      return cmd_run(suite_file, run_options);
    }
    if (*parity) return cmd_parity(parity_dir, tol, checkpoint);
    if (*metrics) return cmd_metrics(ref, test);
  } catch (const InputError& e) {
    std::cerr << "ditbench: error: " << e.what() << "\n";
    return 2;
  } catch (const Unsupported& e) {
    std::cerr << "ditbench: unsupported: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ditbench: failed: " << e.what() << "\n";
    return 1;
  }
  return 2;
}

}  // namespace ditbench
