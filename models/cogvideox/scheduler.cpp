#include "models/cogvideox/scheduler.h"

#include <nlohmann/json.hpp>

#include <cmath>

#include "models/common/error.h"
#include "models/common/json_config.h"

namespace ditbench {

CogVideoXSchedulerConfig CogVideoXSchedulerConfig::cogvideox_2b() { return {}; }

CogVideoXSchedulerConfig CogVideoXSchedulerConfig::cogvideox_5b() {
  CogVideoXSchedulerConfig c;
  c.snr_shift_scale = 1.0;
  return c;
}

CogVideoXSchedulerConfig CogVideoXSchedulerConfig::from_json(const nlohmann::json& j,
                                                             const std::string& source) {
  require_config_object(j, source);
  CogVideoXSchedulerConfig c;
  read_config_int(j, source, "num_train_timesteps", c.num_train_timesteps);
  read_config_double(j, source, "beta_start", c.beta_start);
  read_config_double(j, source, "beta_end", c.beta_end);
  read_config_string(j, source, "beta_schedule", c.beta_schedule);
  read_config_string(j, source, "prediction_type", c.prediction_type);
  read_config_string(j, source, "timestep_spacing", c.timestep_spacing);
  read_config_bool(j, source, "rescale_betas_zero_snr", c.rescale_betas_zero_snr);
  read_config_bool(j, source, "set_alpha_to_one", c.set_alpha_to_one);
  read_config_bool(j, source, "clip_sample", c.clip_sample);
  read_config_double(j, source, "snr_shift_scale", c.snr_shift_scale);
  if (c.num_train_timesteps < 2) {
    throw InputError(source + ": key 'num_train_timesteps' must be at least 2");
  }
  if (j.contains("trained_betas") && !j.at("trained_betas").is_null()) {
    throw Unsupported(source + ": trained_betas are not implemented");
  }
  if (c.beta_schedule != "scaled_linear" && c.beta_schedule != "linear") {
    throw Unsupported(source + ": beta_schedule '" + c.beta_schedule +
                      "' is not implemented (scaled_linear, linear)");
  }
  if (c.prediction_type != "v_prediction") {
    throw Unsupported(source + ": prediction_type '" + c.prediction_type +
                      "' is not implemented (v_prediction)");
  }
  if (c.timestep_spacing != "trailing") {
    throw Unsupported(source + ": timestep_spacing '" + c.timestep_spacing +
                      "' is not implemented (trailing)");
  }
  if (c.clip_sample) throw Unsupported(source + ": clip_sample is not implemented");
  return c;
}

CogVideoXSchedulerBase::CogVideoXSchedulerBase(CogVideoXSchedulerConfig config)
    : config_(std::move(config)) {
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const int64_t n = config_.num_train_timesteps;
  at::Tensor betas =
      config_.beta_schedule == "linear"
          ? at::linspace(config_.beta_start, config_.beta_end, n, f64.dtype(at::kFloat))
          : at::linspace(std::sqrt(config_.beta_start), std::sqrt(config_.beta_end), n, f64).pow(2);
  auto ac = at::cumprod(1.0 - betas, 0);
  const double s = config_.snr_shift_scale;
  ac = ac / (s + (1 - s) * ac);
  if (config_.rescale_betas_zero_snr) {
    auto root = ac.sqrt();
    auto first = root[0].clone(), last = root[-1].clone();
    root = (root - last) * (first / (first - last));
    ac = root.pow(2);
  }
  alphas_cumprod_ = ac;
  final_alpha_cumprod_ = config_.set_alpha_to_one ? at::scalar_tensor(1.0, at::kFloat) : ac[0];
}

void CogVideoXSchedulerBase::set_timesteps(int64_t num_steps, at::Device device) {
  const int64_t train = config_.num_train_timesteps;
  if (num_steps < 1 || num_steps > train) {
    throw InputError("steps: CogVideoX's scheduler takes 1 to " + std::to_string(train) +
                     " steps, got " + std::to_string(num_steps));
  }
  // numpy: round(arange(train, 0, -ratio)) - 1; arange has ceil((0 - train) / -ratio) entries,
  // entry i being train + i * (-ratio).
  const double ratio = static_cast<double>(train) / static_cast<double>(num_steps);
  const auto count = static_cast<int64_t>(std::ceil(-static_cast<double>(train) / -ratio));
  timestep_values_.clear();
  for (int64_t i = 0; i < count; ++i) {
    const double v = static_cast<double>(train) + static_cast<double>(i) * -ratio;
    timestep_values_.push_back(static_cast<int64_t>(std::nearbyint(v)) - 1);
  }
  timesteps_ = at::tensor(timestep_values_, at::kLong).to(device);
}

int64_t CogVideoXSchedulerBase::timestep_at(int64_t step_index) const {
  TORCH_CHECK(step_index >= 0 && step_index < static_cast<int64_t>(timestep_values_.size()),
              "scheduler step ", step_index, " outside the ", timestep_values_.size(),
              " steps set");
  return timestep_values_[static_cast<size_t>(step_index)];
}

CogVideoXSchedulerBase::StepAlphas CogVideoXSchedulerBase::alphas_at(int64_t step_index) const {
  // diffusers divides by the step count it was given, not the length of the table.
  const int64_t n = static_cast<int64_t>(timestep_values_.size());
  const int64_t t = timestep_at(step_index);
  const int64_t prev = t - config_.num_train_timesteps / n;
  StepAlphas a;
  a.t = alphas_cumprod_[t];
  a.last = prev < 0;
  a.prev = a.last ? final_alpha_cumprod_ : alphas_cumprod_[prev];
  return a;
}

at::Tensor CogVideoXSchedulerBase::predicted_x0(const at::Tensor& model_output,
                                                const at::Tensor& sample,
                                                const at::Tensor& alpha_t) const {
  auto beta_t = 1 - alpha_t;
  return alpha_t.pow(0.5).to(sample.device()) * sample -
         beta_t.pow(0.5).to(sample.device()) * model_output;
}

CogVideoXDDIMScheduler::CogVideoXDDIMScheduler(CogVideoXSchedulerConfig config)
    : CogVideoXSchedulerBase(std::move(config)) {}

at::Tensor CogVideoXDDIMScheduler::step(const at::Tensor& model_output, int64_t step_index,
                                        const at::Tensor& sample) {
  const auto a = alphas_at(step_index);
  const auto device = sample.device();
  auto x0 = predicted_x0(model_output, sample, a.t);
  auto coef_sample = ((1 - a.prev) / (1 - a.t)).pow(0.5);
  auto coef_x0 = a.prev.pow(0.5) - a.t.pow(0.5) * coef_sample;
  return coef_sample.to(device) * sample + coef_x0.to(device) * x0;
}

CogVideoXDPMScheduler::CogVideoXDPMScheduler(CogVideoXSchedulerConfig config)
    : CogVideoXSchedulerBase(std::move(config)) {}

void CogVideoXDPMScheduler::set_timesteps(int64_t num_steps, at::Device device) {
  CogVideoXSchedulerBase::set_timesteps(num_steps, device);
  old_x0_ = at::Tensor();
}

at::Tensor CogVideoXDPMScheduler::noise_like(const at::Tensor& sample) {
  // randn_tensor with a CPU generator: drawn on the CPU in the sample's dtype, then moved.
  const auto opts = at::TensorOptions().dtype(sample.scalar_type());
  auto noise =
      generator_ ? at::randn(sample.sizes(), *generator_, opts) : at::randn(sample.sizes(), opts);
  return noise.to(sample.device());
}

at::Tensor CogVideoXDPMScheduler::step(const at::Tensor& model_output, int64_t step_index,
                                       const at::Tensor& sample) {
  const auto a = alphas_at(step_index);
  const auto device = sample.device();
  if (step_index == 0) old_x0_ = at::Tensor();
  auto x0 = predicted_x0(model_output, sample, a.t);
  auto lambda = [](const at::Tensor& alpha) { return (alpha / (1 - alpha)).pow(0.5).log(); };
  auto lamb = lambda(a.t);
  auto h = lambda(a.prev) - lamb;  // +inf on the last step (ᾱ_prev = 1)
  auto mult1 = ((1 - a.prev) / (1 - a.t)).pow(0.5) * (-h).exp();
  auto mult2 = (-2 * h).expm1() * a.prev.pow(0.5);
  auto mult_noise = (1 - a.prev).pow(0.5) * (1 - (-2 * h).exp()).pow(0.5);
  auto m1 = mult1.to(device), m2 = mult2.to(device), mn = mult_noise.to(device);
  at::Tensor prev = m1 * sample - m2 * x0 + mn * noise_like(sample);
  if (old_x0_.defined() && !a.last) {
    // Second order from the previous step's x0 (timestep_back = timesteps[i - 1]).
    auto back = alphas_cumprod_[timestep_at(step_index - 1)];
    auto r = (lamb - lambda(back)) / h;
    auto mult3 = (1 + 1 / (2 * r)).to(device), mult4 = (1 / (2 * r)).to(device);
    auto denoised = mult3 * x0 - mult4 * old_x0_;
    prev = m1 * sample - m2 * denoised + mn * noise_like(sample);
  }
  old_x0_ = x0;
  return prev;
}

}  // namespace ditbench
