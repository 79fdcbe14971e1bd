#pragma once
// Layout changes of the context-parallel exchanges (Ulysses packing q, k, v into its send buffer
// and unpacking the output it gets back; NCCL's dense copy of the ring's K and V): ATen's copy
// between two strided tensors moves them element by element, this one in 16-byte pieces of the
// contiguous run both layouts share.
#include <ATen/ATen.h>

#include <cstdint>
#include <optional>

namespace ditbench {

constexpr int kMaxCopyOuterDims = 4;

// A copy of sizes with two stride sets, collapsed jointly: `inner` elements contiguous in both,
// times up to kMaxCopyOuterDims outer dimensions (outermost first) with their element strides.
struct CopyLayout {
  int outer = 0;
  int64_t sizes[kMaxCopyOuterDims] = {};
  int64_t src_strides[kMaxCopyOuterDims] = {};
  int64_t dst_strides[kMaxCopyOuterDims] = {};
  int64_t inner = 1;
};

// The collapsed layout, or nothing when the innermost dimension is not contiguous in both or
// more than kMaxCopyOuterDims outer dimensions remain. Size-1 dimensions are dropped; adjacent
// dimensions merge where both stride sets allow it.
std::optional<CopyLayout> copy_layout(at::IntArrayRef sizes, at::IntArrayRef src_strides,
                                      at::IntArrayRef dst_strides);

// dst.copy_(src) for same sizes and dtype on one CUDA device, when their shared contiguous run
// and every outer stride are whole multiples of 16 bytes (and both start 16-byte aligned). Returns
// false, copying nothing, when it does not serve (CPU, other layouts, no kernel image, fused
// kernels switched off): the caller copies with ATen.
bool try_copy_strided(at::Tensor& dst, const at::Tensor& src);

// dst.copy_(src), through try_copy_strided where it serves.
void copy_strided(at::Tensor& dst, const at::Tensor& src);

// A dense copy of t (t itself when already contiguous).
at::Tensor dense(const at::Tensor& t);

}  // namespace ditbench
