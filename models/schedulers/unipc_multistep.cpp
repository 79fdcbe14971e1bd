#include "models/schedulers/unipc_multistep.h"

#include <algorithm>
#include <cmath>

#include "models/common/error.h"

namespace ditbench {

UniPCConfig UniPCConfig::wan(double flow_shift) {
  UniPCConfig config;
  config.flow_shift = flow_shift;
  return config;
}

UniPCMultistepScheduler::UniPCMultistepScheduler(UniPCConfig config) : config_(std::move(config)) {
  if (config_.num_train_timesteps < 1) {
    throw InputError("UniPC scheduler: num_train_timesteps must be positive, got " +
                     std::to_string(config_.num_train_timesteps));
  }
  if (!(config_.flow_shift > 0)) {
    throw InputError("UniPC scheduler: flow_shift must be positive, got " +
                     std::to_string(config_.flow_shift));
  }
  if (config_.solver_order < 1 || config_.solver_order > 3) {
    throw InputError("UniPC scheduler: solver_order must be 1, 2 or 3, got " +
                     std::to_string(config_.solver_order));
  }
  if (config_.solver_type != "bh1" && config_.solver_type != "bh2") {
    throw InputError("UniPC scheduler: solver_type must be 'bh1' or 'bh2', got '" +
                     config_.solver_type + "'");
  }
}

void UniPCMultistepScheduler::set_timesteps(int64_t num_steps, at::Device device) {
  if (num_steps < 1) {
    throw InputError("UniPC scheduler: the number of steps must be positive, got " +
                     std::to_string(num_steps));
  }
  const auto T = static_cast<double>(config_.num_train_timesteps);
  const double shift = config_.flow_shift;
  // NumPy's linspace(1, 1/T, n + 1) without its last value, in float64, then the static shift.
  const double step = (1.0 / T - 1.0) / static_cast<double>(num_steps);
  std::vector<double> sigmas(static_cast<size_t>(num_steps) + 1, 0.0);
  std::vector<int64_t> timesteps(static_cast<size_t>(num_steps));
  for (int64_t i = 0; i < num_steps; ++i) {
    const double s = static_cast<double>(i) * step + 1.0;
    sigmas[i] = shift * s / (1.0 + (shift - 1.0) * s);
  }
  // log(1 − σ) must stay finite at the first step.
  if (std::fabs(sigmas[0] - 1.0) < 1e-6) sigmas[0] -= 1e-6;
  for (int64_t i = 0; i < num_steps; ++i) {
    timesteps[i] = static_cast<int64_t>(sigmas[i] * T);  // truncation, as astype(int64)
  }
  sigmas_ = at::tensor(sigmas, at::kDouble).to(at::kFloat);  // final sigma 0
  timesteps_ = at::tensor(timesteps, at::kLong).to(device);
  model_outputs_.assign(static_cast<size_t>(config_.solver_order), at::Tensor());
  last_sample_ = at::Tensor();
  lower_order_nums_ = 0;
  this_order_ = 1;
  step_index_ = 0;
}

at::Tensor UniPCMultistepScheduler::lambda(int64_t i) const {
  const at::Tensor sigma = sigmas_[i];  // 0-dim float32: σ_t; α_t = 1 − σ_t
  return at::log(1 - sigma) - at::log(sigma);
}

UniPCMultistepScheduler::Coefficients UniPCMultistepScheduler::coefficients(
    const at::Tensor& h, const std::vector<at::Tensor>& rks) const {
  const at::Tensor rk = at::stack(rks);  // [order]
  const at::Tensor hh = -h;              // data prediction: the exponent runs on −h
  const at::Tensor h_phi_1 = at::expm1(hh);
  at::Tensor h_phi_k = h_phi_1 / hh - 1;
  const at::Tensor B_h = config_.solver_type == "bh1" ? hh : at::expm1(hh);
  std::vector<at::Tensor> R, b;
  int64_t factorial = 1;
  for (size_t i = 1; i <= rks.size(); ++i) {
    R.push_back(at::pow(rk, static_cast<int64_t>(i - 1)));
    b.push_back(h_phi_k * factorial / B_h);
    factorial *= static_cast<int64_t>(i) + 1;
    h_phi_k = h_phi_k / hh - 1.0 / static_cast<double>(factorial);
  }
  return {at::stack(R), at::stack(b), h_phi_1, B_h};
}

at::Tensor UniPCMultistepScheduler::predict(const at::Tensor& x, int order) const {
  const int64_t i = step_index_;
  const at::Tensor& m0 = model_outputs_.back();
  const at::Tensor sigma_t = sigmas_[i + 1], sigma_s0 = sigmas_[i];
  const at::Tensor alpha_t = 1 - sigma_t;
  const at::Tensor lambda_s0 = lambda(i);
  const at::Tensor h = lambda(i + 1) - lambda_s0;
  std::vector<at::Tensor> rks, D1s;
  for (int k = 1; k < order; ++k) {
    const at::Tensor rk = (lambda(i - k) - lambda_s0) / h;
    rks.push_back(rk);
    D1s.push_back((model_outputs_[model_outputs_.size() - 1 - k] - m0) / rk);
  }
  rks.push_back(at::ones({}, at::kFloat));
  const auto c = coefficients(h, rks);
  at::Tensor x_t = sigma_t / sigma_s0 * x - alpha_t * c.h_phi_1 * m0;
  if (!D1s.empty()) {
    const at::Tensor rhos_p =
        order == 2 ? at::full({1}, 0.5, at::TensorOptions().dtype(x.scalar_type()))
                   : at::linalg_solve(c.R.narrow(0, 0, order - 1).narrow(1, 0, order - 1),
                                      c.b.narrow(0, 0, order - 1))
                         .to(x.scalar_type());
    // Σ_k ρ_k · D1_k over the stacked differences [B, K, ...]
    const at::Tensor pred_res =
        at::einsum("k,bkc...->bc...", {rhos_p.to(x.device()), at::stack(D1s, 1)});
    x_t = x_t - alpha_t * c.B_h * pred_res;
  }
  return x_t.to(x.scalar_type());
}

at::Tensor UniPCMultistepScheduler::correct(const at::Tensor& model_t,
                                            const at::Tensor& last_sample, int order) const {
  const int64_t i = step_index_;
  const at::Tensor& m0 = model_outputs_.back();  // the previous step's data prediction
  const at::Tensor sigma_t = sigmas_[i], sigma_s0 = sigmas_[i - 1];
  const at::Tensor alpha_t = 1 - sigma_t;
  const at::Tensor lambda_s0 = lambda(i - 1);
  const at::Tensor h = lambda(i) - lambda_s0;
  std::vector<at::Tensor> rks, D1s;
  for (int k = 1; k < order; ++k) {
    const at::Tensor rk = (lambda(i - (k + 1)) - lambda_s0) / h;
    rks.push_back(rk);
    D1s.push_back((model_outputs_[model_outputs_.size() - 1 - k] - m0) / rk);
  }
  rks.push_back(at::ones({}, at::kFloat));
  const auto c = coefficients(h, rks);
  const auto dtype = last_sample.scalar_type();
  const at::Tensor rhos_c = order == 1 ? at::full({1}, 0.5, at::TensorOptions().dtype(dtype))
                                       : at::linalg_solve(c.R, c.b).to(dtype);
  const at::Tensor x_t_ = sigma_t / sigma_s0 * last_sample - alpha_t * c.h_phi_1 * m0;
  const at::Tensor D1_t = model_t - m0;
  at::Tensor correction = rhos_c[-1] * D1_t;
  if (!D1s.empty()) {
    const at::Tensor corr_res =
        at::einsum("k,bkc...->bc...",
                   {rhos_c.narrow(0, 0, order - 1).to(model_t.device()), at::stack(D1s, 1)});
    correction = corr_res + correction;
  }
  return (x_t_ - alpha_t * c.B_h * correction).to(dtype);
}

at::Tensor UniPCMultistepScheduler::step(const at::Tensor& model_output, int64_t step_index,
                                         const at::Tensor& sample) {
  TORCH_CHECK(sigmas_.defined(), "UniPC scheduler: step before set_timesteps");
  TORCH_CHECK(step_index >= 0 && step_index < num_steps(), "UniPC scheduler: step index ",
              step_index, " outside [0, ", num_steps(), ")");
  TORCH_CHECK(model_output.sizes() == sample.sizes(), "UniPC scheduler: model output ",
              model_output.sizes(), " and sample ", sample.sizes(), " differ in shape");
  if (step_index == 0) set_timesteps(num_steps(), timesteps_.device());
  TORCH_CHECK(step_index == step_index_, "UniPC scheduler: step ", step_index,
              " out of order (expected ", step_index_, ")");
  // Data prediction x0 = x − σ·v; σ is a 0-dim float32 tensor, so a bf16 v gives a bf16 product
  // (PyTorch's promotion rules) before the subtraction in the sample's dtype.
  const at::Tensor x0 = sample - sigmas_[step_index] * model_output;
  at::Tensor x = sample;
  if (step_index > 0 && last_sample_.defined()) x = correct(x0, last_sample_, this_order_);
  std::rotate(model_outputs_.begin(), model_outputs_.begin() + 1, model_outputs_.end());
  model_outputs_.back() = x0;
  int order = config_.solver_order;
  if (config_.lower_order_final) {
    order = static_cast<int>(std::min<int64_t>(order, num_steps() - step_index));
  }
  this_order_ = std::min(order, lower_order_nums_ + 1);  // warm up the multistep history
  last_sample_ = x;
  at::Tensor prev = predict(x, this_order_);
  lower_order_nums_ = std::min(lower_order_nums_ + 1, config_.solver_order);
  ++step_index_;
  return prev;
}

}  // namespace ditbench
