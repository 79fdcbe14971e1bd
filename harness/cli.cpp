#include "harness/cli.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>

#include "build_info.h"
#include "harness/e2e_parity.h"
#include "harness/runner.h"
#include "harness/suite.h"
#include "harness/teacache_fit.h"
#include "harness/tune.h"
#include "metrics/frames.h"
#include "metrics/quality.h"
#include "models/common/error.h"
#include "models/pipeline.h"
#include "optimizations/attention/backends.h"
#include "optimizations/attention/kernel_log.h"
#include "optimizations/cache/cache_policy.h"
#include "optimizations/quant/quant.h"
#include "reports/compare.h"
#include "reports/html.h"
#include "reports/markdown.h"

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
            << "\n  FFmpeg: " << yes(build::kHasFFmpeg) << "\n  CUTLASS FP8 GEMMs: ";
  if (build::kHasCutlass) {
    std::vector<std::string> kernels;
    for (int k = 0; k < kFp8GemmKernelCount; ++k) {
      kernels.push_back(fp8_gemm_kernel_name(static_cast<Fp8GemmKernel>(k)));
    }
    std::cout << "yes, compute capability 9.0 (" << join(kernels)
              << "; DITBENCH_FP8_GEMM picks one, or scaled_mm)\n";
  } else {
    std::cout << "no (fp8_dynamic runs at::_scaled_mm)\n";
  }
  return 0;
}

int cmd_plan(const std::string& suite_file) {
  if (auto collection = load_suite_collection(suite_file)) {
    for (const auto& sub : collection->suites) {
      std::cout << "# " << sub.string() << "\n";
      std::cout << plan_text(expand_matrix(load_suite(sub)));
    }
    return 0;
  }
  auto suite = load_suite(suite_file);
  auto configs = expand_matrix(suite);
  std::cout << plan_text(configs);
  return 0;
}

int cmd_run(const std::string& suite_file, RunOptions options);

// A suite collection: each suite into OUT/<its name>/, then OUT/report.md joining their reports.
// Every suite is validated before the first one runs; the exit status is the worst one.
int cmd_run_collection(const SuiteCollection& collection, RunOptions options) {
  const auto out = options.out_dir.empty() ? std::filesystem::path("results") / collection.name
                                           : options.out_dir;
  std::vector<Suite> suites;
  for (const auto& sub : collection.suites) suites.push_back(load_suite(sub));
  std::filesystem::create_directories(out);
  std::string joined = "# ditbench report: " + collection.name + "\n\n";
  int rc = 0;
  for (size_t i = 0; i < suites.size(); ++i) {
    RunOptions sub_options = options;
    sub_options.out_dir = out / suites[i].name;
    std::cerr << "ditbench: suite " << suites[i].name << " (" << (i + 1) << "/" << suites.size()
              << ")\n";
    const int sub_rc = cmd_run(collection.suites[i].string(), sub_options);
    rc = std::max(rc, sub_rc);
    std::ifstream report(sub_options.out_dir / "report.md");
    std::string line;
    while (std::getline(report, line)) joined += (line.rfind('#', 0) == 0 ? "#" : "") + line + "\n";
    joined += "\n";
    if (sub_rc == 130) break;  // interrupted: the suites after it do not start
  }
  std::ofstream(out / "report.md") << joined;
  std::cerr << "ditbench: report of the collection in " << (out / "report.md").string() << "\n";
  return rc;
}

int cmd_run(const std::string& suite_file, RunOptions options) {
  if (auto collection = load_suite_collection(suite_file))
    return cmd_run_collection(*collection, std::move(options));
  auto suite = load_suite(suite_file);
  if (options.out_dir.empty()) options.out_dir = std::filesystem::path("results") / suite.name;
  auto summary = run_suite(suite, options);
  std::cerr << "ditbench: " << summary.ok << " ok, " << summary.failed << " failed, "
            << summary.skipped << " skipped";
  if (summary.resumed) std::cerr << ", " << summary.resumed << " already done";
  if (summary.writes_results) {
    std::cerr << "; results in " << (options.out_dir / "results.jsonl").string() << "\n";
  } else {
    std::cerr << "; rank 0 writes the results\n";
  }
  if (summary.interrupted) return 130;
  return summary.failed > 0 ? 1 : 0;
}

