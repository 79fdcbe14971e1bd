#pragma once
// The one seam a denoising loop needs from a scheduler. Each scheduler has its own set_timesteps
// (their inputs differ: custom sigmas and mu for flow matching, a step count for DDIM); the loop
// only asks for the timesteps to feed the model and advances the latents one step at a time.
// Multistep schedulers (DPM-Solver, UniPC) keep their history inside and expect steps in order.
#include <ATen/ATen.h>

#include <cstdint>

namespace ditbench {

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // The value given to the model at each step, one per step: [num_steps].
  virtual const at::Tensor& timesteps() const = 0;
  virtual int64_t num_steps() const = 0;
  // Latents after step `step_index` (0-based) from the model's output at that step.
  virtual at::Tensor step(const at::Tensor& model_output, int64_t step_index,
                          const at::Tensor& sample) = 0;
};

}  // namespace ditbench
