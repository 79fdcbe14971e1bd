#pragma once
// Launcher of the channels-last video gather (video_resample.cu): raw pointers, no LibTorch types.
#include <cuda_runtime.h>

#include <cstdint>

#include "optimizations/kernels/kernel_dtype.h"
#include "optimizations/kernels/video_resample_map.h"

namespace ditbench {

// out [N, F', H', W', C] = x [N, F, H, W, C] gathered per `map` (F, H, W in `map`), both dense
// channels-last. C * element size must be a multiple of 16 bytes and both pointers 16-byte
// aligned; false, launching nothing, otherwise or without a kernel image for the device.
bool video_resample_cuda(const void* x, void* out, KernelDtype dtype, int64_t batch,
                         int64_t channels, const VideoResample& map, cudaStream_t stream);

// y [rows, C] += bias [C] in place, in float32, rounded once: C * element size a multiple of 16
// bytes and its 16-byte vectors dividing 256, pointers 16-byte aligned; false, launching
// nothing, otherwise.
bool channel_bias_cuda(void* y, const void* bias, KernelDtype dtype, int64_t rows, int64_t channels,
                       cudaStream_t stream);

}  // namespace ditbench
