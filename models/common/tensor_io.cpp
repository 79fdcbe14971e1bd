#include "models/common/tensor_io.h"

#include "models/common/error.h"

namespace ditbench {

at::Tensor require_tensor(const std::map<std::string, at::Tensor>& tensors, const std::string& name,
                          const std::string& file) {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw InputError(file + ": no tensor '" + name + "'");
  return it->second;
}

std::string describe_shape(const at::Tensor& t) {
  return t.defined() ? c10::str(t.sizes()) : std::string("none");
}

double relative_error(const at::Tensor& out, const at::Tensor& ref) {
  auto o = out.to(at::kDouble), r = ref.to(at::kDouble);
  return (o - r).norm().item<double>() / r.norm().item<double>();
}

}  // namespace ditbench
