#include "models/common/vae_tiling.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/shared_work.h"

namespace ditbench {

void blend_into(const at::Tensor& a, const at::Tensor& b, int64_t dim, int64_t extent) {
  extent = std::min({a.size(dim), b.size(dim), extent});
  if (extent <= 0) return;
  std::vector<int64_t> weight_shape(b.dim() - dim, 1);  // broadcast along dim only
  weight_shape[0] = extent;
  at::Tensor ramp = at::arange(extent, at::kDouble) / static_cast<double>(extent);
  at::Tensor weight_b = ramp.to(at::kFloat).to(b.device()).view(weight_shape);
  at::Tensor weight_a = (1.0 - ramp).to(at::kFloat).to(b.device()).view(weight_shape);
  at::Tensor b_head = b.narrow(dim, 0, extent);
  at::Tensor a_tail = a.narrow(dim, a.size(dim) - extent, extent);
  b_head.copy_(a_tail * weight_a + b_head * weight_b);
}

at::Tensor slice_clipped(const at::Tensor& x, int64_t dim, int64_t start, int64_t length) {
  return x.narrow(dim, start, std::min(length, x.size(dim) - start));
}

bool needs_spatial_tiles(const at::Tensor& z, const SpatialTiles& tiles, int64_t spatial_ratio) {
  return z.size(4) > tiles.min_width / spatial_ratio ||
         z.size(3) > tiles.min_height / spatial_ratio;
}

at::Tensor spatial_tiled_decode(const at::Tensor& z, const SpatialTiles& tiles,
                                int64_t spatial_ratio,
                                const std::function<at::Tensor(const at::Tensor&)>& decode_tile) {
  // z: [B, C_lat, F', H', W']
  const int64_t s = spatial_ratio;
  const int64_t latent_height = z.size(3), latent_width = z.size(4);
  const int64_t tile_latent_height = tiles.min_height / s, tile_latent_width = tiles.min_width / s;
  const int64_t stride_latent_height = tiles.stride_height / s;
  const int64_t stride_latent_width = tiles.stride_width / s;
  const int64_t blend_height = tiles.min_height - tiles.stride_height;
  const int64_t blend_width = tiles.min_width - tiles.stride_width;

  // Overlapping latent tiles, each decoded on its own (in raster order).
  std::vector<at::Tensor> latent_tiles;
  int64_t columns = 0;
  for (int64_t i = 0; i < latent_height; i += stride_latent_height) {
    columns = 0;
    for (int64_t j = 0; j < latent_width; j += stride_latent_width, ++columns) {
      latent_tiles.push_back(
          slice_clipped(slice_clipped(z, 3, i, tile_latent_height), 4, j, tile_latent_width));
    }
  }
  // Under context parallelism every rank of the sequence group holds the same latents: each
  // decodes its share of the tiles and the group shares them, so the frames are those of one rank.
  std::vector<at::Tensor> flat;
  const auto n = static_cast<int64_t>(latent_tiles.size());
  auto decode_one = [&](int64_t k) { return decode_tile(latent_tiles[static_cast<size_t>(k)]); };
  if (Communicator* group = current_sequence_group(); group && n > 1) {
    flat = compute_shared(*group, n, z.device(), decode_one);
  } else {
    for (int64_t k = 0; k < n; ++k) flat.push_back(decode_one(k));
  }
  std::vector<std::vector<at::Tensor>> decoded;  // decoded[i][j]: [B, C_out, F, h, w]
  for (int64_t k = 0; k < n; k += columns) {
    decoded.emplace_back(flat.begin() + k, flat.begin() + k + columns);
  }

  // Blend in raster order and in place, as diffusers does: a tile blends with the tile above and
  // the tile to its left *after* those have themselves been blended.
  std::vector<at::Tensor> rows;
  for (size_t i = 0; i < decoded.size(); ++i) {
    std::vector<at::Tensor> row_parts;
    for (size_t j = 0; j < decoded[i].size(); ++j) {
      at::Tensor& tile = decoded[i][j];
      if (i > 0) blend_into(decoded[i - 1][j], tile, 3, blend_height);
      if (j > 0) blend_into(decoded[i][j - 1], tile, 4, blend_width);
      row_parts.push_back(
          slice_clipped(slice_clipped(tile, 3, 0, tiles.stride_height), 4, 0, tiles.stride_width));
    }
    rows.push_back(at::cat(row_parts, 4));
  }
  at::Tensor out = at::cat(rows, 3);  // [B, C_out, F, >= s H', >= s W']
  return slice_clipped(slice_clipped(out, 3, 0, latent_height * s), 4, 0, latent_width * s)
      .contiguous();
}

}  // namespace ditbench
