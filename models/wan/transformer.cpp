#include "models/wan/transformer.h"

#include <algorithm>
#include <string>
#include <tuple>

#include "models/common/error.h"
#include "models/common/register_modules.h"
#include "models/common/tensor_io.h"
#include "optimizations/attention/attention.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/sequence_shard.h"

namespace ditbench {
namespace {

// FP32LayerNorm without affine parameters: LayerNorm of x in float32 (the result stays float32).
at::Tensor fp32_layer_norm(const at::Tensor& x, double eps) {
  return at::layer_norm(x.to(at::kFloat), {x.size(-1)}, {}, {}, eps);
}

}  // namespace

// ---- attention ----

WanAttentionImpl::WanAttentionImpl(int64_t heads, int64_t head_dim, double eps,
                                   const at::TensorOptions& options)
    : heads_(heads) {
  const int64_t dim = heads * head_dim;
  register_modules<Linear>(*this, {{"to_q", &to_q}, {"to_k", &to_k}, {"to_v", &to_v}}, dim, dim,
                           true, options);
  to_out = register_module("to_out", OutProjection(dim, dim, true, options));
  register_modules<TorchRMSNorm>(*this, {{"norm_q", &norm_q}, {"norm_k", &norm_k}}, dim, eps,
                                 options);
}

at::Tensor WanAttentionImpl::heads_first(const at::Tensor& x) const {
  return x.unflatten(2, {heads_, -1}).transpose(1, 2);
}

at::Tensor WanAttentionImpl::merge_heads(const at::Tensor& out, at::ScalarType dtype) {
  return to_out(out.transpose(1, 2).flatten(2, 3).to(dtype));  // [B, Sq, D]
}

at::Tensor WanAttentionImpl::self_attention(const at::Tensor& x, const at::Tensor& cos,
                                            const at::Tensor& sin, const at::Tensor& key_mask) {
  // [B, N, D] -> QK norm over D -> [B, N, H, Dh] -> RoPE -> [B, H, N, Dh]
  auto q = apply_rotary_emb(norm_q(to_q(x)).unflatten(2, {heads_, -1}), cos, sin, 1);
  auto k = apply_rotary_emb(norm_k(to_k(x)).unflatten(2, {heads_, -1}), cos, sin, 1);
  auto v = heads_first(to_v(x));
  auto out = attend(q.transpose(1, 2), k.transpose(1, 2), v, key_mask);  // [B, H, N, Dh]
  return merge_heads(out, q.scalar_type());
}

at::Tensor WanAttentionImpl::cross_attention(const at::Tensor& x, const at::Tensor& context) {
  auto q = heads_first(norm_q(to_q(x)));        // [B, H, N, Dh]
  auto k = heads_first(norm_k(to_k(context)));  // [B, H, L, Dh]
  auto v = heads_first(to_v(context));
  // The text is whole on every rank, so the local queries attend it without any exchange.
  auto out = local_attention(q, k, v, {}, false).out;  // [B, H, N, Dh]
  return merge_heads(out, q.scalar_type());
}

// ---- block ----

WanTransformerBlockImpl::WanTransformerBlockImpl(const WanConfig& config,
                                                 const at::TensorOptions& options)
    : eps_(config.eps) {
  const int64_t dim = config.inner_dim();
  const auto f32 = options.dtype(at::kFloat);
  attn1 = register_module("attn1", WanAttention(config.num_attention_heads,
                                                config.attention_head_dim, config.eps, options));
  attn2 = register_module("attn2", WanAttention(config.num_attention_heads,
                                                config.attention_head_dim, config.eps, options));
  if (config.cross_attn_norm) norm2 = register_module("norm2", LayerNorm(dim, config.eps, f32));
  ffn = register_module(
      "ffn", FeedForward(dim, config.ffn_dim, FeedForwardActivation::kGeluTanh, options));
  scale_shift_table = register_parameter("scale_shift_table", at::empty({1, 6, dim}, f32), false);
}

at::Tensor WanTransformerBlockImpl::forward(const at::Tensor& x, const at::Tensor& context,
                                            const at::Tensor& timestep_proj, const at::Tensor& cos,
                                            const at::Tensor& sin, const at::Tensor& key_mask) {
  const auto dtype = x.scalar_type();
  // (shift, scale, gate) of the self-attention, then of the FFN: 6 x [B, 1, D] float32
  auto mod = (scale_shift_table + timestep_proj.to(at::kFloat)).chunk(6, 1);
  // 1) self-attention; the residual add in float32
  auto nx = (fp32_layer_norm(x, eps_) * (1 + mod[1]) + mod[0]).to(dtype);
  auto h = (x.to(at::kFloat) + attn1->self_attention(nx, cos, sin, key_mask) * mod[2]).to(dtype);
  // 2) cross-attention to the text: no modulation, a plain add in the model dtype
  nx = norm2.is_empty() ? h : norm2(h.to(at::kFloat)).to(dtype);
  h = h + attn2->cross_attention(nx, context);
  // 3) FFN
  nx = (fp32_layer_norm(h, eps_) * (1 + mod[4]) + mod[3]).to(dtype);
  return (h.to(at::kFloat) + ffn(nx).to(at::kFloat) * mod[5]).to(dtype);  // [B, N, D]
}

// ---- condition embedder ----

WanConditionEmbedderImpl::WanConditionEmbedderImpl(const WanConfig& config,
                                                   const at::TensorOptions& options)
    : freq_dim_(config.freq_dim) {
  const int64_t dim = config.inner_dim();
  time_embedder = register_module(
      "time_embedder", TimestepEmbedding(config.freq_dim, dim, options.dtype(at::kFloat)));
  time_proj = register_module("time_proj", Linear(dim, 6 * dim, true, options));
  text_embedder = register_module(
      "text_embedder",
      PixArtAlphaTextProjection(config.text_dim, dim, Activation::kGeluTanh, options));
}

// ---- the model ----

WanTransformer3DModelImpl::WanTransformer3DModelImpl(const WanConfig& config,
                                                     const at::TensorOptions& options)
    : config_(config) {
  config_.validate("WanConfig");
  const int64_t dim = config_.inner_dim();
  patch_embedding = register_module(
      "patch_embedding", PatchConv3d(config_.in_channels, dim, config_.patch_size, options));
  condition_embedder =
      register_module("condition_embedder", WanConditionEmbedder(config_, options));
  blocks = register_module_list<WanTransformerBlock>(
      *this, "blocks", config_.num_layers, [&] { return WanTransformerBlock(config_, options); });
  proj_out = register_module(
      "proj_out", Linear(dim, config_.patch_volume() * config_.out_channels, true, options));
  scale_shift_table = register_parameter("scale_shift_table",
                                         at::empty({1, 2, dim}, options.dtype(at::kFloat)), false);
}

BlockState WanTransformer3DModelImpl::prepare(const TransformerInputs& in) {
  const auto& c = config_;
  const auto opts = proj_out->weight.options();
  const auto dtype = opts.dtype().toScalarType();
  // ---- validate the inputs, naming the tensor at fault ----
  const auto& latents = in.latents;
  if (!latents.defined() || latents.dim() != 5 || latents.size(1) != c.in_channels) {
    throw InputError("latents: expected [B, " + std::to_string(c.in_channels) + ", F, H, W], got " +
                     describe_shape(latents));
  }
  const int64_t batch = latents.size(0);
  const auto& p = c.patch_size;
  if (latents.size(2) % p[0] || latents.size(3) % p[1] || latents.size(4) % p[2]) {
    throw InputError("latents: F, H, W " + describe_shape(latents) +
                     " not divisible by the patch (" + std::to_string(p[0]) + ", " +
                     std::to_string(p[1]) + ", " + std::to_string(p[2]) + ")");
  }
  const std::array<int64_t, 3> grid = {latents.size(2) / p[0], latents.size(3) / p[1],
                                       latents.size(4) / p[2]};
  if (*std::max_element(grid.begin(), grid.end()) > c.rope_max_seq_len) {
    throw InputError("latents: patch grid " + c10::str(at::IntArrayRef(grid)) +
                     " exceeds rope_max_seq_len " + std::to_string(c.rope_max_seq_len));
  }
  const auto& text = in.prompt.embeds;
  if (!text.defined() || text.dim() != 3 || text.size(0) != batch || text.size(2) != c.text_dim) {
    throw InputError("prompt.embeds: expected [" + std::to_string(batch) + ", L, " +
                     std::to_string(c.text_dim) + "], got " + describe_shape(text));
  }
  const auto& t = in.timestep;
  if (!t.defined() || t.dim() > 1 || (t.dim() == 1 && t.size(0) != batch && t.size(0) != 1)) {
    throw InputError("timestep: expected [" + std::to_string(batch) + "], got " +
                     describe_shape(t));
  }
  auto timestep = t.reshape({-1}).expand({batch}).to(opts.device());  // [B]

  auto state = std::make_shared<WanState>();
  state->grid = grid;
  // RoPE tables [N, head_dim] f32 from float64 angles, integer positions per axis.
  std::tie(state->rope_cos, state->rope_sin) = rope_3d_grid(
      grid[0], grid[1], grid[2], c.rope_axes_dim(), 10000.0, opts.device(), at::kDouble);

  BlockState s;
  s.hidden = patch_embedding(latents.to(opts.device(), dtype)).contiguous();  // [B, N, D]
  auto text_in = text.to(opts.device(), dtype);
  // Time embedding in float32 weights, then the model dtype (diffusers' type_as(text)).
  auto& ce = condition_embedder;
  s.temb = ce->time_embedder(timestep_sinusoid(timestep, ce->freq_dim_)).to(dtype);  // [B, D]
  state->timestep_proj = ce->time_proj(at::silu(s.temb)).unflatten(1, {6, -1});      // [B, 6, D]
  s.context = ce->text_embedder(text_in);                                            // [B, L, D]

  const int64_t n = s.hidden.size(1);
  state->num_image_tokens = n;
  Communicator* group = current_sequence_group();
  if (group) {
    // Context parallelism: rank r of P keeps image rows [r, r + 1) * ceil(N / P) and their RoPE
    // rows; the last ranks' shards end in zero padding, masked as self-attention keys. The text
    // is not sharded: only cross-attention reads it, which needs no exchange between ranks.
    // [B, N/P, D], the RoPE rows [N/P, head_dim] and the key mask [B, N/P]
    state->key_mask = state->shard_image(s, state->rope_cos, state->rope_sin, *group);
  }
  s.extra = state;
  return s;
}

void WanTransformer3DModelImpl::run_block(int64_t i, BlockState& s) {
  TORCH_CHECK(i >= 0 && i < num_blocks(), "run_block: block ", i, " of ", num_blocks());
  const auto& st = wan_state(s);
  s.hidden =
      blocks[i](s.hidden, s.context, st.timestep_proj, st.rope_cos, st.rope_sin, st.key_mask);
}

at::Tensor WanTransformer3DModelImpl::finish(BlockState& s) {
  const auto& st = wan_state(s);
  const auto dtype = s.hidden.scalar_type();
  // (shift, scale) = table + temb: 2 x [B, 1, D] float32, shift first.
  auto mod = (scale_shift_table + s.temb.unsqueeze(1)).chunk(2, 1);
  auto x = (fp32_layer_norm(s.hidden, config_.eps) * (1 + mod[1]) + mod[0]).to(dtype);
  x = proj_out(x);  // [B, N, pt*ph*pw*C]
  // Under context parallelism: the local rows of every rank, in rank order, without the padding.
  x = st.gather_image(x);
  // Features ordered (pt, ph, pw, C), C fastest: [B, F', H', W', pt, ph, pw, C]
  const auto& g = st.grid;
  const auto& p = config_.patch_size;
  x = x.reshape({x.size(0), g[0], g[1], g[2], p[0], p[1], p[2], config_.out_channels})
          .permute({0, 7, 1, 4, 2, 5, 3, 6});
  return x.flatten(6, 7).flatten(4, 5).flatten(2, 3);  // [B, C, F, H, W]
}

BlockState WanTransformer3DModelImpl::fork_state(const BlockState& s) const {
  return fork_with_state<WanState>(s, "Wan");
}

std::vector<at::Tensor> WanTransformer3DModelImpl::state_tensors(const BlockState& s) const {
  const auto& st = extra_state<WanState>(s, "Wan");
  return {s.hidden, s.context, s.temb, st.rope_cos, st.rope_sin, st.timestep_proj, st.key_mask};
}

at::Tensor WanTransformer3DModelImpl::teacache_signal(const BlockState& s) {
  if (teacache_timestep_proj_) return wan_state(s).timestep_proj;  // [B, 6, D]
  return s.temb;                                                   // [B, D]
}

}  // namespace ditbench
