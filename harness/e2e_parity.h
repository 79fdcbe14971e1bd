#pragma once
// `ditbench parity REFDIR --checkpoint CKPT`: replays end-to-end reference generations (format of
// ../shared/fixtures/e2e/README.md: expected.json plus one safetensors file per run holding the
// stored noise, the baseline's latents and frames, and each cached run's final latents) and
// reports how far ditbench agrees with them.
//
// Pass criteria (float32 on the CPU, the references' own precision): baseline latents and frames
// within 1e-4 relative; every cache decision equal, except at steps whose reference signal lies
// within 1e-4 (relative) of the threshold; final latents of cached runs within 1e-3 relative
// where all decisions agree.
//
// On another device or in another dtype the replay is a measurement, not a check: per run and
// config it reports the decisions that differ from the reference (step, the value the reference
// compared with the threshold), the reused-step counts, PSNR/SSIM of the decoded frames against
// the reference's and the final latents' relative error; nothing passes or fails.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <string>

namespace ditbench {

struct E2eTolerances {
  double baseline = 1e-4;
  double borderline = 1e-4;
  double cached_latents = 1e-3;
};

struct E2eReplay {
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  std::string attention = "sdpa";  // attention backend by registry name
  E2eTolerances tol;               // the pass criteria (float32 on the CPU only)
};

struct E2eParityReport {
  bool reference_precision = true;  // float32 on the CPU: `pass` applies the criteria
  bool pass = false;                // every criterion held; true once everything ran otherwise
  // refdir, checkpoint, device, dtype, attention, reference_precision, pass and per run: the
  // baseline's errors and frame quality, and per cache config the decisions, reuse counts,
  // differing steps, frame quality and final-latent error ("pass" keys at reference precision).
  nlohmann::json json;
};

// InputError for a malformed REFDIR or checkpoint; Unsupported when the attention backend cannot
// serve the device and dtype.
E2eParityReport run_e2e_parity(const std::string& refdir, const std::string& checkpoint,
                               const E2eReplay& replay = {});

// The report as a Markdown table, one row per run and config, followed by the steps whose
// decision differs from the reference's.
std::string e2e_parity_markdown(const E2eParityReport& report);

}  // namespace ditbench
