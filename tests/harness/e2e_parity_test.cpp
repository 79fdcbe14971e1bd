// End-to-end agreement with the reference pipeline on tiny-shapes (../shared/fixtures/e2e): the
// model, VAE, scheduler and both caches right together; and the replay in other precisions,
// which reports how far it moves from the float32 CPU references.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "harness/cli_test_util.h"
#include "harness/e2e_parity.h"
#include "test_util.h"

namespace ditbench {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string refdir() { return testing::fixtures_dir() + "/e2e"; }
std::string checkpoint() { return testing::source_dir() + "/assets/tiny-shapes"; }

// A reference folder holding one run of the fixtures (its file linked) with only the cache
// configs named "policy threshold" in `keep`: a short replay for the slower precisions.
void write_subset(const testing::TempDir& dir, const std::string& run_name,
                  const std::vector<std::pair<std::string, double>>& keep) {
  std::ifstream in(refdir() + "/expected.json");
  json expected = json::parse(in);
  json runs = json::array();
  for (auto run : expected.at("runs")) {
    if (run.at("run") != run_name) continue;
    json configs = json::array();
    for (const auto& c : run.at("configs")) {
      for (const auto& [policy, threshold] : keep) {
        if (c.at("policy") == policy && c.at("threshold").get<double>() == threshold)
          configs.push_back(c);
      }
    }
    run["configs"] = configs;
    runs.push_back(run);
  }
  ASSERT_EQ(runs.size(), 1u) << run_name;
  expected["runs"] = runs;
  std::ofstream(dir.file("expected.json")) << expected.dump();
  fs::create_symlink(refdir() + "/" + run_name + ".safetensors",
                     dir.file(run_name + ".safetensors"));
}

TEST(E2eParity, TinyShapesAgreesWithTheReferenceRuns) {
  if (!fs::exists(refdir())) GTEST_SKIP() << "no fixtures at " << refdir();
  auto report = run_e2e_parity(refdir(), checkpoint());
  EXPECT_TRUE(report.reference_precision);
  ASSERT_EQ(report.json["runs"].size(), 2u);
  for (const auto& run : report.json["runs"]) {
    EXPECT_LE(run["baseline"]["latents_rel_error"].get<double>(), 1e-4) << run.dump();
    EXPECT_LE(run["baseline"]["frames_rel_error"].get<double>(), 1e-4) << run.dump();
    ASSERT_EQ(run["configs"].size(), 7u);
    for (const auto& c : run["configs"]) {
      EXPECT_TRUE(c["mismatched_steps"].empty()) << c.dump();
      EXPECT_EQ(c["reused"], c["reused_reference"]) << c.dump();
      EXPECT_TRUE(c["pass"].get<bool>()) << c.dump();
    }
  }
  EXPECT_TRUE(report.pass) << report.json.dump(1);
}

// bf16 on the CPU against float32 on the CPU, on the 10-step run with FBCache at 0.1.
// Bounds a reader can check by hand: bf16 keeps 8 mantissa bits (relative rounding ~4e-3), so the
// frames stay well above 20 dB, while float32 agrees to ~1e-6 (far above 60 dB); each decision
// that differs moves the reuse count by at most one.
TEST(E2eParity, BFloat16ReplayReportsDecisionsAndPsnrAgainstTheReferences) {
  if (!fs::exists(refdir())) GTEST_SKIP() << "no fixtures at " << refdir();
  testing::TempDir dir("e2e_subset");
  write_subset(dir, "c2_s7_n10", {{"fbcache", 0.1}});

  const auto fp32 = run_e2e_parity(dir.path().string(), checkpoint());
  E2eReplay bf16_replay;
  bf16_replay.dtype = at::kBFloat16;
  const auto bf16 = run_e2e_parity(dir.path().string(), checkpoint(), bf16_replay);

  EXPECT_TRUE(fp32.reference_precision);
  EXPECT_TRUE(fp32.pass) << fp32.json.dump(1);
  EXPECT_FALSE(bf16.reference_precision);
  EXPECT_TRUE(bf16.pass);  // a measurement: everything ran
  EXPECT_EQ(bf16.json["dtype"], "bfloat16");

  const auto& f = fp32.json["runs"][0];
  const auto& b = bf16.json["runs"][0];
  const double fp32_psnr = f["baseline"]["frames"]["psnr"].get<double>();
  ASSERT_TRUE(b["baseline"]["frames"]["psnr"].is_number()) << b.dump(1);
  const double bf16_psnr = b["baseline"]["frames"]["psnr"].get<double>();
  EXPECT_GT(fp32_psnr, 60.0);
  EXPECT_TRUE(std::isfinite(bf16_psnr));
  EXPECT_GT(bf16_psnr, 20.0);
  EXPECT_LT(bf16_psnr, fp32_psnr);
  EXPECT_GT(b["baseline"]["latents_rel_error"].get<double>(),
            f["baseline"]["latents_rel_error"].get<double>());
  EXPECT_FALSE(b["baseline"].contains("pass"));

  ASSERT_EQ(b["configs"].size(), 1u);
  const auto& fc = f["configs"][0];
  const auto& bc = b["configs"][0];
  EXPECT_EQ(fc["decisions_differing"], 0) << fc.dump();
  EXPECT_EQ(fc["reused"], fc["reused_reference"]) << fc.dump();
  EXPECT_GT(fc["frames"]["psnr"].get<double>(), 60.0) << fc.dump();
  EXPECT_FALSE(bc.contains("pass"));
  const int differing = bc["decisions_differing"].get<int>();
  EXPECT_EQ(bc["differing_steps"].size(), static_cast<size_t>(differing));
  EXPECT_LE(std::abs(bc["reused"].get<int>() - bc["reused_reference"].get<int>()), differing)
      << bc.dump();
  for (const auto& d : bc["differing_steps"]) {
    EXPECT_NE(d["reused"], d["reference_reused"]) << d.dump();
    EXPECT_EQ(d["threshold"], bc["threshold"]);
  }
  ASSERT_TRUE(bc["frames"]["psnr"].is_number()) << bc.dump();
  EXPECT_GT(bc["frames"]["psnr"].get<double>(), 20.0) << bc.dump();
  EXPECT_GT(bc["frames"]["ssim"].get<double>(), 0.5) << bc.dump();
  EXPECT_TRUE(bc["reference_psnr_vs_baseline"].is_number()) << bc.dump();

  const auto md = e2e_parity_markdown(bf16);
  EXPECT_NE(md.find("| c2_s7_n10 | baseline | 0 / 0 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| c2_s7_n10 | fbcache 0.1 | "), std::string::npos) << md;
  if (differing > 0) EXPECT_NE(md.find("- c2_s7_n10 fbcache 0.1: step "), std::string::npos) << md;
  EXPECT_EQ(md.find("pass"), std::string::npos) << md;
}

// The command: another precision prints the Markdown table, writes it to --out and exits 0.
TEST(E2eParity, CommandPrintsAndWritesTheTableInBFloat16) {
  if (!fs::exists(refdir())) GTEST_SKIP() << "no fixtures at " << refdir();
  testing::TempDir dir("e2e_subset");
  write_subset(dir, "c2_s7_n10", {});
  const auto out_file = dir.file("report.md");
  std::string out;
  const int rc = testing::run_cli({"parity", dir.path().string(), "--checkpoint", checkpoint(),
                                   "--device", "cpu", "--dtype", "bfloat16", "--out", out_file},
                                  &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("| c2_s7_n10 | baseline | 0 / 0 |"), std::string::npos) << out;
  std::ifstream written(out_file);
  std::stringstream text;
  text << written.rdbuf();
  EXPECT_EQ(text.str(), out);
}

int cli_status(std::vector<std::string> args, std::string* error) {
  ::testing::internal::CaptureStderr();
  const int rc = testing::run_cli(std::move(args));
  *error = ::testing::internal::GetCapturedStderr();
  return rc;
}

TEST(E2eParity, BadDeviceDtypeOrBackendIsBadInputNamingIt) {
  std::string error;
  EXPECT_EQ(
      cli_status({"parity", refdir(), "--checkpoint", checkpoint(), "--device", "gpu"}, &error), 2);
  EXPECT_NE(error.find("--device"), std::string::npos) << error;
  EXPECT_NE(error.find("gpu"), std::string::npos) << error;

  EXPECT_EQ(
      cli_status({"parity", refdir(), "--checkpoint", checkpoint(), "--dtype", "fp8"}, &error), 2);
  EXPECT_NE(error.find("--dtype"), std::string::npos) << error;
  EXPECT_NE(error.find("fp8"), std::string::npos) << error;

  // The replay options belong to the end-to-end replay.
  EXPECT_EQ(cli_status({"parity", refdir(), "--dtype", "bfloat16"}, &error), 2);
  EXPECT_NE(error.find("--checkpoint"), std::string::npos) << error;

  if (!at::hasCUDA()) {
    EXPECT_EQ(
        cli_status({"parity", refdir(), "--checkpoint", checkpoint(), "--device", "cuda"}, &error),
        2);
    EXPECT_NE(error.find("cuda"), std::string::npos) << error;
  }

  if (!fs::exists(refdir())) return;
  testing::TempDir dir("e2e_subset");
  write_subset(dir, "c2_s7_n10", {});
  EXPECT_EQ(cli_status({"parity", dir.path().string(), "--checkpoint", checkpoint(), "--attention",
                        "warp-speed"},
                       &error),
            2);
  EXPECT_NE(error.find("warp-speed"), std::string::npos) << error;
}

}  // namespace
}  // namespace ditbench
