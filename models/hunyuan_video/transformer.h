#pragma once
// HunyuanVideo transformer (diffusers HunyuanVideoTransformer3DModel, models.md §2): modules and
// parameter names mirror diffusers' tree, so named_parameters() yields exactly the keys of a
// diffusers checkpoint. Blocks 0..num_layers-1 are dual-stream, the rest single-stream.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "models/common/embeddings.h"
#include "models/common/layers.h"
#include "models/common/linear_fusions.h"
#include "models/common/norms.h"
#include "models/hunyuan_video/config.h"
#include "models/model.h"
#include "optimizations/parallel/communicator.h"
#include "optimizations/quant/linear.h"

namespace ditbench {

// BlockState::extra of this model. Under context parallelism (a sequence group installed by
// ParallelScope) prepare() shards hidden, context, the RoPE rows and the key mask: blocks then see
// this rank's N/P image and L/P text rows and read the local N from hidden.size(1).
struct HunyuanVideoState {
  at::Tensor rope_cos, rope_sin;  // [N, head_dim] float32, interleaved pairs (local rows under CP)
  at::Tensor key_mask;  // [B, N + L] bool, true = may attend (padded text and CP padding false)
  std::array<int64_t, 3> grid{};           // patch grid (F', H', W'), N = F' * H' * W'
  int64_t num_image_tokens = 0;            // N of the whole sequence (finish() gathers back to it)
  Communicator* sequence_group = nullptr;  // the group the sequence is sharded over, or null
  // Single-stream blocks keep [image, text] as one tensor and expose hidden/context as views of
  // it; rebuilt from hidden/context whenever something replaced them.
  at::Tensor joint;  // [B, N + L, D] or undefined
};
HunyuanVideoState& hunyuan_video_state(BlockState& s);
const HunyuanVideoState& hunyuan_video_state(const BlockState& s);

// Joint attention of the dual-stream (with added text projections) and single-stream blocks:
// diffusers Attention + HunyuanVideoAttnProcessor2_0, QK RMSNorm, RoPE on image tokens only.
class HunyuanVideoAttentionImpl : public torch::nn::Module {
 public:
  // dual_stream: text has its own projections (add_*_proj, norm_added_*, to_add_out) and both
  // streams get an output projection; otherwise (single stream, pre_only) there is none.
  HunyuanVideoAttentionImpl(int64_t heads, int64_t head_dim, bool dual_stream,
                            const at::TensorOptions& options);

  // The inputs come as QuantizedActivation (optimizations/quant/quant.h): the q, k and v
  // projections read the bfloat16 activation, or, those on fp8_dynamic, its e4m3 rows quantized
  // once for all three (and for the single block's MLP projection).
  // Dual stream, before the output projections (to_out on the image rows, to_add_out on the
  // text rows, which the block runs with its gated residuals). x: [B, N, D], c: [B, L, D] ->
  // the joint attention output [B, N + L, D], image rows first.
  at::Tensor attend_dual(const QuantizedActivation& x, const QuantizedActivation& c,
                         const at::Tensor& key_mask, const at::Tensor& cos, const at::Tensor& sin);
  // Single stream over the joint sequence [image N, text]. joint: [B, S, D] -> [B, S, D]
  at::Tensor forward_single(const QuantizedActivation& joint, int64_t num_image_tokens,
                            const at::Tensor& key_mask, const at::Tensor& cos,
                            const at::Tensor& sin);

  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  RMSNorm norm_q{nullptr}, norm_k{nullptr};
  Linear add_q_proj{nullptr}, add_k_proj{nullptr}, add_v_proj{nullptr};
  RMSNorm norm_added_q{nullptr}, norm_added_k{nullptr};
  OutProjection to_out{nullptr};
  Linear to_add_out{nullptr};

