#pragma once
// Small helpers over named tensor maps (safetensors contents) and their comparison.
#include <ATen/ATen.h>

#include <map>
#include <string>

namespace ditbench {

// The tensor `name` of `tensors` read from `file`; InputError naming both when it is absent.
at::Tensor require_tensor(const std::map<std::string, at::Tensor>& tensors, const std::string& name,
                          const std::string& file);

// A tensor's shape for messages: "[2, 3]", or "none" when undefined.
std::string describe_shape(const at::Tensor& t);

// ||out - ref|| / ||ref|| in float64 (the fixtures' parity measure).
double relative_error(const at::Tensor& out, const at::Tensor& ref);

}  // namespace ditbench
