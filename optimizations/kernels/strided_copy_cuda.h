#pragma once
// Launcher of the 16-byte strided copy (strided_copy.cu): raw pointers and byte strides, no
// LibTorch types. Returns false, launching nothing, when there is no kernel image for the device.
#include <cuda_runtime.h>

#include <cstdint>

namespace ditbench {

struct StridedCopy {
  int outer = 0;                                     // outer dimensions (<= 4)
  int64_t sizes[4] = {};                             // outermost first
  int64_t src_strides[4] = {}, dst_strides[4] = {};  // bytes, multiples of 16
  int64_t inner_vectors = 0;                         // 16-byte pieces of the contiguous run
};

bool strided_copy_cuda(const void* src, void* dst, const StridedCopy& copy, cudaStream_t stream);

}  // namespace ditbench
