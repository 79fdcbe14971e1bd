#pragma once
// Launcher of the GroupNorm (+ SiLU) kernels (group_norm.cu): raw pointers, no LibTorch types.
// group_norm.cpp checks the tensors and calls it.
//
// ATen's GroupNorm reduces each (sample, group) with one thread block: a VAE's 32 groups of
// hundreds of millions of elements keep 32 of an H100's 132 SMs busy. Here the statistics come
// from many blocks per group (partial sums of x - x0, x0 the group's first element, merged in
// float64), then one elementwise pass normalizes, applies the affine and optionally SiLU.
//
// Numerics: mean and variance (biased) in float32 per block and float64 across blocks;
// y = x * a + b with a = rstd * weight[c], b = bias[c] - mean * a in float32 as ATen computes
// them, rounded once to the tensor's type; with SiLU, that rounded value times its sigmoid in
// float32, rounded again (the two eager ops' roundings). ATen's CPU kernel computes the same;
// its CUDA kernel of bfloat16 (PyTorch 2.11) differs by several bfloat16 steps where a group's
// mean is large against its spread, its statistics passing through bfloat16.
#include <cuda_runtime.h>

#include <cstdint>

#include "optimizations/kernels/kernel_dtype.h"
#include "optimizations/kernels/video_resample_cuda.h"

namespace ditbench {

// Floats of workspace group_norm_cuda needs for these sizes.
int64_t group_norm_workspace_floats(int64_t batch, int64_t channels, int64_t spatial,
                                    int64_t groups);

// x, out: contiguous [N, C, S] of `dtype` (S: the product of the dimensions after C); weight,
// bias: [C] of `dtype`; C divisible by `groups`. False, launching nothing, when there is no
// kernel image for the device.
bool group_norm_cuda(const void* x, void* out, const void* weight, const void* bias,
                     float* workspace, KernelDtype dtype, int64_t batch, int64_t channels,
                     int64_t spatial, int64_t groups, float eps, bool silu, cudaStream_t stream);

// The same for channels-last x [N, F, H, W, C] (F, H, W in `map`), written to out
// [N, F', H', W', C] through `map` (each output position normalizes the input position it maps
// to: replicate padding, or none). Statistics are summed per block over all channels of a run of
// positions. C * element size must be a multiple of 16 bytes, C at most 256 vectors of 16 bytes,
// the pointers 16-byte aligned; false, launching nothing, otherwise.
int64_t group_norm_ndhwc_workspace_floats(int64_t batch, int64_t channels, int64_t positions,
                                          int64_t groups);
bool group_norm_ndhwc_cuda(const void* x, void* out, const void* weight, const void* bias,
                           float* workspace, KernelDtype dtype, int64_t batch, int64_t channels,
                           int64_t groups, float eps, bool silu, const VideoResample& map,
                           cudaStream_t stream);

}  // namespace ditbench
