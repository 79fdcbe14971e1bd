#pragma once
// FLUX.1 transformer (diffusers FluxTransformer2DModel, models.md §3): modules and parameter
// names mirror diffusers' tree, so named_parameters() yields exactly the keys of a diffusers
// checkpoint. Blocks 0..num_layers-1 are dual-stream, the rest single-stream. The joint sequence
// is [text, image] and RoPE covers both (text ids are zero in the pipeline: an identity).
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "models/common/embeddings.h"
#include "models/common/image_tokens.h"
#include "models/common/layers.h"
#include "models/common/norms.h"
#include "models/flux/config.h"
#include "models/model.h"
#include "optimizations/parallel/communicator.h"
#include "optimizations/quant/linear.h"

namespace ditbench {

// BlockState::extra of this model. Under context parallelism (a sequence group installed by
// ParallelScope) prepare() shards context, hidden, their RoPE rows and the key mask: each rank's
// joint sequence is [text shard, image shard].
struct FluxState : ImageTokenState {
  at::Tensor rope_cos,
      rope_sin;         // [L + N, head_dim] float32, text rows first (local rows under CP)
  at::Tensor key_mask;  // [B, L + N] bool (CP padding false) or undefined: no mask
  // Single-stream blocks keep [text, image] as one tensor and expose context/hidden as views of
  // it; rebuilt from them whenever something replaced a stream.
  at::Tensor joint;  // [B, L + N, D] or undefined
};
inline FluxState& flux_state(BlockState& s) { return extra_state<FluxState>(s, "FLUX"); }
inline const FluxState& flux_state(const BlockState& s) {
  return extra_state<FluxState>(s, "FLUX");
}

// diffusers FluxAttention + FluxAttnProcessor: QK norm (torch.nn.RMSNorm), text first in the joint
// sequence, RoPE on every row. Dual stream: the text has its own projections and both streams an
// output projection; single stream (pre_only): neither.
class FluxAttentionImpl : public torch::nn::Module {
 public:
  FluxAttentionImpl(int64_t heads, int64_t head_dim, bool dual_stream,
                    const at::TensorOptions& options);

  // x: [B, N, D], c: [B, L, D]; cos/sin: [L + N, Dh] -> (x_out [B, N, D], c_out [B, L, D])
  std::pair<at::Tensor, at::Tensor> forward_dual(const at::Tensor& x, const at::Tensor& c,
                                                 const at::Tensor& key_mask, const at::Tensor& cos,
                                                 const at::Tensor& sin);
  // joint: [B, L + N, D] -> [B, L + N, D] (no output projection)
  at::Tensor forward_single(const at::Tensor& joint, const at::Tensor& key_mask,
                            const at::Tensor& cos, const at::Tensor& sin);

  TorchRMSNorm norm_q{nullptr}, norm_k{nullptr};
  Linear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  TorchRMSNorm norm_added_q{nullptr}, norm_added_k{nullptr};
  Linear add_q_proj{nullptr}, add_k_proj{nullptr}, add_v_proj{nullptr};
  OutProjection to_out{nullptr};
  Linear to_add_out{nullptr};

 private:
  // [B, S, D] -> [B, S, H, Dh], QK-normed when a norm is given
  at::Tensor heads(const at::Tensor& x, TorchRMSNorm& norm) const;
  // Q, K, V [B, S, H, Dh] -> attention output [B, S, D] after RoPE on Q and K
  at::Tensor attend_joint(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& key_mask, const at::Tensor& cos,
                          const at::Tensor& sin) const;

  int64_t heads_;
};
TORCH_MODULE(FluxAttention);

// Dual-stream block (transformer_blocks.i).
class FluxTransformerBlockImpl : public torch::nn::Module {
 public:
  FluxTransformerBlockImpl(int64_t heads, int64_t head_dim, double mlp_ratio,
                           const at::TensorOptions& options);
  // x: [B, N, D], c: [B, L, D], temb: [B, D] -> (c [B, L, D], x [B, N, D]) as diffusers returns
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& x, const at::Tensor& c,
                                            const at::Tensor& temb, const at::Tensor& key_mask,
                                            const at::Tensor& cos, const at::Tensor& sin);

