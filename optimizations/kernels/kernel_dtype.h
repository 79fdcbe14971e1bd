#pragma once
// The element types the launchers of this folder take (raw pointers, no LibTorch types); the
// LibTorch side maps a tensor's dtype with kernel_dtype() (fused.h). Each launcher serves a
// subset and returns false for the others.

namespace ditbench {

enum class KernelDtype { kFloat, kHalf, kBFloat16 };

}  // namespace ditbench
