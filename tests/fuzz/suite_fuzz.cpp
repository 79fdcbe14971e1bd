// libFuzzer target: arbitrary bytes as a suite file. Parsing and matrix expansion must either
// succeed or throw InputError; a crash, a sanitizer report or another exception is a bug.
#include <cstdint>
#include <string>

#include "harness/suite.h"
#include "models/common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto doc = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return 0;  // load_suite reports invalid JSON before parse_suite runs
  try {
    const auto suite = ditbench::parse_suite(doc, "/nonexistent/fuzz/suite.json");
    const auto configs = ditbench::expand_matrix(suite);
    ditbench::plan_text(configs);
    for (const auto& c : configs) c.to_json().dump();
  } catch (const ditbench::InputError&) {
  }
  return 0;
}