  AdaLayerNormZero norm1{nullptr}, norm1_context{nullptr};
  FluxAttention attn{nullptr};
  FeedForward ff{nullptr}, ff_context{nullptr};
};
TORCH_MODULE(FluxTransformerBlock);

// Single-stream block (single_transformer_blocks.s) on the joint [text, image] sequence.
class FluxSingleTransformerBlockImpl : public torch::nn::Module {
 public:
  FluxSingleTransformerBlockImpl(int64_t heads, int64_t head_dim, double mlp_ratio,
                                 const at::TensorOptions& options);
  // joint: [B, L + N, D], temb: [B, D] -> [B, L + N, D]
  at::Tensor forward(const at::Tensor& joint, const at::Tensor& temb, const at::Tensor& key_mask,
                     const at::Tensor& cos, const at::Tensor& sin);

  AdaLayerNormZeroSingle norm{nullptr};
  Linear proj_mlp{nullptr}, proj_out{nullptr};
  FluxAttention attn{nullptr};
};
TORCH_MODULE(FluxSingleTransformerBlock);

class FluxTransformer2DModelImpl : public torch::nn::Module, public BlockTransformer {
 public:
  // Parameters are created uninitialised with `options` (device, dtype): load a checkpoint or
  // random-init afterwards. A meta device builds the released size without memory.
  FluxTransformer2DModelImpl(const FluxConfig& config, const at::TensorOptions& options = {});

  // Inputs as FluxPipeline passes them: latents [B, N, in_channels] (packed); timestep [B]
  // (σ, the model multiplies by 1000 in its dtype); guidance [B] (g, needed with
  // guidance_embeds); prompt.embeds [B, L, joint_attention_dim]; prompt.pooled [B, pooled_dim];
  // image_ids [N, 3] (required); text_ids [L, 3] (undefined = zeros). No text mask: every text
  // token is attended. Latents, embeds and pooled are cast to the model dtype. Bad shapes:
  // InputError naming the tensor.
  BlockState prepare(const TransformerInputs& in) override;
  int64_t num_blocks() const override { return config_.num_layers + config_.num_single_layers; }
  void run_block(int64_t i, BlockState& s) override;
  // -> [B, N, out_channels] (packed; the pipeline unpacks)
  at::Tensor finish(BlockState& s) override;
  // transformer_blocks[0].norm1's modulated image input x̂ of the real (non-padding) rows:
  // [B, N, D] (TeaCache4FLUX's signal).
  at::Tensor teacache_signal(const BlockState& s) override;
  BlockState fork_state(const BlockState& s) const override;
  // hidden, context, temb, rope_cos, rope_sin, key_mask, joint
  std::vector<at::Tensor> state_tensors(const BlockState& s) const override;

  const FluxConfig& config() const { return config_; }

  Linear x_embedder{nullptr}, context_embedder{nullptr};
  CombinedTimestepTextProjEmbeddings time_text_embed{nullptr};
  std::vector<FluxTransformerBlock> transformer_blocks;
  std::vector<FluxSingleTransformerBlock> single_transformer_blocks;
  AdaLayerNormContinuous norm_out{nullptr};
  Linear proj_out{nullptr};

 private:
  FluxConfig config_;
};
TORCH_MODULE(FluxTransformer2DModel);

// FluxPosEmbed: per-axis RoPE tables of position ids [S, 3] (angles in float64, as diffusers
// computes them off MPS), concatenated over the axes: (cos, sin), each [S, sum(axes_dim)] f32.
std::pair<at::Tensor, at::Tensor> flux_rope(const at::Tensor& ids,
                                            const std::vector<int64_t>& axes_dim, double theta);

}  // namespace ditbench
