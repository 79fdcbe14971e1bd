// Suite collections (`"suites": [...]`, e.g. suites/models-cpu.json): each listed suite runs into
// OUT/<its name>/ and OUT/report.md joins their reports; bad collections are exit 2 naming the
// JSON path.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "cli_test_util.h"
#include "harness/record.h"
#include "harness/suite.h"
#include "parallel/tiny_cp_suite.h"
#include "test_util.h"

namespace ditbench {
namespace {

namespace fs = std::filesystem;

void write_json(const fs::path& file, const nlohmann::json& doc) { std::ofstream(file) << doc; }

std::string read_text(const fs::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(SuiteCollection, RunsEverySuiteIntoItsFolderAndJoinsTheReports) {
  testing::TempDir dir("ditbench_collection");
  fs::create_directories(dir.path() / "sub");
  write_json(dir.path() / "sub" / "a.json",
             testing::tiny_cp_suite("alpha", {{"cache", {"none"}}}, 3));
  write_json(dir.path() / "sub" / "b.json",
             testing::tiny_cp_suite(
                 "beta", {{"cache", {"none", "fbcache"}}, {"cache_threshold", {0.5}}}, 3));
  write_json(dir.path() / "all.json", {{"name", "both"}, {"suites", {"sub/a.json", "sub/b.json"}}});

  std::string plan;
  ASSERT_EQ(testing::run_cli({"plan", dir.file("all.json")}, &plan), 0);
  EXPECT_NE(plan.find("sub/a.json"), std::string::npos) << plan;
  EXPECT_NE(plan.find("cache=fbcache"), std::string::npos) << plan;

  const fs::path out = dir.path() / "out";
  ASSERT_EQ(testing::run_cli({"run", dir.file("all.json"), "--out", out.string(), "--no-progress"}),
            0);
  EXPECT_EQ(read_results(out / "alpha" / "results.jsonl").size(), 1u);
  EXPECT_EQ(read_results(out / "beta" / "results.jsonl").size(), 2u);
  const std::string report = read_text(out / "report.md");
  EXPECT_EQ(report.rfind("# ditbench report: both", 0), 0u) << report;
  EXPECT_NE(report.find("## ditbench report: alpha"), std::string::npos) << report;
  EXPECT_NE(report.find("## ditbench report: beta"), std::string::npos) << report;
  EXPECT_NE(report.find("cache=fbcache"), std::string::npos) << report;
}

TEST(SuiteCollection, BadEntriesAreExit2NamingTheJsonPath) {
  testing::TempDir dir("ditbench_collection_bad");
  write_json(dir.path() / "ok.json", testing::tiny_cp_suite("ok", {{"cache", {"none"}}}, 3));
  const std::vector<std::pair<nlohmann::json, std::string>> cases = {
      {{{"suites", {"ok.json", 3}}}, "/suites/1: expected a suite file name"},
      {{{"suites", {"missing.json"}}}, "/suites/0: "},
      {{{"suites", nlohmann::json::array()}}, "/suites: expected a non-empty array"},
      {{{"suites", {"ok.json"}}, {"axes", {}}}, "/axes: unknown key in a suite collection"},
      {{{"suites", {"nested.json"}}}, "is itself a collection"},
  };
  write_json(dir.path() / "nested.json", {{"suites", {"ok.json"}}});
  for (const auto& [doc, message] : cases) {
    write_json(dir.path() / "c.json", doc);
    const std::string error =
        testing::input_error_of([&] { load_suite_collection(dir.path() / "c.json"); });
    EXPECT_NE(error.find(message), std::string::npos) << doc.dump() << " -> " << error;
    EXPECT_EQ(testing::run_cli({"run", dir.file("c.json"), "--out", dir.file("o")}), 2)
        << doc.dump();
  }
  // An ordinary suite is not a collection.
  EXPECT_FALSE(load_suite_collection(dir.path() / "ok.json").has_value());
}

// Every suite the project ships (CPU and GPU ones alike) loads and expands: a typo in a suite a
// user would only run on a GPU is caught here, with the file named.
TEST(SuiteCollection, EveryShippedSuiteLoadsAndExpands) {
  int suites = 0;
  for (const auto& entry : fs::directory_iterator(fs::path(DITBENCH_SOURCE_DIR) / "suites")) {
    if (entry.path().extension() != ".json") continue;
    SCOPED_TRACE(entry.path().filename().string());
    try {
      if (auto collection = load_suite_collection(entry.path())) {
        EXPECT_FALSE(collection->suites.empty());
        for (const auto& file : collection->suites)
          EXPECT_FALSE(expand_matrix(load_suite(file)).empty());
      } else {
        const auto configs = expand_matrix(load_suite(entry.path()));
        EXPECT_FALSE(configs.empty());
        EXPECT_EQ(std::count_if(configs.begin(), configs.end(),
                                [](const RunConfig& c) { return c.baseline; }),
                  1);
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
    }
    ++suites;
  }
  EXPECT_GE(suites, 20);
}

TEST(SuiteCollection, ShippedModelsCpuListsEveryFamilysTinySuite) {
  const auto collection =
      load_suite_collection(fs::path(DITBENCH_SOURCE_DIR) / "suites" / "models-cpu.json");
  ASSERT_TRUE(collection.has_value());
  std::set<std::string> models;
  for (const auto& file : collection->suites) models.insert(load_suite(file).settings.model);
  EXPECT_EQ(models, (std::set<std::string>{"hunyuan-video", "flux", "cogvideox", "mochi", "wan"}));
}

}  // namespace
}  // namespace ditbench