 private:
  int64_t heads_;
  // to_q | to_k | to_v and add_q_proj | add_k_proj | add_v_proj as one GEMM each, where they serve.
  LinearGroup qkv_, added_qkv_;
};
TORCH_MODULE(HunyuanVideoAttention);

// Self-attention of the token refiner (diffusers Attention + AttnProcessor2_0, no QK norm).
class RefinerAttentionImpl : public torch::nn::Module {
 public:
  RefinerAttentionImpl(int64_t heads, int64_t head_dim, const at::TensorOptions& options);
  // x: [B, L, D], mask: [B, 1, L, L] bool -> [B, L, D]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);

  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  OutProjection to_out{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(RefinerAttention);

class HunyuanVideoTokenRefinerBlockImpl : public torch::nn::Module {
 public:
  HunyuanVideoTokenRefinerBlockImpl(int64_t heads, int64_t head_dim, double mlp_ratio,
                                    const at::TensorOptions& options);
  // x: [B, L, D], temb: [B, D], mask: [B, 1, L, L] -> [B, L, D]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb, const at::Tensor& mask);

  LayerNorm norm1{nullptr}, norm2{nullptr};
  RefinerAttention attn{nullptr};
  FeedForward ff{nullptr};
  Linear norm_out_linear{nullptr};  // key "norm_out.linear": (gate_msa, gate_mlp)
};
TORCH_MODULE(HunyuanVideoTokenRefinerBlock);

// context_embedder: the text token refiner (diffusers HunyuanVideoTokenRefiner).
class HunyuanVideoTokenRefinerImpl : public torch::nn::Module {
 public:
  HunyuanVideoTokenRefinerImpl(const HunyuanVideoConfig& config, const at::TensorOptions& options);
  // text: [B, L, text_dim], timestep: [B], text_mask: [B, L] bool -> [B, L, D]
  at::Tensor forward(const at::Tensor& text, const at::Tensor& timestep,
                     const at::Tensor& text_mask);

  CombinedTimestepTextProjEmbeddings time_text_embed{nullptr};
  Linear proj_in{nullptr};
  std::vector<HunyuanVideoTokenRefinerBlock> refiner_blocks;  // "token_refiner.refiner_blocks.j"
};
TORCH_MODULE(HunyuanVideoTokenRefiner);

// Dual-stream block (transformer_blocks.i).
class HunyuanVideoTransformerBlockImpl : public torch::nn::Module {
 public:
  HunyuanVideoTransformerBlockImpl(int64_t heads, int64_t head_dim, double mlp_ratio,
                                   const at::TensorOptions& options);
  // x: [B, N, D], c: [B, L, D], temb: [B, D] -> (x [B, N, D], c [B, L, D])
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& c,
                                            const at::Tensor& temb, const at::Tensor& key_mask,
                                            const at::Tensor& cos, const at::Tensor& sin);

  AdaLayerNormZero norm1{nullptr}, norm1_context{nullptr};
  HunyuanVideoAttention attn{nullptr};
  FeedForward ff{nullptr}, ff_context{nullptr};
};
TORCH_MODULE(HunyuanVideoTransformerBlock);

// Single-stream block (single_transformer_blocks.s) on the joint [image, text] sequence.
class HunyuanVideoSingleTransformerBlockImpl : public torch::nn::Module {
 public:
  HunyuanVideoSingleTransformerBlockImpl(int64_t heads, int64_t head_dim, double mlp_ratio,
                                         const at::TensorOptions& options);
  // joint: [B, N + L, D], temb: [B, D] -> [B, N + L, D]
  at::Tensor forward(const at::Tensor& joint, int64_t num_image_tokens, const at::Tensor& temb,
                     const at::Tensor& key_mask, const at::Tensor& cos, const at::Tensor& sin);

  HunyuanVideoAttention attn{nullptr};
  AdaLayerNormZeroSingle norm{nullptr};
  Linear proj_mlp{nullptr}, proj_out{nullptr};
};
TORCH_MODULE(HunyuanVideoSingleTransformerBlock);

class HunyuanVideoTransformer3DModelImpl : public torch::nn::Module, public BlockTransformer {
 public:
  // Parameters are created uninitialised with `options` (device, dtype): load a checkpoint or
  // random-init afterwards. A meta device builds the released size without memory.
  HunyuanVideoTransformer3DModelImpl(const HunyuanVideoConfig& config,
                                     const at::TensorOptions& options = {});

  // Inputs: latents [B, C, F, H, W]; timestep [B] (sigma * 1000); guidance [B] (g * 1000, needed
  // when guidance_embeds); prompt.embeds [B, L, text_dim]; prompt.attention_mask [B, L] (bool or
  // 0/1, right-padded; undefined = all valid); prompt.pooled [B, pooled_dim]. Latents, embeds and
  // pooled are cast to the model dtype as the diffusers pipeline does. Bad shapes: InputError.
  BlockState prepare(const TransformerInputs& in) override;
  int64_t num_blocks() const override { return config_.num_layers + config_.num_single_layers; }
  void run_block(int64_t i, BlockState& s) override;
  // -> [B, out_channels, F, H, W]
  at::Tensor finish(BlockState& s) override;
  // transformer_blocks[0].norm1's modulated image input x̂ of the real (non-padding) rows: [B, N, D]
  at::Tensor teacache_signal(const BlockState& s) override;
  BlockState fork_state(const BlockState& s) const override;
  // hidden, context, temb, rope_cos, rope_sin, key_mask, joint
  std::vector<at::Tensor> state_tensors(const BlockState& s) const override;

  const HunyuanVideoConfig& config() const { return config_; }

  PatchEmbed3d x_embedder{nullptr};
  HunyuanVideoTokenRefiner context_embedder{nullptr};
  CombinedTimestepTextProjEmbeddings time_text_embed{nullptr};
  std::vector<HunyuanVideoTransformerBlock> transformer_blocks;
  std::vector<HunyuanVideoSingleTransformerBlock> single_transformer_blocks;
  AdaLayerNormContinuous norm_out{nullptr};
  Linear proj_out{nullptr};

 private:
  at::TensorOptions param_options() const;

  HunyuanVideoConfig config_;
};
TORCH_MODULE(HunyuanVideoTransformer3DModel);

}  // namespace ditbench
