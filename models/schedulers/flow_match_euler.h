#pragma once
// Flow-matching Euler scheduler, as diffusers' FlowMatchEulerDiscreteScheduler is configured by
// the HunyuanVideo (static shift 7), FLUX.1 (resolution-dependent exponential time shift with mu)
// and Mochi (inverted sigmas) pipelines. Spec: ../shared/specs/models.md §8.1 and §1.10.
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "models/schedulers/scheduler.h"

namespace ditbench {

struct FlowMatchEulerConfig {
  double shift = 1.0;                 // static shift: σ' = shift·σ / (1 + (shift − 1)·σ)
  bool use_dynamic_shifting = false;  // σ' = e^mu / (e^mu + 1/σ − 1); set_timesteps needs mu
  bool invert_sigmas = false;         // Mochi: σ → 1 − σ, terminal 1 instead of 0
  int64_t num_train_timesteps = 1000;
  // Resolution-dependent mu (FLUX's calculate_shift): linear in the image token count.
  double base_shift = 0.5;
  double max_shift = 1.15;
  int64_t base_image_seq_len = 256;
  int64_t max_image_seq_len = 4096;

  static FlowMatchEulerConfig hunyuan_video();  // shift 7, static
  static FlowMatchEulerConfig flux_dev();       // dynamic shifting
  static FlowMatchEulerConfig flux_schnell();   // shift 1, static
  static FlowMatchEulerConfig mochi();          // shift 1, inverted sigmas
};

class FlowMatchEulerScheduler : public Scheduler {
 public:
  explicit FlowMatchEulerScheduler(FlowMatchEulerConfig config = {});

  // Builds the schedule for `num_steps` steps. Without `sigmas_in` the scheduler's own default is
  // used: linspace over its trained range, which diffusers shifts twice (once at construction,
  // once here); the pipelines all pass `sigmas_in` (see hunyuan_video_sigmas, flux_sigmas,
  // mochi_sigmas). `mu` is required with dynamic shifting. Tensors are placed on `device`.
  void set_timesteps(int64_t num_steps, std::optional<std::vector<double>> sigmas_in = {},
                     std::optional<double> mu = {}, at::Device device = at::kCPU);

  // [num_steps + 1] f32: the shifted sigmas and the terminal value (0, or 1 when inverted).
  const at::Tensor& sigmas() const { return sigmas_; }
  // [num_steps] f32: σ·num_train_timesteps, what the model receives.
  const at::Tensor& timesteps() const override { return timesteps_; }
  int64_t num_steps() const override { return timesteps_.defined() ? timesteps_.size(0) : 0; }

  // prev = sample.f32 + dt · model_output with dt = σ[i+1] − σ[i] a 0-dim f32 tensor, so a bf16
  // model output gives a bf16 product (PyTorch's promotion rules) before the f32 add; the result
  // takes the model output's dtype, as in diffusers.
  at::Tensor step(const at::Tensor& model_output, int64_t step_index,
                  const at::Tensor& sample) override;

  const FlowMatchEulerConfig& config() const { return config_; }

 private:
  // Applies the static or dynamic shift with tensor ops in the dtype of `sigmas`.
  at::Tensor shifted(const at::Tensor& sigmas, std::optional<double> mu) const;

  FlowMatchEulerConfig config_;
  double sigma_min_ = 0.0, sigma_max_ = 1.0;  // the trained range, after the static shift
  at::Tensor sigmas_, timesteps_;
};

// HunyuanVideo's pipeline input: linspace(1, 0, n + 1)[:-1].
std::vector<double> hunyuan_video_sigmas(int64_t num_steps);
// FLUX's pipeline input: linspace(1, 1/n, n).
std::vector<double> flux_sigmas(int64_t num_steps);
// Mochi's pipeline input: linear_quadratic_schedule(n, threshold_noise), linear for n/2 steps.
std::vector<double> mochi_sigmas(int64_t num_steps, double threshold_noise = 0.025);
// FLUX's mu for an image of `image_seq_len` packed tokens ((H/16)·(W/16)).
double flux_mu(int64_t image_seq_len,
               const FlowMatchEulerConfig& config = FlowMatchEulerConfig::flux_dev());

}  // namespace ditbench
