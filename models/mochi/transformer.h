#pragma once
// Mochi-1 transformer (diffusers MochiTransformer3DModel, models.md §5): an asymmetric dual-stream
// DiT (visual width D, text width pooled_projection_dim) with learned axis-mixed RoPE, tanh-gated
// sandwich RMS norms and SwiGLU MLPs. Modules and parameter names mirror diffusers' tree, so
// named_parameters() yields exactly the keys of a diffusers checkpoint.
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "models/common/embeddings.h"
#include "models/common/image_tokens.h"
#include "models/common/layers.h"
#include "models/common/norms.h"
#include "models/mochi/config.h"
#include "models/model.h"
#include "optimizations/parallel/communicator.h"
#include "optimizations/quant/linear.h"

namespace ditbench {

// BlockState::extra of this model. Under context parallelism prepare() shards hidden, context,
// the RoPE rows and the key mask; blocks see this rank's rows only.
struct MochiState : ImageTokenState {
  at::Tensor rope_cos, rope_sin;  // [N, heads, head_dim / 2] float32 (local rows under CP)
  // [B, N + L] bool over the joint [image, text] keys: padded text and CP padding rows false.
  // Undefined when every key is valid.
  at::Tensor key_mask;
  at::Tensor text_padding;        // [B, L, 1] bool, true on padded text rows (and CP padding rows)
  std::array<int64_t, 3> grid{};  // (F, H / p, W / p)
};
inline MochiState& mochi_state(BlockState& s) { return extra_state<MochiState>(s, "Mochi"); }
inline const MochiState& mochi_state(const BlockState& s) {
  return extra_state<MochiState>(s, "Mochi");
}

// x * rsqrt(mean(x²) + eps) computed in f32, times `scale` in f32, cast back to x's dtype
// (diffusers MochiModulatedRMSNorm; no scale: plain RMS norm). x: [B, S, D], scale: [B, 1, D].
at::Tensor mochi_modulated_rms_norm(const at::Tensor& x, const at::Tensor& scale, double eps);

// MochiRMSNorm(dim, eps) with weight: the weight multiply happens in f32 before the cast back.
class MochiRMSNormImpl : public torch::nn::Module {
 public:
  MochiRMSNormImpl(int64_t dim, double eps, const at::TensorOptions& options);
  // x: [..., dim]
  at::Tensor forward(const at::Tensor& x);

  torch::Tensor weight;  // [dim]

 private:
  double eps_;
};
TORCH_MODULE(MochiRMSNorm);

// MochiAttentionPool (time_embed.pooler): attention of the masked mean token over [mean, text].
class MochiAttentionPoolImpl : public torch::nn::Module {
 public:
  MochiAttentionPoolImpl(int64_t heads, int64_t embed_dim, int64_t output_dim,
                         const at::TensorOptions& options);
  // x: [B, L, E], mask: [B, L] bool -> [B, output_dim]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);

  Linear to_kv{nullptr}, to_q{nullptr}, to_out{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(MochiAttentionPool);

// MochiCombinedTimestepCaptionEmbedding (time_embed): conditioning vector and caption projection.
class MochiTimeCaptionEmbeddingImpl : public torch::nn::Module {
 public:
  MochiTimeCaptionEmbeddingImpl(const MochiConfig& config, const at::TensorOptions& options);
  // timestep: [B], text: [B, L, E], mask: [B, L] bool -> (temb [B, D], caption [B, L, Dc])
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& timestep, const at::Tensor& text,
                                            const at::Tensor& mask, at::ScalarType hidden_dtype);

  TimestepEmbedding timestep_embedder{nullptr};
  MochiAttentionPool pooler{nullptr};
  Linear caption_proj{nullptr};

 private:
  int64_t time_embed_dim_;
};
TORCH_MODULE(MochiTimeCaptionEmbedding);

// nn.Conv2d(C, D, k=s=p): key "weight" [D, C, p, p] and "bias" [D].
class MochiPatchConvImpl : public torch::nn::Module {
 public:
  MochiPatchConvImpl(int64_t in_channels, int64_t out_channels, int64_t patch,
                     const at::TensorOptions& options);
  // x: [B', C, H, W] -> [B', D, H/p, W/p]
  at::Tensor forward(const at::Tensor& x);

  torch::Tensor weight, bias;

 private:
  int64_t patch_;
};
TORCH_MODULE(MochiPatchConv);

// patch_embed (diffusers PatchEmbed without positions): the Conv2d applied to every frame.
class MochiPatchEmbedImpl : public torch::nn::Module {
 public:
  MochiPatchEmbedImpl(int64_t in_channels, int64_t embed_dim, int64_t patch,
                      const at::TensorOptions& options);
  // x: [B, C, F, H, W] -> [B, F * H/p * W/p, D], tokens in (t, h, w) order
  at::Tensor forward(const at::Tensor& x);

