#pragma once
// The suite that context-parallel runs of the runner and of the CLI are tested with: the tiny
// HunyuanVideo preset (2 heads) with random weights on the CPU at 48 x 48 x 5, a 2 x 3 x 3 patch
// grid, so 18 image tokens, and 6 text tokens of which 4 are valid; over 4 ranks both sequences
// need padding. One warmup-free repeat.
#include <nlohmann/json.hpp>

#include <string>

namespace ditbench::testing {

inline nlohmann::json tiny_cp_suite(const std::string& name, const nlohmann::json& axes,
                                    int steps) {
  return {{"name", name},
          {"model", "hunyuan-video"},
          {"preset", "hunyuan-video-tiny"},
          {"weights", "random"},
          {"dtype", "float32"},
          {"device", "cpu"},
          {"height", 48},
          {"width", 48},
          {"frames", 5},
          {"steps", steps},
          {"warmup", 0},
          {"repeats", 1},
          {"prompt", {{"tokens", 6}, {"valid", 4}}},
          {"axes", axes}};
}

}  // namespace ditbench::testing
