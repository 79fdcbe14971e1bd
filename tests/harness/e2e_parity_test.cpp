// End-to-end agreement with the reference pipeline on tiny-shapes (../shared/fixtures/e2e): the
// model, VAE, scheduler and both caches right together.
#include <gtest/gtest.h>

#include <filesystem>

#include "harness/e2e_parity.h"
#include "test_util.h"

namespace ditbench {
namespace {

TEST(E2eParity, TinyShapesAgreesWithTheReferenceRuns) {
  const auto refdir = testing::fixtures_dir() + "/e2e";
  const auto ckpt = testing::source_dir() + "/assets/tiny-shapes";
  if (!std::filesystem::exists(refdir)) GTEST_SKIP() << "no fixtures at " << refdir;
  auto report = run_e2e_parity(refdir, ckpt);
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

}  // namespace
}  // namespace ditbench
