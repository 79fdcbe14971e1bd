#pragma once
// Timestep, text and rotary position embeddings shared by the model families, with diffusers'
// numerics (models.md §1.1-§1.4, §1.8) and its parameter names.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "optimizations/quant/linear.h"

namespace ditbench {

// diffusers' get_timestep_embedding: sinusoids of `timesteps` [B] (any dtype; computed in f32).
// Returns [B, dim] float32; callers cast it to the weight dtype before the MLP, as diffusers does.
// flip_sin_to_cos=true gives [cos, sin] halves.
at::Tensor timestep_sinusoid(const at::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos = true,
                             double downscale_freq_shift = 0.0, double scale = 1.0,
                             double max_period = 10000.0);

// The activations diffusers' small MLPs and feed-forwards use.
enum class Activation { kSiLU, kGeluTanh };
at::Tensor activate(const at::Tensor& x, Activation act);

// diffusers TimestepEmbedding(in, D, act="silu"): linear_2(silu(linear_1(x))).
class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(int64_t in_channels, int64_t embed_dim, const at::TensorOptions& options);
  // x: [B, in] -> [B, D]
  at::Tensor forward(const at::Tensor& x);

  Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

// diffusers PixArtAlphaTextProjection(in, hidden, act): linear_2(act(linear_1(x))).
class PixArtAlphaTextProjectionImpl : public torch::nn::Module {
 public:
  PixArtAlphaTextProjectionImpl(int64_t in_features, int64_t hidden_size, Activation act,
                                const at::TensorOptions& options);
  // x: [..., in] -> [..., hidden]
  at::Tensor forward(const at::Tensor& x);

  Linear linear_1{nullptr}, linear_2{nullptr};

 private:
  Activation act_;
};
TORCH_MODULE(PixArtAlphaTextProjection);

// diffusers CombinedTimestep[Guidance]TextProjEmbeddings: timestep_embedder(T256(t)) [+
// guidance_embedder(T256(g))] + text_embedder(pooled), the sinusoids cast to pooled's dtype.
class CombinedTimestepTextProjEmbeddingsImpl : public torch::nn::Module {
 public:
  CombinedTimestepTextProjEmbeddingsImpl(int64_t embed_dim, int64_t pooled_dim, bool with_guidance,
                                         const at::TensorOptions& options);
  // timestep: [B], pooled: [B, pooled_dim], guidance: [B] (required iff with_guidance) -> [B, D]
  at::Tensor forward(const at::Tensor& timestep, const at::Tensor& pooled,
                     const at::Tensor& guidance = {});

  bool has_guidance() const { return !guidance_embedder.is_empty(); }

  TimestepEmbedding timestep_embedder{nullptr};
  TimestepEmbedding guidance_embedder{nullptr};  // empty without guidance embeds
  PixArtAlphaTextProjection text_embedder{nullptr};
};
TORCH_MODULE(CombinedTimestepTextProjEmbeddings);

// ---- rotary position embeddings ----

// Interleaved cos/sin table of one axis (diffusers get_1d_rotary_pos_embed, use_real=True,
// repeat_interleave_real=True). positions: [S]; the angles are computed in the promoted dtype of
// positions and `freqs_dtype` (f32 for HunyuanVideo, f64 for FLUX/Wan), the result is float32.
// Returns (cos, sin), each [S, dim] laid out c0,c0,c1,c1,...
std::pair<at::Tensor, at::Tensor> rope_1d(int64_t dim, const at::Tensor& positions, double theta,
                                          at::ScalarType freqs_dtype = at::kFloat);

// Tables for a (t, h, w) token grid, t slowest and w fastest, concatenated over the axes along
// the feature dim: each [F*H*W, sum(axes_dim)] float32 on `device`. Positions are f32 aranges.
std::pair<at::Tensor, at::Tensor> rope_3d_grid(int64_t frames, int64_t height, int64_t width,
                                               const std::vector<int64_t>& axes_dim, double theta,
                                               const at::Device& device,
                                               at::ScalarType freqs_dtype = at::kFloat);

// diffusers apply_rotary_emb(use_real=True, unbind_dim=-1): interleaved pairs (x[2i], x[2i+1])
// rotated by the table, in f32, then cast back to x's dtype.
// x: [B, S, H, D] for sequence_dim=1 or [B, H, S, D] for sequence_dim=2; cos/sin: [S, D].
at::Tensor apply_rotary_emb(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                            int64_t sequence_dim);

}  // namespace ditbench
