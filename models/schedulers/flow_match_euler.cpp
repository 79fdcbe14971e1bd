#include "models/schedulers/flow_match_euler.h"

#include <cmath>
#include <string>
#include <utility>

#include "models/common/error.h"

namespace ditbench {

FlowMatchEulerConfig FlowMatchEulerConfig::hunyuan_video() {
  FlowMatchEulerConfig config;
  config.shift = 7.0;
  return config;
}

FlowMatchEulerConfig FlowMatchEulerConfig::flux_dev() {
  FlowMatchEulerConfig config;
  config.shift = 3.0;  // shipped in the config, unused while dynamic shifting is on
  config.use_dynamic_shifting = true;
  return config;
}

FlowMatchEulerConfig FlowMatchEulerConfig::flux_schnell() { return FlowMatchEulerConfig{}; }

FlowMatchEulerConfig FlowMatchEulerConfig::mochi() {
  FlowMatchEulerConfig config;
  config.invert_sigmas = true;
  return config;
}

FlowMatchEulerScheduler::FlowMatchEulerScheduler(FlowMatchEulerConfig config)
    : config_(std::move(config)) {
  if (config_.num_train_timesteps < 1) {
    throw InputError("flow-match scheduler: num_train_timesteps must be positive, got " +
                     std::to_string(config_.num_train_timesteps));
  }
  // The trained range is the first and last of linspace(1, T, T)/T in f32, statically shifted in
  // f32 as diffusers does at construction; its ends seed the default schedule.
  const auto T = static_cast<double>(config_.num_train_timesteps);
  auto ends = at::tensor({T, 1.0}, at::kFloat) / T;  // [2]: σ_max, σ_min before the shift
  if (!config_.use_dynamic_shifting) ends = shifted(ends, std::nullopt);
  sigma_max_ = ends[0].item<double>();
  sigma_min_ = ends[1].item<double>();
}

at::Tensor FlowMatchEulerScheduler::shifted(const at::Tensor& sigmas,
                                            std::optional<double> mu) const {
  // Scalars stay weak (PyTorch and NumPy ≥ 2 alike), so this runs in the dtype of `sigmas`.
  if (config_.use_dynamic_shifting) {
    // time_shift "exponential" with exponent 1: e^mu / (e^mu + (1/σ − 1)).
    const double e_mu = std::exp(*mu);
    return at::reciprocal(sigmas).sub(1.0).add(e_mu).reciprocal().mul(e_mu);
  }
  return (sigmas * config_.shift) / ((sigmas * (config_.shift - 1.0)).add(1.0));
}

void FlowMatchEulerScheduler::set_timesteps(int64_t num_steps,
                                            std::optional<std::vector<double>> sigmas_in,
                                            std::optional<double> mu, at::Device device) {
  if (num_steps < 1) {
    throw InputError("flow-match scheduler: the number of steps must be positive, got " +
                     std::to_string(num_steps));
  }
  if (config_.use_dynamic_shifting && !mu) {
    throw InputError("flow-match scheduler: dynamic shifting needs mu (see flux_mu)");
  }
  const auto T = static_cast<double>(config_.num_train_timesteps);
  at::Tensor sigmas;  // [num_steps], f32 when given, f64 for the default schedule
  if (sigmas_in) {
    if (static_cast<int64_t>(sigmas_in->size()) != num_steps) {
      throw InputError("flow-match scheduler: " + std::to_string(sigmas_in->size()) +
                       " sigmas given for " + std::to_string(num_steps) + " steps");
    }
    // The pipeline's list becomes an f32 array, and the shift runs in f32.
    sigmas = at::tensor(*sigmas_in, at::kDouble).to(at::kFloat);
  } else {
    // NumPy's linspace in f64 over the trained range (its endpoints are f32 values), then /T.
    const double start = sigma_max_ * T, stop = sigma_min_ * T;
    auto timesteps = at::full({1}, start, at::kDouble);
    if (num_steps > 1) {
      const double step = (stop - start) / static_cast<double>(num_steps - 1);
      timesteps = at::arange(num_steps, at::kDouble) * step + start;
      timesteps[num_steps - 1] = stop;
    }
    sigmas = timesteps / T;
  }
  sigmas = shifted(sigmas, mu).to(at::kFloat);
  auto timesteps = sigmas * T;
  at::Tensor terminal;
  if (config_.invert_sigmas) {
    // Mochi's model is trained on 1 − σ: the schedule rises from 0 and ends at 1.
    sigmas = 1.0 - sigmas;
    timesteps = sigmas * T;
    terminal = at::ones({1}, at::kFloat);
  } else {
    terminal = at::zeros({1}, at::kFloat);
  }
  sigmas_ = at::cat({sigmas, terminal}).to(device);
  timesteps_ = timesteps.to(device);
}

at::Tensor FlowMatchEulerScheduler::step(const at::Tensor& model_output, int64_t step_index,
                                         const at::Tensor& sample) {
  TORCH_CHECK(sigmas_.defined(), "flow-match scheduler: step before set_timesteps");
  TORCH_CHECK(step_index >= 0 && step_index < num_steps(), "flow-match scheduler: step index ",
              step_index, " outside [0, ", num_steps(), ")");
  TORCH_CHECK(model_output.sizes() == sample.sizes(), "flow-match scheduler: model output ",
              model_output.sizes(), " and sample ", sample.sizes(), " differ in shape");
  // dt: 0-dim f32, so it never promotes a bf16 model output; the product is rounded to bf16.
  const auto dt = sigmas_[step_index + 1] - sigmas_[step_index];
  const auto prev = sample.to(at::kFloat) + dt * model_output;
  return prev.to(model_output.scalar_type());
}

std::vector<double> hunyuan_video_sigmas(int64_t num_steps) {
  // linspace(1, 0, n + 1) without its last value.
  std::vector<double> sigmas(num_steps);
  for (int64_t i = 0; i < num_steps; ++i) {
    sigmas[i] = 1.0 - static_cast<double>(i) / static_cast<double>(num_steps);
  }
  return sigmas;
}

std::vector<double> flux_sigmas(int64_t num_steps) {
  std::vector<double> sigmas(num_steps);
  const double stop = 1.0 / static_cast<double>(num_steps);
  const double step = num_steps > 1 ? (stop - 1.0) / static_cast<double>(num_steps - 1) : 0.0;
  for (int64_t i = 0; i < num_steps; ++i) sigmas[i] = 1.0 + static_cast<double>(i) * step;
  if (num_steps > 0) sigmas[num_steps - 1] = stop;
  return sigmas;
}

std::vector<double> mochi_sigmas(int64_t num_steps, double threshold_noise) {
  if (num_steps < 2) {
    throw InputError("Mochi sigma schedule: needs at least 2 steps, got " +
                     std::to_string(num_steps));
  }
  // Mochi's linear_quadratic_schedule: noise levels rise linearly to threshold_noise over the
  // first half, then quadratically to 1; the pipeline passes 1 − level.
  const int64_t linear_steps = num_steps / 2;
  const int64_t quadratic_steps = num_steps - linear_steps;
  const double step_diff = static_cast<double>(linear_steps) - threshold_noise * num_steps;
  const double qs2 = static_cast<double>(quadratic_steps * quadratic_steps);
  const double quadratic_coef = step_diff / (static_cast<double>(linear_steps) * qs2);
  const double linear_coef = threshold_noise / linear_steps - 2.0 * step_diff / qs2;
  const double constant = quadratic_coef * static_cast<double>(linear_steps * linear_steps);
  std::vector<double> sigmas;
  sigmas.reserve(num_steps);
  for (int64_t i = 0; i < linear_steps; ++i) {
    sigmas.push_back(1.0 - static_cast<double>(i) * threshold_noise / linear_steps);
  }
  for (int64_t i = linear_steps; i < num_steps; ++i) {
    const auto x = static_cast<double>(i);
    sigmas.push_back(1.0 - (quadratic_coef * (x * x) + linear_coef * x + constant));
  }
  return sigmas;
}

double flux_mu(int64_t image_seq_len, const FlowMatchEulerConfig& config) {
  const double slope = (config.max_shift - config.base_shift) /
                       static_cast<double>(config.max_image_seq_len - config.base_image_seq_len);
  const double intercept =
      config.base_shift - slope * static_cast<double>(config.base_image_seq_len);
  return static_cast<double>(image_seq_len) * slope + intercept;
}

}  // namespace ditbench
