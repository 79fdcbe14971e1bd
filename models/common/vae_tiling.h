#pragma once
// diffusers' spatially tiled VAE decoding, shared by the video VAEs: overlapping latent tiles are
// decoded one by one, blended linearly over the overlap in raster order and cropped.
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>

namespace ditbench {

// Tile sizes in sample (pixel) units, as diffusers' enable_tiling() takes them.
struct SpatialTiles {
  int64_t min_height = 256, min_width = 256;
  int64_t stride_height = 192, stride_width = 192;
};

// Blends the end of `a` into the start of `b` along `dim` over `extent` positions, in place on
// b: b[y] = a[-extent + y] * (1 - y / extent) + b[y] * (y / extent), diffusers' blend_v / blend_h
// / blend_t vectorised. Weights are computed in double and rounded to float, as PyTorch rounds
// diffusers' Python-float factors, so fp32 results match bit for bit.
void blend_into(const at::Tensor& a, const at::Tensor& b, int64_t dim, int64_t extent);

// Python's x[start:start + length] along dim: clipped at the end.
at::Tensor slice_clipped(const at::Tensor& x, int64_t dim, int64_t start, int64_t length);

// True when the latents are larger than one tile in height or width.
bool needs_spatial_tiles(const at::Tensor& z, const SpatialTiles& tiles, int64_t spatial_ratio);

// z: [B, C, F', H', W'] latents; decode_tile maps a latent tile to its decoded [B, C_out, F, h, w]
// (h = ratio * tile height). Returns [B, C_out, F, ratio H', ratio W'], contiguous. Under context
// parallelism (a sequence group of several ranks in this thread's ParallelScope) the call is
// collective over that group: each rank decodes every W-th tile and the ranks share the decoded
// tiles, so every rank gets the single-rank frames in about 1/W of the decoding time.
at::Tensor spatial_tiled_decode(const at::Tensor& z, const SpatialTiles& tiles,
                                int64_t spatial_ratio,
                                const std::function<at::Tensor(const at::Tensor&)>& decode_tile);

}  // namespace ditbench
