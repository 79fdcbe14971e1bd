#include "models/common/embeddings.h"

#include <cmath>

namespace ditbench {

at::Tensor timestep_sinusoid(const at::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos,
                             double downscale_freq_shift, double scale, double max_period) {
  TORCH_CHECK(timesteps.dim() == 1, "timestep_sinusoid: timesteps must be 1-D, got ",
              timesteps.sizes());
  const int64_t half = dim / 2;
  // Same op order as diffusers so the f32 roundings agree bit for bit.
  auto exponent =
      at::arange(0, half, timesteps.options().dtype(at::kFloat)) * (-std::log(max_period));
  exponent = exponent / (static_cast<double>(half) - downscale_freq_shift);
  auto freqs = at::exp(exponent);                                         // [half]
  auto arg = timesteps.unsqueeze(1).to(at::kFloat) * freqs.unsqueeze(0);  // [B, half]
  arg = arg * scale;
  auto emb = at::cat({at::sin(arg), at::cos(arg)}, -1);  // [B, 2*half]
  if (flip_sin_to_cos) emb = at::cat({emb.narrow(1, half, half), emb.narrow(1, 0, half)}, -1);
  if (dim % 2 == 1) emb = at::constant_pad_nd(emb, {0, 1});
  return emb;
}

at::Tensor activate(const at::Tensor& x, Activation act) {
  switch (act) {
    case Activation::kSiLU:
      return at::silu(x);
    case Activation::kGeluTanh:
      return at::gelu(x, "tanh");
  }
  return x;
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(int64_t in_channels, int64_t embed_dim,
                                             const at::TensorOptions& options) {
  linear_1 = register_module("linear_1", Linear(in_channels, embed_dim, true, options));
  linear_2 = register_module("linear_2", Linear(embed_dim, embed_dim, true, options));
}

at::Tensor TimestepEmbeddingImpl::forward(const at::Tensor& x) {
  return linear_2(at::silu(linear_1(x)));
}

PixArtAlphaTextProjectionImpl::PixArtAlphaTextProjectionImpl(int64_t in_features,
                                                             int64_t hidden_size, Activation act,
                                                             const at::TensorOptions& options)
    : act_(act) {
  linear_1 = register_module("linear_1", Linear(in_features, hidden_size, true, options));
  linear_2 = register_module("linear_2", Linear(hidden_size, hidden_size, true, options));
}

at::Tensor PixArtAlphaTextProjectionImpl::forward(const at::Tensor& x) {
  return linear_2(activate(linear_1(x), act_));
}

CombinedTimestepTextProjEmbeddingsImpl::CombinedTimestepTextProjEmbeddingsImpl(
    int64_t embed_dim, int64_t pooled_dim, bool with_guidance, const at::TensorOptions& options) {
  timestep_embedder =
      register_module("timestep_embedder", TimestepEmbedding(256, embed_dim, options));
  if (with_guidance) {
    guidance_embedder =
        register_module("guidance_embedder", TimestepEmbedding(256, embed_dim, options));
  }
  text_embedder =
      register_module("text_embedder",
                      PixArtAlphaTextProjection(pooled_dim, embed_dim, Activation::kSiLU, options));
}

at::Tensor CombinedTimestepTextProjEmbeddingsImpl::forward(const at::Tensor& timestep,
                                                           const at::Tensor& pooled,
                                                           const at::Tensor& guidance) {
  // The f32 sinusoids are cast to the pooled input's dtype (bf16 in a bf16 pipeline).
  auto temb = timestep_embedder(timestep_sinusoid(timestep, 256).to(pooled.scalar_type()));
  auto text = text_embedder(pooled);
  if (has_guidance()) {
    TORCH_CHECK(guidance.defined(), "guidance embeds need a guidance tensor");
    auto gemb = guidance_embedder(timestep_sinusoid(guidance, 256).to(pooled.scalar_type()));
    return temb + gemb + text;  // [B, D]
  }
  return temb + text;  // [B, D]
}

std::pair<at::Tensor, at::Tensor> rope_1d(int64_t dim, const at::Tensor& positions, double theta,
                                          at::ScalarType freqs_dtype) {
  TORCH_CHECK(dim % 2 == 0, "rope_1d: dim must be even, got ", dim);
  auto exps = at::arange(0, dim, 2, positions.options().dtype(freqs_dtype)) / dim;  // [dim/2]
  // diffusers: 1.0 / (theta ** exps); Python's 1.0 / t is reciprocal(t) * 1.0.
  auto inv_freq = at::pow(theta, exps).reciprocal();
  auto angles = at::outer(positions, inv_freq);                    // [S, dim/2], promoted dtype
  auto cos = angles.cos().repeat_interleave(2, 1).to(at::kFloat);  // [S, dim]
  auto sin = angles.sin().repeat_interleave(2, 1).to(at::kFloat);  // [S, dim]
  return {cos, sin};
}

std::pair<at::Tensor, at::Tensor> rope_3d_grid(int64_t frames, int64_t height, int64_t width,
                                               const std::vector<int64_t>& axes_dim, double theta,
                                               const at::Device& device,
                                               at::ScalarType freqs_dtype) {
  TORCH_CHECK(axes_dim.size() == 3, "rope_3d_grid: need three axis dims");
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  auto grids =
      at::meshgrid({at::arange(frames, f32), at::arange(height, f32), at::arange(width, f32)},
                   "ij");  // 3 x [F, H, W]
  std::vector<at::Tensor> cos_parts, sin_parts;
  for (size_t axis = 0; axis < 3; ++axis) {
    auto [c, s] = rope_1d(axes_dim[axis], grids[axis].reshape(-1), theta, freqs_dtype);
    cos_parts.push_back(c);
    sin_parts.push_back(s);
  }
  return {at::cat(cos_parts, 1), at::cat(sin_parts, 1)};  // each [F*H*W, sum(axes_dim)]
}

at::Tensor apply_rotary_emb(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                            int64_t sequence_dim) {
  TORCH_CHECK(sequence_dim == 1 || sequence_dim == 2, "apply_rotary_emb: sequence_dim 1 or 2");
  // cos/sin: [S, D] -> [1, S, 1, D] or [1, 1, S, D]
  auto c = sequence_dim == 1 ? cos.unsqueeze(0).unsqueeze(2) : cos.unsqueeze(0).unsqueeze(0);
  auto s = sequence_dim == 1 ? sin.unsqueeze(0).unsqueeze(2) : sin.unsqueeze(0).unsqueeze(0);
  auto sizes = x.sizes().vec();
  sizes.back() /= 2;
  sizes.push_back(2);
  auto pairs = x.reshape(sizes).unbind(-1);                        // real, imag: [..., D/2]
  auto rotated = at::stack({-pairs[1], pairs[0]}, -1).flatten(3);  // [..., D]: (-x1, x0) per pair
  return (x.to(at::kFloat) * c + rotated.to(at::kFloat) * s).to(x.scalar_type());
}

}  // namespace ditbench
