#pragma once
// CogVideoX transformer (diffusers CogVideoXTransformer3DModel, 1.0 checkpoints, models.md §4):
// modules and parameter names mirror diffusers' tree, so named_parameters() yields exactly the
// keys of a diffusers checkpoint. Positions are computed here: the 2b 3-D sin-cos table added to
// the patch embeddings, or the 5b 3-D rotary tables (what the diffusers pipeline computes and
// passes in as image_rotary_emb).
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "models/cogvideox/config.h"
#include "models/common/embeddings.h"
#include "models/common/image_tokens.h"
#include "models/common/layers.h"
#include "models/common/norms.h"
#include "models/model.h"
#include "optimizations/parallel/communicator.h"
#include "optimizations/quant/linear.h"

namespace ditbench {

// BlockState::extra of this model. Under context parallelism (a sequence group installed by
// ParallelScope) prepare() shards hidden, context, the RoPE rows and the key mask: blocks see
// this rank's N/P image and L/P text rows.
struct CogVideoXState : ImageTokenState {
  at::Tensor rope_cos, rope_sin;  // [N, head_dim] float32 (5b; undefined for 2b), local rows
  at::Tensor key_mask;  // [B, L + N] bool over [text, image], false on CP padding; undefined = all
  std::array<int64_t, 3> grid{};  // patch grid (F, H', W'), N = F * H' * W'
};
inline CogVideoXState& cogvideox_state(BlockState& s) {
  return extra_state<CogVideoXState>(s, "CogVideoX");
}
inline const CogVideoXState& cogvideox_state(const BlockState& s) {
  return extra_state<CogVideoXState>(s, "CogVideoX");
}

// nn.Conv2d parameters (`weight` [out, in, k, k], `bias` [out]) applied to [N, C, H, W].
class CogVideoXConv2dImpl : public torch::nn::Module {
 public:
  CogVideoXConv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride,
                      int64_t padding, const at::TensorOptions& options);
  // x: [N, C_in, H, W] -> [N, C_out, H', W']
  at::Tensor forward(const at::Tensor& x);

  at::Tensor weight, bias;

 private:
  int64_t stride_, padding_;
};
TORCH_MODULE(CogVideoXConv2d);

// CogVideoXPatchEmbed (patch_size_t null): a per-frame Conv2d patchifier `proj` and the text
// projection `text_proj`.
class CogVideoXPatchEmbedImpl : public torch::nn::Module {
 public:
  CogVideoXPatchEmbedImpl(const CogVideoXConfig& config, const at::TensorOptions& options);
  // x: [B, F, C, H, W] -> [B, F * H/p * W/p, D], tokens in (t, h, w) order
  at::Tensor embed_image(const at::Tensor& x);

  CogVideoXConv2d proj{nullptr};
  Linear text_proj{nullptr};
};
TORCH_MODULE(CogVideoXPatchEmbed);

// CogVideoXLayerNormZero: one affine LayerNorm for both streams, modulated per stream.
class CogVideoXLayerNormZeroImpl : public torch::nn::Module {
 public:
  struct Output {
    at::Tensor x, c;            // modulated image [B, N, D] and text [B, L, D]
    at::Tensor gate, enc_gate;  // [B, D]
  };
  CogVideoXLayerNormZeroImpl(int64_t cond_dim, int64_t dim, double eps,
                             const at::TensorOptions& options);
  // x: [B, N, D], c: [B, L, D], temb: [B, cond_dim]
  Output forward(const at::Tensor& x, const at::Tensor& c, const at::Tensor& temb);

  Linear linear{nullptr};  // cond -> 6D: shift, scale, gate, enc_shift, enc_scale, enc_gate
  LayerNorm norm{nullptr};
};
TORCH_MODULE(CogVideoXLayerNormZero);

