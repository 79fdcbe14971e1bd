#pragma once
// `ditbench parity REFDIR --checkpoint CKPT`: replays end-to-end reference generations (format of
// ../shared/fixtures/e2e/README.md: expected.json plus one safetensors file per run holding the
// stored noise, the baseline's latents and frames, and each cached run's final latents) and
// reports how far ditbench agrees with them.
//
// Pass criteria (fp32, CPU): baseline latents and frames within 1e-4 relative; every cache
// decision equal, except at steps whose reference signal lies within 1e-4 (relative) of the
// threshold; final latents of cached runs within 1e-3 relative where all decisions agree.
#include <nlohmann/json.hpp>

#include <string>

namespace ditbench {

struct E2eParityReport {
  bool pass = false;
  nlohmann::json json;  // per run and config: errors, decisions, borderline steps
};

struct E2eTolerances {
  double baseline = 1e-4;
  double borderline = 1e-4;
  double cached_latents = 1e-3;
};

E2eParityReport run_e2e_parity(const std::string& refdir, const std::string& checkpoint,
                               const E2eTolerances& tol = {});

}  // namespace ditbench
