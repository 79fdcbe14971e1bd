#pragma once
// GroupNorm with affine weight and bias, optionally followed by SiLU, as one statistics pass
// spread over many blocks per group and one elementwise pass (group_norm_cuda.h), for the VAEs'
// decoders, whose groups hold hundreds of millions of elements at 720p.
#include <ATen/ATen.h>

#include <cstdint>

#include "optimizations/kernels/video_resample.h"

namespace ditbench {

// torch.nn.functional.group_norm(x, groups, weight, bias, eps), then SiLU when `silu`, for
// x: contiguous [N, C, ...] float32 or bfloat16 on a GPU, weight and bias: [C] of x's
// dtype and device, C divisible by groups -> x's shape, dtype and device. Undefined when the
// kernel does not serve (fused_kernels_enabled() off, no CUDA, another dtype or layout, no kernel
// image): the caller then runs ATen's ops. Equal to those ops with float32 statistics (ATen's CPU
// kernel) up to the order of the statistics' sums; ATen's CUDA kernel of bfloat16 rounds more
// (group_norm_cuda.h). A channels-last x ([N, C, F, H, W] in at::MemoryFormat::ChannelsLast3d,
// C a multiple of 16 bytes, at most 2048 bfloat16 or 1024 float32 channels) gives a channels-last
// result, optionally resampled by `then` in the same pass (the padding in front of a causal
// convolution: the values of try_causal_resample of the result, without writing the result);
// a contiguous x serves only an identity `then`.
at::Tensor try_group_norm(const at::Tensor& x, int64_t groups, const at::Tensor& weight,
                          const at::Tensor& bias, double eps, bool silu,
                          const CausalResample& then = {});

}  // namespace ditbench
