#pragma once
// UniPC multistep scheduler in flow-matching mode, as diffusers' UniPCMultistepScheduler runs with
// the Wan2.1 *-Diffusers configuration: prediction_type "flow_prediction", use_flow_sigmas,
// predict_x0 (UniPC-p predictor plus UniC corrector on data predictions), solver_type "bh2",
// lower_order_final, final_sigmas_type "zero", timestep_spacing "linspace". Spec: models.md §8.3.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "models/schedulers/scheduler.h"

namespace ditbench {

struct UniPCConfig {
  int64_t num_train_timesteps = 1000;
  double flow_shift = 3.0;  // σ' = shift·σ / (1 + (shift − 1)·σ); Wan: 3.0 at 480p, 5.0 at 720p
  int solver_order = 2;     // 1..3
  std::string solver_type = "bh2";  // "bh1" or "bh2"
  bool lower_order_final = true;    // the last steps drop to the orders they can support

  static UniPCConfig wan(double flow_shift = 3.0);
};

class UniPCMultistepScheduler : public Scheduler {
 public:
  // InputError on an impossible configuration.
  explicit UniPCMultistepScheduler(UniPCConfig config = UniPCConfig::wan());

  // σ = linspace(1, 1/T, n + 1)[:-1] in float64, shifted, the first nudged below 1 (1 − 1e-6) so
  // that log(σ) stays finite; timesteps = trunc(σ·T) (int64 on `device`); sigmas = float32 of
  // [σ, 0] (kept on the CPU, as diffusers keeps them). Resets the multistep history.
  void set_timesteps(int64_t num_steps, at::Device device = at::kCPU);

  const at::Tensor& sigmas() const { return sigmas_; }  // [n + 1] float32, CPU
  // [n] int64: what the Wan transformer receives.
  const at::Tensor& timesteps() const override { return timesteps_; }
  int64_t num_steps() const override { return timesteps_.defined() ? timesteps_.size(0) : 0; }

  // One step: the model output (a flow velocity, any float dtype) becomes the data prediction
  // x0 = sample − σ·v, the UniC corrector refines `sample` with it (from the second step on),
  // then the UniPC predictor gives the next sample in the sample's dtype. Steps must come in
  // order 0, 1, ..., n − 1 (the history lives in the scheduler); step 0 restarts it.
  at::Tensor step(const at::Tensor& model_output, int64_t step_index,
                  const at::Tensor& sample) override;

  const UniPCConfig& config() const { return config_; }

 private:
  // λ(σ) = log(1 − σ) − log(σ) of sigmas[i] as a 0-dim float32 tensor.
  at::Tensor lambda(int64_t i) const;
  // The predictor from `x` at step i (σ_i → σ_{i+1}) with the stored data predictions.
  at::Tensor predict(const at::Tensor& x, int order) const;
  // The corrected sample at step i (it replaces the predicted one): the step from σ_{i−1} redone
  // from `last_sample` with the new data prediction `model_t`.
  at::Tensor correct(const at::Tensor& model_t, const at::Tensor& last_sample, int order) const;
  // The UniPC weights for h = λ_t − λ_s0 and the ratios rks (the last one 1): R [order, order]
  // and b [order] (float32), plus hφ₁ = expm1(−h) and B(h).
  struct Coefficients {
    at::Tensor R, b, h_phi_1, B_h;
  };
  Coefficients coefficients(const at::Tensor& h, const std::vector<at::Tensor>& rks) const;

  UniPCConfig config_;
  at::Tensor sigmas_, timesteps_;
  std::vector<at::Tensor> model_outputs_;  // data predictions, oldest first (solver_order slots)
  at::Tensor last_sample_;
  int lower_order_nums_ = 0;
  int this_order_ = 1;
  int64_t step_index_ = 0;
};

}  // namespace ditbench