  MochiPatchConv proj{nullptr};
};
TORCH_MODULE(MochiPatchEmbed);

// Modulation of a stream: Lin(D -> 4 * width) on silu(temb), chunks (scale_msa, gate_msa,
// scale_mlp, gate_mlp) (diffusers MochiRMSNormZero, key "linear"); or, for the text stream of the
// last block, Lin(D -> width) giving the scale only (MochiLayerNormContinuous, key "linear_1").
class MochiModulationImpl : public torch::nn::Module {
 public:
  struct Output {
    at::Tensor x;          // modulated input: [B, S, width]
    at::Tensor gate_msa;   // [B, width] (undefined for scale-only)
    at::Tensor scale_mlp;  // [B, width]
    at::Tensor gate_mlp;   // [B, width]
  };
  MochiModulationImpl(int64_t dim, int64_t width, bool scale_only,
                      const at::TensorOptions& options);
  // x: [B, S, width], temb: [B, D]
  Output forward(const at::Tensor& x, const at::Tensor& temb);

  Linear linear{nullptr};    // 4-way modulation
  Linear linear_1{nullptr};  // scale only
};
TORCH_MODULE(MochiModulation);

// MochiAttention + MochiAttnProcessor2_0: joint attention over [image, valid text].
class MochiAttentionImpl : public torch::nn::Module {
 public:
  MochiAttentionImpl(int64_t heads, int64_t head_dim, int64_t context_dim, bool context_pre_only,
                     const at::TensorOptions& options);
  // x: [B, N, D], c: [B, L, Dc], cos/sin: [N, H, Dh/2], key_mask: [B, N + L] or undefined,
  // text_padding: [B, L, 1] bool or undefined -> (x_out [B, N, D], c_out [B, L, Dc] or undefined)
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& c,
                                            const at::Tensor& cos, const at::Tensor& sin,
                                            const at::Tensor& key_mask,
                                            const at::Tensor& text_padding);

  MochiRMSNorm norm_q{nullptr}, norm_k{nullptr}, norm_added_q{nullptr}, norm_added_k{nullptr};
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  Linear add_q_proj{nullptr}, add_k_proj{nullptr}, add_v_proj{nullptr};
  OutProjection to_out{nullptr};
  Linear to_add_out{nullptr};  // absent in the context_pre_only block

 private:
  int64_t heads_;
};
TORCH_MODULE(MochiAttention);

// Mochi's interleaved RoPE with per-head tables: pairs (x[2i], x[2i+1]) rotated in f32, each
// component cast back to x's dtype. x: [B, N, H, Dh], cos/sin: [N, H, Dh/2].
at::Tensor mochi_apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// transformer_blocks.i
class MochiTransformerBlockImpl : public torch::nn::Module {
 public:
  MochiTransformerBlockImpl(const MochiConfig& config, bool context_pre_only,
                            const at::TensorOptions& options);
  // x: [B, N, D], c: [B, L, Dc], temb: [B, D] -> (x [B, N, D], c [B, L, Dc]); c is returned
  // unchanged by the context_pre_only block.
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& c,
                                            const at::Tensor& temb, const MochiState& st);

  MochiModulation norm1{nullptr}, norm1_context{nullptr};
  MochiAttention attn1{nullptr};
  FeedForward ff{nullptr}, ff_context{nullptr};

 private:
  bool context_pre_only_;
};
TORCH_MODULE(MochiTransformerBlock);

class MochiTransformer3DModelImpl : public torch::nn::Module, public BlockTransformer {
 public:
  // Parameters are created uninitialised with `options`: load a checkpoint or random-init after.
  MochiTransformer3DModelImpl(const MochiConfig& config, const at::TensorOptions& options = {});

  // Inputs: latents [B, C, F, H, W]; timestep [B] ((1 - σ) * 1000, as the pipeline rounds it);
  // prompt.embeds [B, L, text_embed_dim]; prompt.attention_mask [B, L] (bool or 0/1,
  // right-padded; undefined = all valid). Latents and embeds are cast to the model dtype. Bad
  // shapes: InputError naming the tensor.
  BlockState prepare(const TransformerInputs& in) override;
  int64_t num_blocks() const override { return config_.num_layers; }
  void run_block(int64_t i, BlockState& s) override;
  // -> [B, out_channels, F, H, W]
  at::Tensor finish(BlockState& s) override;
  // transformer_blocks[0].norm1's modulated image input of the real rows: [B, N, D]
  at::Tensor teacache_signal(const BlockState& s) override;
  BlockState fork_state(const BlockState& s) const override;
  // hidden, context, temb, rope_cos, rope_sin, key_mask, text_padding
  std::vector<at::Tensor> state_tensors(const BlockState& s) const override;

  const MochiConfig& config() const { return config_; }

  MochiPatchEmbed patch_embed{nullptr};
  MochiTimeCaptionEmbedding time_embed{nullptr};
  torch::Tensor pos_frequencies;  // [3, heads, head_dim / 2], learned
  std::vector<MochiTransformerBlock> transformer_blocks;
  AdaLayerNormContinuous norm_out{nullptr};
  Linear proj_out{nullptr};

 private:
  MochiConfig config_;
};
TORCH_MODULE(MochiTransformer3DModel);

// MochiRoPE: cos/sin tables [F * h * w, heads, head_dim / 2] float32 of the (t, h, w) grid, h and
// w centred and scaled to a 192 x 192 base area, angles = positions · pos_frequencies.
std::pair<at::Tensor, at::Tensor> mochi_rope(const at::Tensor& pos_frequencies, int64_t frames,
                                             int64_t height, int64_t width);

}  // namespace ditbench
