#include <torch/nn/module.h>

#include "models/checkpoint/checkpoint.h"
#include "models/pipeline.h"

namespace ditbench {

void init_or_load_weights(torch::nn::Module& module, bool random, uint64_t seed,
                          const std::string& dir, const std::vector<std::string>& ignore_prefixes) {
  if (random) {
    random_init(module, seed);
  } else {
    load_module(module, Checkpoint::open(dir), ignore_prefixes);
  }
  module.eval();
}

const std::string& random_weights_note() {
  static const std::string note =
      "random weights (seeded init at full size): timings are exact, frames and quality numbers "
      "are not those of a trained model";
  return note;
}

}  // namespace ditbench
