#pragma once
// Registering several submodules of one type and shape at once (e.g. an attention's to_q, to_k
// and to_v), under diffusers' key names, in the order given.
#include <torch/nn/module.h>

#include <initializer_list>
#include <utility>

namespace ditbench {

// Each (name, slot): *slot = parent.register_module(name, Holder(args...)).
template <typename Holder, typename... Args>
void register_modules(torch::nn::Module& parent,
                      std::initializer_list<std::pair<const char*, Holder*>> slots,
                      const Args&... args) {
  for (const auto& [name, slot] : slots) *slot = parent.register_module(name, Holder(args...));
}

}  // namespace ditbench