// diffusers Attention + CogVideoXAttnProcessor2_0: one projection set over [text, image],
// per-head LayerNorm QK norm, RoPE on the image rows (5b).
class CogVideoXAttentionImpl : public torch::nn::Module {
 public:
  CogVideoXAttentionImpl(int64_t heads, int64_t head_dim, const at::TensorOptions& options);
  // x: [B, N, D], c: [B, L, D]; cos/sin: [N, head_dim] or undefined; key_mask: [B, L + N] or
  // undefined -> (x_out [B, N, D], c_out [B, L, D])
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& c,
                                            const at::Tensor& key_mask, const at::Tensor& cos,
                                            const at::Tensor& sin);

  LayerNorm norm_q{nullptr}, norm_k{nullptr};
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  OutProjection to_out{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(CogVideoXAttention);

// CogVideoXBlock (transformer_blocks.i): modulated joint attention and a shared feed-forward.
class CogVideoXBlockImpl : public torch::nn::Module {
 public:
  CogVideoXBlockImpl(const CogVideoXConfig& config, const at::TensorOptions& options);
  // x: [B, N, D], c: [B, L, D], temb: [B, time_embed_dim] -> (x, c)
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& c,
                                            const at::Tensor& temb, const at::Tensor& key_mask,
                                            const at::Tensor& cos, const at::Tensor& sin);

  CogVideoXLayerNormZero norm1{nullptr}, norm2{nullptr};
  CogVideoXAttention attn1{nullptr};
  FeedForward ff{nullptr};
};
TORCH_MODULE(CogVideoXBlock);

// AdaLayerNorm(chunk_dim=1) of the output: linear on silu(temb), SHIFT then scale, affine norm.
class CogVideoXAdaLayerNormImpl : public torch::nn::Module {
 public:
  CogVideoXAdaLayerNormImpl(int64_t cond_dim, int64_t dim, double eps,
                            const at::TensorOptions& options);
  // x: [B, N, D], temb: [B, cond_dim] -> [B, N, D]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb);

  Linear linear{nullptr};
  LayerNorm norm{nullptr};
};
TORCH_MODULE(CogVideoXAdaLayerNorm);

class CogVideoXTransformer3DModelImpl : public torch::nn::Module, public BlockTransformer {
 public:
  // Parameters are created uninitialised with `options` (device, dtype): load a checkpoint or
  // random-init afterwards. A meta device builds the released size without memory.
  CogVideoXTransformer3DModelImpl(const CogVideoXConfig& config,
                                  const at::TensorOptions& options = {});

  // Inputs: latents [B, F, C, H, W] (frames before channels); timestep [B] (integer DDPM index);
  // prompt.embeds [B, L, text_dim] (no mask: every text token is attended, as in diffusers).
  // Latents and embeds are cast to the model dtype. Bad shapes: InputError.
  BlockState prepare(const TransformerInputs& in) override;
  int64_t num_blocks() const override { return config_.num_layers; }
  void run_block(int64_t i, BlockState& s) override;
  // -> [B, F, out_channels, H, W]
  at::Tensor finish(BlockState& s) override;
  // The timestep embedding `emb` [B, time_embed_dim] (TeaCache's CogVideoX signal).
  at::Tensor teacache_signal(const BlockState& s) override;
  BlockState fork_state(const BlockState& s) const override;
  // hidden, context, temb, rope_cos, rope_sin, key_mask
  std::vector<at::Tensor> state_tensors(const BlockState& s) const override;

  // 2b: the joint-free image rows of the 3-D sin-cos table for a (F, H', W') patch grid,
  // [F * H' * W', D] float64 (diffusers' _get_positional_embeddings without the text rows).
  at::Tensor sincos_positions(int64_t frames, int64_t height, int64_t width,
                              const at::Device& device) const;
  // 5b: the rotary tables of a (F, H', W') grid as CogVideoXPipeline computes them (resize-crop
  // region against the sample size, linspace grids), each [F * H' * W', head_dim] float32.
  std::pair<at::Tensor, at::Tensor> rotary_tables(int64_t frames, int64_t height, int64_t width,
                                                  const at::Device& device) const;

  const CogVideoXConfig& config() const { return config_; }

  CogVideoXPatchEmbed patch_embed{nullptr};
  TimestepEmbedding time_embedding{nullptr};
  std::vector<CogVideoXBlock> transformer_blocks;
  LayerNorm norm_final{nullptr};
  CogVideoXAdaLayerNorm norm_out{nullptr};
  Linear proj_out{nullptr};

 private:
  at::TensorOptions param_options() const;
  // Position tables of the last grid, cast for use (ranks of an in-process CP run share them).
  struct PositionCache {
    std::array<int64_t, 3> grid{};
    at::Device device = at::kCPU;
    at::ScalarType dtype = at::kFloat;
    at::Tensor sincos;              // [N, D] in the model dtype (2b)
    at::Tensor rope_cos, rope_sin;  // [N, head_dim] float32 (5b)
  };
  std::shared_ptr<const PositionCache> positions(const std::array<int64_t, 3>& grid);

  CogVideoXConfig config_;
  std::mutex position_mutex_;
  std::shared_ptr<const PositionCache> position_cache_;
};
TORCH_MODULE(CogVideoXTransformer3DModel);

}  // namespace ditbench
