#pragma once
// CogVideoX's schedulers as diffusers runs them (models.md §8.2): CogVideoXDDIMScheduler (the
// released default) and CogVideoXDPMScheduler (DPM-Solver++(2M) SDE, a documented drop-in), both
// with scaled-linear betas in float64, the SNR shift, zero-terminal-SNR rescaling, trailing
// timestep spacing and v-prediction.
#include <ATen/ATen.h>

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>

#include "models/schedulers/scheduler.h"

namespace ditbench {

// diffusers' scheduler_config.json of the CogVideoX checkpoints; defaults are CogVideoX-2b's.
struct CogVideoXSchedulerConfig {
  int64_t num_train_timesteps = 1000;
  double beta_start = 0.00085;
  double beta_end = 0.012;
  std::string beta_schedule = "scaled_linear";
  std::string prediction_type = "v_prediction";
  std::string timestep_spacing = "trailing";
  bool rescale_betas_zero_snr = true;
  bool set_alpha_to_one = true;
  bool clip_sample = false;
  double snr_shift_scale = 3.0;  // CogVideoX-2b 3.0, CogVideoX-5b 1.0

  static CogVideoXSchedulerConfig cogvideox_2b();
  static CogVideoXSchedulerConfig cogvideox_5b();
  // Reads a diffusers scheduler_config.json object (either scheduler class); InputError names
  // `source` and the key, Unsupported a valid setting this build does not implement.
  static CogVideoXSchedulerConfig from_json(const nlohmann::json& j, const std::string& source);
};

// What the two schedulers share: the float64 alphas_cumprod table and the integer timesteps.
class CogVideoXSchedulerBase : public Scheduler {
 public:
  explicit CogVideoXSchedulerBase(CogVideoXSchedulerConfig config);

  // Trailing spacing: round(arange(T, 0, -T/n)) - 1 as int64 on `device` (50 -> 999, 979, ..., 19).
  virtual void set_timesteps(int64_t num_steps, at::Device device = at::kCPU);
  const at::Tensor& timesteps() const override { return timesteps_; }
  int64_t num_steps() const override { return timesteps_.defined() ? timesteps_.size(0) : 0; }
  // [num_train_timesteps] float64 on the CPU.
  const at::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  const CogVideoXSchedulerConfig& config() const { return config_; }

 protected:
  struct StepAlphas {
    at::Tensor t, prev;  // 0-dim: ᾱ_t (f64) and ᾱ_prev (f64, or the f32 1.0 past the end)
    bool last = false;   // prev timestep < 0
  };
  StepAlphas alphas_at(int64_t step_index) const;
  // v-prediction: x0 = sqrt(ᾱ_t)·sample − sqrt(1 − ᾱ_t)·v with 0-dim coefficient tensors, so the
  // products keep the dtypes PyTorch gives them (bf16 sample times a 0-dim f64 stays bf16).
  at::Tensor predicted_x0(const at::Tensor& model_output, const at::Tensor& sample,
                          const at::Tensor& alpha_t) const;
  int64_t timestep_at(int64_t step_index) const;

  CogVideoXSchedulerConfig config_;
  at::Tensor alphas_cumprod_;  // f64, CPU
  at::Tensor final_alpha_cumprod_;
  at::Tensor timesteps_;
  std::vector<int64_t> timestep_values_;
};

class CogVideoXDDIMScheduler : public CogVideoXSchedulerBase {
 public:
  explicit CogVideoXDDIMScheduler(CogVideoXSchedulerConfig config = {});
  // prev = A·sample + B·x0 with A = sqrt((1 − ᾱ_prev)/(1 − ᾱ_t)), B = sqrt(ᾱ_prev) − sqrt(ᾱ_t)·A
  // (eta ignored, as in diffusers); the result has the promoted dtype of its terms.
  at::Tensor step(const at::Tensor& model_output, int64_t step_index,
                  const at::Tensor& sample) override;
};

class CogVideoXDPMScheduler : public CogVideoXSchedulerBase {
 public:
  explicit CogVideoXDPMScheduler(CogVideoXSchedulerConfig config = {});
  // Also forgets the previous x0 (a new generation).
  void set_timesteps(int64_t num_steps, at::Device device = at::kCPU) override;
  // The noise source, a CPU generator as the pipeline's (the same one that drew the latents);
  // without one the global default generator draws.
  void set_generator(std::optional<at::Generator> generator) { generator_ = std::move(generator); }
  // DPM-Solver++(2M) SDE: one noise draw per step, a second one (replacing the first) from the
  // second step on, except on the last. Steps must come in order.
  at::Tensor step(const at::Tensor& model_output, int64_t step_index,
                  const at::Tensor& sample) override;

 private:
  at::Tensor noise_like(const at::Tensor& sample);

  std::optional<at::Generator> generator_;
  at::Tensor old_x0_;
};

}  // namespace ditbench
