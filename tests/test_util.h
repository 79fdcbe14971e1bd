#pragma once
// Shared helpers for tests: where the fixtures are, and the relative error used by every parity
// check (||a - b|| / ||b||, as ../shared/fixtures/README.md defines it).
#include <ATen/ATen.h>

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "models/common/error.h"

namespace ditbench::testing {

inline std::string fixtures_dir() {
  if (const char* env = std::getenv("DITBENCH_FIXTURES")) return env;
  return DITBENCH_FIXTURES_DIR;
}
inline std::string source_dir() { return DITBENCH_SOURCE_DIR; }
inline std::string binary_dir() { return DITBENCH_BINARY_DIR; }

inline double rel_error(const at::Tensor& out, const at::Tensor& ref) {
  auto o = out.to(at::kDouble), r = ref.to(at::kDouble);
  return (o - r).norm().item<double>() / r.norm().item<double>();
}

// A fresh folder per test, removed with everything in it afterwards. Not
// std::filesystem::remove_all: PyPI's libtorch.so exports an incompatible copy that crashes.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "ditbench_test") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "_XXXXXX")).string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~TempDir() { std::system(("rm -rf '" + path_.string() + "'").c_str()); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// The message of the InputError `fn` throws (a test failure when it throws none): bad input
// must name what is at fault.
template <typename Fn>
std::string input_error_of(Fn&& fn) {
  try {
    fn();
  } catch (const InputError& error) {
    return error.what();
  }
  ADD_FAILURE() << "expected InputError";
  return "";
}

}  // namespace ditbench::testing
