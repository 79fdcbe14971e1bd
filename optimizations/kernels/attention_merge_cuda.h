#pragma once
// Launcher of the log-sum-exp merge of partial attention results (attention_merge.cu). Raw
// pointers and element strides, no LibTorch types: attention_merge.cpp checks the tensors and
// calls it. Returns false (launching nothing) when it cannot serve (no kernel image for the
// device), so the caller folds the parts with ATen ops.
#include <cuda_runtime.h>

#include <cstdint>

#include "optimizations/kernels/fp8_tensor_cuda.h"
#include "optimizations/kernels/kernel_dtype.h"

namespace ditbench {

constexpr int kMaxMergeParts = 16;

// The parts, attention over disjoint key blocks for the same queries: out[i] [B, H, S, D] with
// unit stride over D, lse[i] [B, H, S] float32 (its Bhsd with dim 1).
struct MergeParts {
  Bhsd out[kMaxMergeParts];
  Bhsd lse[kMaxMergeParts];
  int count = 0;
};

// Per query row, in float32: top = max_i lse_i, w_i = exp(lse_i - top) (0 for a part whose keys
// were all masked, lse -inf, whatever its output holds), out = sum_i w_i out_i / sum_i w_i rounded
// once to the parts' dtype, lse_out = top + log(sum_i w_i). A row masked in every part gets out 0
// and lse -inf. out: strides of its Bhsd (the parts' dtype); lse_out: contiguous [B, H, S] float32
// or null. `vector` asks for 16-byte accesses (every row and D aligned to 16 bytes).
bool merge_attention_cuda(const MergeParts& parts, KernelDtype dtype, Bhsd out, float* lse_out,
                          bool vector, cudaStream_t stream);

}  // namespace ditbench