// End-to-end replay options of `ditbench parity REFDIR --checkpoint CKPT`.
struct E2eParityOptions {
  std::string device = "cpu", dtype = "float32", attention = "sdpa", out;
};

// Float32 on the CPU checks the pass criteria: one JSON line, exit 0 or 1. Any other device or
// dtype measures how far the replay moves from the references: the Markdown table, exit 0 once
// everything ran. --out receives the Markdown table in both cases.
int cmd_e2e_parity(const std::string& dir, const std::string& checkpoint,
                   const E2eParityOptions& options) {
  E2eReplay replay;
  replay.device = resolve_device(options.device);
  replay.dtype = options.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  replay.attention = options.attention;
  const auto report = run_e2e_parity(dir, checkpoint, replay);
  const auto markdown = e2e_parity_markdown(report);
  if (!options.out.empty()) {
    std::ofstream out(options.out, std::ios::trunc);
    out << markdown;
    if (!out.flush()) throw InputError(options.out + ": cannot write the report");
  }
  if (!report.reference_precision) {
    std::cout << markdown;
    return 0;
  }
  std::cout << report.json.dump() << "\n";
  return report.pass ? 0 : 1;
}

int cmd_parity(const std::string& dir, double tol, const std::string& checkpoint,
               const E2eParityOptions& e2e) {
  if (!checkpoint.empty()) return cmd_e2e_parity(dir, checkpoint, e2e);
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
  if (a.sizes() != b.sizes())
    throw InputError(test + ": frames of shape " + c10::str(b.sizes()) +
                     " cannot be compared with " + ref + " of shape " + c10::str(a.sizes()) +
                     " ([F, H, W, C] must match)");
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

std::vector<ResultRecord> read_all_results(const std::vector<std::string>& files) {
  std::vector<ResultRecord> records;
  for (const auto& f : files) {
    auto more = read_results(f);
    records.insert(records.end(), more.begin(), more.end());
  }
  return records;
}

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) throw InputError(path + ": cannot open for writing");
  out << text;
  if (!out.flush()) throw InputError(path + ": write failed");
}

int cmd_fit_teacache(const std::vector<std::string>& files, const std::string& out) {
  const TeacacheFit fit = fit_teacache_from_records(read_all_results(files));
  const std::string coefficients = format_teacache_coefficients(fit.coefficients);
  nlohmann::json summary = {{"coefficients", coefficients},
                            {"residual", fit.residual},
                            {"rms_residual", fit.rms_residual},
                            {"points", fit.points},
                            {"records", fit.records_used}};
  std::cout << coefficients << "\n" << summary.dump() << "\n";
  if (!out.empty()) {
    // A suite's own key, so the file's first line pastes into a suite.
    nlohmann::json file = {{"teacache_coefficients", coefficients},
                           {"residual", fit.residual},
                           {"points", fit.points}};
    write_text_file(out, file.dump(2) + "\n");
  }
  return 0;
}

int cmd_report(const std::vector<std::string>& files, const std::string& format,
               const std::string& out) {
  const auto records = read_all_results(files);
  const std::string text = format == "csv"    ? csv_report(records)
                           : format == "html" ? html_report(records)
                                              : markdown_report(records);
  if (out.empty()) {
    std::cout << text;
  } else {
    write_text_file(out, text);
  }
  return 0;
}

int cmd_tune(const std::string& suite_file, TuneOptions options) {
  auto suite = load_suite(suite_file);
  if (options.out_dir.empty())
    options.out_dir = std::filesystem::path("results") / (suite.name + "-tune");
  const TuneResult result = tune_cache_threshold(suite, options, std::cout);
  std::cout << tune_summary(result, options);
  return result.chosen ? 0 : 1;
}

