#pragma once
// Shared helpers for tests: where the fixtures are, and the relative error used by every parity
// check (||a - b|| / ||b||, as ../shared/fixtures/README.md defines it).
#include <ATen/ATen.h>

#include <cstdlib>
#include <string>

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

}  // namespace ditbench::testing
