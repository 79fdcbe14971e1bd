// Every bad input of tests/bad_inputs/catalogue.json through the real ditbench binary: the exit
// status the CLI contract promises (2 for bad input) and exactly one line on stderr holding the
// expected message and the file, JSON path or tensor at fault.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "cli/child_process.h"
#include "test_util.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;
using ditbench::testing::ChildProcess;
using ditbench::testing::lines_of;

struct BadInput {
  std::string name;
  std::vector<std::string> args;
  int exit_code = 2;
  std::vector<std::string> expect;  // substrings of the one stderr line
};

std::string catalogue_dir() { return ditbench::testing::source_dir() + "/tests/bad_inputs"; }

std::string substitute(std::string text, const std::string& out_dir) {
  const std::vector<std::pair<std::string, std::string>> placeholders = {
      {"{DIR}", catalogue_dir()}, {"{SRC}", ditbench::testing::source_dir()}, {"{OUT}", out_dir}};
  for (const auto& [key, value] : placeholders)
    for (size_t at = text.find(key); at != std::string::npos;
         at = text.find(key, at + value.size()))
      text.replace(at, key.size(), value);
  return text;
}

std::vector<BadInput> load_catalogue() {
  std::ifstream in(catalogue_dir() + "/catalogue.json");
  const auto doc = nlohmann::json::parse(in);
  std::vector<BadInput> cases;
  for (const auto& c : doc.at("cases")) {
    BadInput b;
    b.name = c.at("name").get<std::string>();
    b.args = c.at("args").get<std::vector<std::string>>();
    b.exit_code = c.at("exit").get<int>();
    b.expect = c.at("expect").get<std::vector<std::string>>();
    cases.push_back(std::move(b));
  }
  return cases;
}

class BadInputCatalogue : public ::testing::TestWithParam<BadInput> {
 protected:
  void SetUp() override {
    work_dir_ = fs::temp_directory_path() /
                ("ditbench_catalogue_" + std::to_string(::getpid()) + "_" + GetParam().name);
    std::system(("rm -rf '" + work_dir_.string() + "'").c_str());
    fs::create_directories(work_dir_ / "out");
  }
  void TearDown() override { std::system(("rm -rf '" + work_dir_.string() + "'").c_str()); }
  fs::path work_dir_;
};

TEST(BadInputCatalogueFile, HoldsAtLeastThirtyCasesWithDistinctNames) {
  const auto cases = load_catalogue();
  EXPECT_GE(cases.size(), 30u);
  std::set<std::string> names;
  for (const auto& c : cases) {
    EXPECT_TRUE(names.insert(c.name).second) << "duplicate case name " << c.name;
    EXPECT_FALSE(c.expect.empty()) << c.name << " expects no message";
  }
}

TEST_P(BadInputCatalogue, ExitsWithItsStatusAndOneClearLine) {
  const BadInput& c = GetParam();
  std::vector<std::string> args;
  for (const auto& a : c.args) args.push_back(substitute(a, (work_dir_ / "out").string()));
  ChildProcess child(args, work_dir_);
  ASSERT_TRUE(child.wait(std::chrono::seconds(120))) << c.name << ": still running after 120 s";
  const std::string err = child.stderr_text();
  EXPECT_EQ(child.term_signal(), 0)
      << c.name << ": killed by signal " << child.term_signal() << "\nstderr:\n"
      << err;
  EXPECT_EQ(child.exit_code(), c.exit_code) << "stderr:\n" << err;
  const auto lines = lines_of(err);
  ASSERT_EQ(lines.size(), 1u) << "stderr must be one line, got:\n" << err;
  EXPECT_EQ(lines[0].rfind("ditbench: ", 0), 0u) << lines[0];
  for (const auto& expected : c.expect) {
    const std::string want = substitute(expected, (work_dir_ / "out").string());
    EXPECT_NE(lines[0].find(want), std::string::npos) << "missing \"" << want << "\" in:\n"
                                                      << lines[0];
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, BadInputCatalogue, ::testing::ValuesIn(load_catalogue()),
                         [](const ::testing::TestParamInfo<BadInput>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace ditbench