// --max-slowdown in percent, "5" or "5%".
double parse_percent(const std::string& text, const std::string& option) {
  std::string number = text;
  if (!number.empty() && number.back() == '%') number.pop_back();
  size_t used = 0;
  double value = -1;
  try {
    value = std::stod(number, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != number.size() || !(value >= 0))
    throw InputError(option + ": '" + text + "' is not a non-negative percentage (e.g. 5 or 5%)");
  return value / 100.0;
}

int cmd_compare(const std::string& base_file, const std::string& new_file,
                const std::string& max_slowdown, CompareOptions options,
                const std::string& summary_file) {
  options.max_slowdown = parse_percent(max_slowdown, "--max-slowdown");
  const auto result = compare_results(read_results(base_file), read_results(new_file), options,
                                      base_file, new_file);
  if (summary_file.empty()) {
    std::cout << result.markdown;
  } else {
    std::ofstream out(summary_file, std::ios::trunc);
    out << result.markdown;
    if (!out.flush()) throw InputError(summary_file + ": cannot write the summary");
  }
  for (const auto& d : result.env_differences)
    std::cerr << "ditbench: WARNING: environments differ: " << d << "\n";
  std::cerr << "ditbench compare: " << (result.regression ? "regression" : "no regression") << "\n";
  return result.regression ? 1 : 0;
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
  run->add_option_function<int>(
         "--gpus", [&](const int& n) { run_options.gpus = n; },
         "ranks for the suite's multi-GPU configs (in-process rank threads on the CPU)")
      ->check(CLI::PositiveNumber);
  run->add_option("--comm-timeout", run_options.comm_timeout_s,
                  "seconds a rank waits for its peers in one communication before it fails and "
                  "stops every rank (default 600)")
      ->check(CLI::PositiveNumber);

  std::string parity_dir, checkpoint;
  double tol = 1e-4;
  auto* parity = app.add_subcommand(
      "parity",
      "check a model against a reference fixture folder, or replay end-to-end references "
      "(--checkpoint)");
  parity
      ->add_option("dir", parity_dir,
                   "fixture folder (model/ + io.safetensors) or e2e reference folder")
      ->required();
  parity->add_option("--tol", tol, "relative error tolerance (fixture folders)");
  auto* parity_checkpoint = parity->add_option(
      "--checkpoint", checkpoint,
      "checkpoint folder: replay end-to-end references; float32 on the CPU checks the pass "
      "criteria (JSON line, exit 0 or 1), any other device or dtype reports decisions, PSNR/SSIM "
      "and latent errors against the references (Markdown table, exit 0 once everything ran)");
  E2eParityOptions e2e_options;
  parity->add_option("--device", e2e_options.device, "end-to-end replay device (default cpu)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->needs(parity_checkpoint);
  parity->add_option("--dtype", e2e_options.dtype, "end-to-end replay dtype (default float32)")
      ->check(CLI::IsMember({"float32", "bfloat16"}))
      ->needs(parity_checkpoint);
  parity
      ->add_option("--attention", e2e_options.attention,
                   "attention backend of the end-to-end replay (default sdpa)")
      ->needs(parity_checkpoint);
  parity->add_option("--out", e2e_options.out, "also write the end-to-end Markdown table here")
      ->needs(parity_checkpoint);

  std::string ref, test;
  auto* metrics = app.add_subcommand("metrics", "PSNR and SSIM of two frame sources");
  metrics->add_option("reference", ref, "image, video, or file.safetensors:tensor")->required();
  metrics->add_option("test", test, "image, video, or file.safetensors:tensor")->required();

  std::string compare_base, compare_new, max_slowdown = "5%", compare_summary;
  CompareOptions compare_options;
  auto* compare = app.add_subcommand(
      "compare", "regression check of NEW against BASE: exit 0 clean, 1 regression, 2 bad input");
  compare->add_option("base", compare_base, "BASE results.jsonl")->required();
  compare->add_option("new", compare_new, "NEW results.jsonl")->required();
  compare->add_option("--max-slowdown", max_slowdown,
                      "e2e median slowdown that counts, in percent (default 5%)");
  compare->add_option_function<double>(
      "--max-psnr-drop", [&](const double& v) { compare_options.max_psnr_drop = v; },
      "PSNR mean drop that counts (dB)");
  compare->add_option_function<double>(
      "--max-ssim-drop", [&](const double& v) { compare_options.max_ssim_drop = v; },
      "SSIM mean drop that counts");
  compare->add_option_function<double>(
      "--min-psnr", [&](const double& v) { compare_options.min_psnr = v; },
      "PSNR mean below this counts (dB)");
  compare->add_option("--summary", compare_summary,
                      "write the Markdown summary here instead of stdout");

  std::vector<std::string> result_files;
  std::string fit_out;
  auto* fit = app.add_subcommand(
      "fit-teacache",
      "fit TeaCache's polynomial (c0..c4) to recorded runs of your checkpoint (cache teacache at "
      "threshold 0)");
  fit->add_option("results", result_files, "results.jsonl files")->required();
  fit->add_option("--out", fit_out, "also write {\"teacache_coefficients\": ...} to this file");

  std::string report_format = "md", report_out;
  auto* report = app.add_subcommand(
      "report", "speedup, stage and cache sweep tables from results.jsonl files");
  report->add_option("results", result_files, "results.jsonl files")->required();
  report->add_option("--format", report_format, "md, csv or html")
      ->check(CLI::IsMember({"md", "csv", "html"}));
  report->add_option("--out", report_out, "write to this file instead of stdout");

  TuneOptions tune_options;
  std::string tune_out;
  auto* tune = app.add_subcommand(
      "tune", "find the fastest cache threshold whose quality stays above a floor");
  tune->add_option("suite", suite_file, "suite JSON file")->required();
  auto* min_psnr = tune->add_option_function<double>(
      "--min-psnr", [&](const double& v) { tune_options.min_psnr = v; },
      "floor on the mean PSNR over frames vs the baseline (dB)");
  auto* min_ssim = tune->add_option_function<double>(
      "--min-ssim", [&](const double& v) { tune_options.min_ssim = v; },
      "floor on the mean SSIM over frames vs the baseline");
  min_psnr->excludes(min_ssim);
  tune->add_option("--cache", tune_options.cache,
                   "fbcache or teacache (default: the suite's cache axis, else fbcache)")
      ->check(CLI::IsMember({"fbcache", "teacache"}));
  tune->add_option("--out", tune_out, "output folder (default results/<suite name>-tune)");
  tune->add_option_function<double>(
      "--start", [&](const double& v) { tune_options.start = v; }, "first threshold to try");
  tune->add_option("--max-evals", tune_options.max_evaluations,
                   "cached runs beyond threshold 0 (default 8)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line, like every other bad input (CLI11's own output adds a second line), and a
    // mistyped subcommand named as such rather than as a missing one.
    std::string message = e.what();
    if (argc > 1 && argv[1][0] != '-') {
      std::string known;
      bool is_known = false;
      for (const auto* sub : app.get_subcommands([](CLI::App*) { return true; })) {
        known += (known.empty() ? "" : ", ") + sub->get_name();
        is_known = is_known || sub->get_name() == argv[1];
      }
      if (!is_known)
        message = "unknown subcommand '" + std::string(argv[1]) + "' (known: " + known + ")";
    }
    for (char& c : message)
      if (c == '\n') c = ' ';
    std::cerr << "ditbench: error: " << message << " (see ditbench --help)\n";
    return 2;
  }

  try {
    if (*list) return cmd_list();
    if (*plan) return cmd_plan(suite_file);
    if (*run) {
      run_options.out_dir = out_dir;
      return cmd_run(suite_file, run_options);
    }
    if (*parity) return cmd_parity(parity_dir, tol, checkpoint, e2e_options);
    if (*metrics) return cmd_metrics(ref, test);
    if (*compare)
      return cmd_compare(compare_base, compare_new, max_slowdown, compare_options, compare_summary);
    if (*fit) return cmd_fit_teacache(result_files, fit_out);
    if (*report) return cmd_report(result_files, report_format, report_out);
    if (*tune) {
      tune_options.out_dir = tune_out;
      return cmd_tune(suite_file, tune_options);
    }
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
