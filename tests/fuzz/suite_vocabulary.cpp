// The names a suite may use, for the suite fuzz target only. The parser asks the registries of
// the model, attention, cache and quantization libraries for them; linking those libraries (and
// compiling them under the sanitizers) would make the target slow to build for no gain in what
// the parser is exercised with, so the target gets this fixed copy of the vocabulary instead.
#include <array>
#include <map>
#include <string>
#include <vector>

#include "models/common/error.h"
#include "models/pipeline.h"
#include "optimizations/attention/backends.h"
#include "optimizations/cache/cache_policy.h"
#include "optimizations/quant/quant.h"

namespace ditbench {

const std::vector<FamilyInfo>& model_families() {
  static const std::vector<FamilyInfo> families = {
      {"hunyuan-video", {"hunyuan-video", "hunyuan-video-tiny"}, 16, 4, false},
      {"with-cfg", {"with-cfg-tiny"}, 16, 1, true},
  };
  return families;
}

const std::vector<std::string>& attention_backend_names() {
  static const std::vector<std::string> names = {"math",  "sdpa",      "flash",       "efficient",
                                                 "cudnn", "cudnn_fp8", "cutlass_fmha"};
  return names;
}

const std::vector<std::string>& cache_policy_names() {
  static const std::vector<std::string> names = {"none", "fbcache", "teacache"};
  return names;
}

const std::vector<std::string>& quant_mode_names() {
  static const std::vector<std::string> names = {"none", "fp8_dynamic", "fp8_weight_only"};
  return names;
}

std::array<double, 5> parse_teacache_coefficients(const std::string& spec) {
  if (spec == "hunyuan-video") return {1, 2, 3, 4, 5};
  throw InputError("unknown TeaCache coefficient set '" + spec + "'");
}

}  // namespace ditbench
