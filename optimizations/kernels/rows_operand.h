#pragma once
// The tensor check shared by the launchers of fused.cpp and fused_fp8.cpp (CUDA builds only).
#include <ATen/ATen.h>

#include "optimizations/kernels/fused_cuda.h"

namespace ditbench {

// A [B, S, D] (or, with rows == false, [B, D]) bfloat16 operand on like's device with unit stride
// over D (D = like.size(2)) as RowsBf16: strides of size-1 dims are 0 so they never spoil
// alignment, and a [1, D] modulation row broadcasts over the batch. False when t is not one.
bool as_rows(const at::Tensor& t, const at::Tensor& like, bool rows, RowsBf16& out);

}  // namespace ditbench
