#pragma once
// Wan 2.1 text-to-video transformer (diffusers WanTransformer3DModel, models.md §6): modules and
// parameter names mirror diffusers' tree, so named_parameters() yields exactly the keys of a
// diffusers checkpoint. diffusers keeps `time_embedder`, every `scale_shift_table` and `norm2` in
// float32 whatever the model dtype (_keep_in_fp32_modules); so does this model.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <vector>

#include "models/common/embeddings.h"
#include "models/common/image_tokens.h"
#include "models/common/layers.h"
#include "models/common/norms.h"
#include "models/model.h"
#include "models/wan/config.h"
#include "optimizations/parallel/communicator.h"
#include "optimizations/quant/linear.h"

namespace ditbench {

// BlockState::extra of this model. BlockState::hidden is the image stream [B, N, D], `context` the
// projected text [B, L, D] (read by every block's cross-attention, never written), `temb` the time
// embedding [B, D]. Under context parallelism prepare() shards the image tokens and their RoPE
// rows; the text stays whole on every rank (cross-attention needs all of it for each query).
struct WanState : ImageTokenState {
  at::Tensor rope_cos, rope_sin;  // [N, head_dim] float32, interleaved pairs (local rows under CP)
  at::Tensor timestep_proj;       // [B, 6, D] the blocks' modulation input, model dtype
  at::Tensor key_mask;  // [B, N/P] bool: self-attention keys under CP (padding false), else none
  std::array<int64_t, 3> grid{};  // patch grid (F', H', W'), N = F' * H' * W'
};
inline WanState& wan_state(BlockState& s) { return extra_state<WanState>(s, "Wan"); }
inline const WanState& wan_state(const BlockState& s) { return extra_state<WanState>(s, "Wan"); }

// diffusers WanAttention + WanAttnProcessor: QK RMSNorm over the full inner dim (across heads)
// before the head split. Self-attention (attn1) takes RoPE and goes through `attend` (sharded
// under context parallelism); cross-attention (attn2) attends the whole text from the local
// queries with the thread's backend.
class WanAttentionImpl : public torch::nn::Module {
 public:
  WanAttentionImpl(int64_t heads, int64_t head_dim, double eps, const at::TensorOptions& options);
  // x: [B, N, D], cos/sin: [N, head_dim], key_mask: [B, N] or undefined -> [B, N, D]
  at::Tensor self_attention(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                            const at::Tensor& key_mask);
  // x: [B, N, D], context: [B, L, D] -> [B, N, D]
  at::Tensor cross_attention(const at::Tensor& x, const at::Tensor& context);

  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  OutProjection to_out{nullptr};
  TorchRMSNorm norm_q{nullptr}, norm_k{nullptr};  // over D, across heads

 private:
  // x: [B, S, D] -> [B, H, S, Dh]
  at::Tensor heads_first(const at::Tensor& x) const;
  // out: [B, H, Sq, Dh] -> to_out([B, Sq, D]) in `dtype`
  at::Tensor merge_heads(const at::Tensor& out, at::ScalarType dtype);

  int64_t heads_;
};
TORCH_MODULE(WanAttention);

// blocks.i: modulated self-attention, cross-attention, modulated FFN (models.md §6.2).
class WanTransformerBlockImpl : public torch::nn::Module {
 public:
  WanTransformerBlockImpl(const WanConfig& config, const at::TensorOptions& options);
  // x: [B, N, D], context: [B, L, D], timestep_proj: [B, 6, D] -> [B, N, D]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context,
                     const at::Tensor& timestep_proj, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& key_mask);

  WanAttention attn1{nullptr}, attn2{nullptr};
  LayerNorm norm2{nullptr};  // affine, float32 weights (undefined without cross_attn_norm)
  FeedForward ffn{nullptr};
  torch::Tensor scale_shift_table;  // [1, 6, D] float32

 private:
  double eps_;
};
TORCH_MODULE(WanTransformerBlock);

// condition_embedder (diffusers WanTimeTextImageEmbedding, text-to-video part).
class WanConditionEmbedderImpl : public torch::nn::Module {
 public:
  WanConditionEmbedderImpl(const WanConfig& config, const at::TensorOptions& options);

  TimestepEmbedding time_embedder{nullptr};  // float32 weights
  Linear time_proj{nullptr};                 // D -> 6D
  PixArtAlphaTextProjection text_embedder{nullptr};

 private:
  friend class WanTransformer3DModelImpl;
  int64_t freq_dim_;
};
TORCH_MODULE(WanConditionEmbedder);

class WanTransformer3DModelImpl : public torch::nn::Module, public BlockTransformer {
 public:
  // Parameters are created uninitialised with `options` (device, dtype; the fp32-kept ones in
  // float32): load a checkpoint or random-init afterwards. A meta device builds the released size
  // without memory.
  WanTransformer3DModelImpl(const WanConfig& config, const at::TensorOptions& options = {});

  // Inputs: latents [B, C, F, H, W]; timestep [B] (int64 from UniPC, or float); prompt.embeds
  // [B, L, text_dim] (zero-padded, no mask: prompt.attention_mask is not read). Latents and
  // embeds are cast to the model dtype as the diffusers pipeline does. Bad shapes: InputError.
  BlockState prepare(const TransformerInputs& in) override;
  int64_t num_blocks() const override { return config_.num_layers; }
  void run_block(int64_t i, BlockState& s) override;
  // -> [B, out_channels, F, H, W]
  at::Tensor finish(BlockState& s) override;
  // TeaCache4Wan2.1's signal: the time embedding temb [B, D], or with use_ret_steps the
  // projected modulation timestep_proj [B, 6, D] (set_teacache_uses_timestep_proj).
  at::Tensor teacache_signal(const BlockState& s) override;
  BlockState fork_state(const BlockState& s) const override;
  // hidden, context, temb, rope_cos, rope_sin, timestep_proj, key_mask
  std::vector<at::Tensor> state_tensors(const BlockState& s) const override;
  void set_teacache_uses_timestep_proj(bool on) { teacache_timestep_proj_ = on; }

  const WanConfig& config() const { return config_; }

  PatchConv3d patch_embedding{nullptr};
  WanConditionEmbedder condition_embedder{nullptr};
  std::vector<WanTransformerBlock> blocks;
  Linear proj_out{nullptr};
  torch::Tensor scale_shift_table;  // [1, 2, D] float32: (shift, scale) of the output norm

 private:
  WanConfig config_;
  bool teacache_timestep_proj_ = false;
};
TORCH_MODULE(WanTransformer3DModel);

}  // namespace ditbench
