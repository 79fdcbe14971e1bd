#include "models/mochi/transformer.h"

#include <torch/nn/modules/container/modulelist.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "models/common/error.h"
#include "models/common/flop_count.h"
#include "models/common/joint_sequence.h"
#include "models/common/register_modules.h"
#include "optimizations/attention/attention.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/sequence_shard.h"

namespace ditbench {
namespace {

constexpr double kNormEps = 1e-6;    // the blocks' modulated RMS norms and norm_out
constexpr double kQkNormEps = 1e-5;  // MochiRMSNorm of q and k
constexpr double kRopeBaseArea = 192.0 * 192.0;

// [B, S, D] -> [B, S, H, Dh]
at::Tensor split_heads(const at::Tensor& x, int64_t heads) { return x.unflatten(2, {heads, -1}); }

// 1 + scale[:, None] in f32: the multiplier of a modulated norm. scale: [B, W] -> [B, 1, W]
at::Tensor one_plus(const at::Tensor& scale) { return scale.unsqueeze(1).to(at::kFloat) + 1; }

}  // namespace

at::Tensor mochi_modulated_rms_norm(const at::Tensor& x, const at::Tensor& scale, double eps) {
  auto x32 = x.to(at::kFloat);
  auto y = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);  // [B, S, D] f32
  if (scale.defined()) y = y * scale;
  return y.to(x.scalar_type());
}

MochiRMSNormImpl::MochiRMSNormImpl(int64_t dim, double eps, const at::TensorOptions& options)
    : eps_(eps) {
  weight = register_parameter("weight", at::empty({dim}, options), false);
}

at::Tensor MochiRMSNormImpl::forward(const at::Tensor& x) {
  auto variance = x.to(at::kFloat).pow(2).mean(-1, /*keepdim=*/true);  // [..., 1] f32
  auto y = x * at::rsqrt(variance + eps_);                             // promoted to f32
  return (y * weight).to(x.scalar_type());                             // weight applied in f32
}

// ---- embeddings ----

MochiAttentionPoolImpl::MochiAttentionPoolImpl(int64_t heads, int64_t embed_dim, int64_t output_dim,
                                               const at::TensorOptions& options)
    : heads_(heads) {
  to_kv = register_module("to_kv", Linear(embed_dim, 2 * embed_dim, true, options));
  to_q = register_module("to_q", Linear(embed_dim, embed_dim, true, options));
  to_out = register_module("to_out", Linear(embed_dim, output_dim, true, options));
}

at::Tensor MochiAttentionPoolImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  const int64_t batch = x.size(0), length = x.size(1);
  // Masked mean of the tokens (weights 1 / max(valid, 1)), the query token.
  auto weights = mask.unsqueeze(2).to(x.scalar_type());               // [B, L, 1]
  weights = weights / weights.sum(1, /*keepdim=*/true).clamp_min(1);  // [B, L, 1]
  auto pooled = (x * weights).sum(1, /*keepdim=*/true);               // [B, 1, E]
  auto tokens = at::cat({pooled, x}, 1);                              // [B, 1 + L, E]
  // to_kv's outputs are laid out [2, heads, head_dim]: keys first, then values.
  auto kv = to_kv(tokens).unflatten(2, {2, heads_, -1}).transpose(1, 3);  // [B, H, 2, 1 + L, Dh]
  auto k = kv.select(2, 0), v = kv.select(2, 1);                          // [B, H, 1 + L, Dh]
  auto q = to_q(tokens.select(1, 0)).unflatten(1, {heads_, -1}).unsqueeze(2);  // [B, H, 1, Dh]
  // The mean token is always attended; padded tokens never are.
  auto keys =
      at::cat({at::ones({batch, 1}, mask.options().dtype(at::kBool)), mask.to(at::kBool)}, 1)
          .view({batch, 1, 1, length + 1});     // [B, 1, 1, 1 + L]
  auto out = attend_with_mask(q, k, v, keys);   // [B, H, 1, Dh]
  return to_out(out.squeeze(2).flatten(1, 2));  // [B, output_dim]
}

MochiTimeCaptionEmbeddingImpl::MochiTimeCaptionEmbeddingImpl(const MochiConfig& config,
                                                             const at::TensorOptions& options)
    : time_embed_dim_(config.time_embed_dim) {
  const int64_t dim = config.inner_dim();
  timestep_embedder =
      register_module("timestep_embedder", TimestepEmbedding(config.time_embed_dim, dim, options));
  pooler = register_module(
      "pooler", MochiAttentionPool(config.pooler_heads, config.text_embed_dim, dim, options));
  caption_proj = register_module(
      "caption_proj", Linear(config.text_embed_dim, config.pooled_projection_dim, true, options));
}

std::pair<at::Tensor, at::Tensor> MochiTimeCaptionEmbeddingImpl::forward(
    const at::Tensor& timestep, const at::Tensor& text, const at::Tensor& mask,
    at::ScalarType hidden_dtype) {
  auto temb = timestep_embedder(timestep_sinusoid(timestep, time_embed_dim_).to(hidden_dtype));
  return {temb + pooler(text, mask), caption_proj(text)};  // [B, D], [B, L, Dc]
}

MochiPatchConvImpl::MochiPatchConvImpl(int64_t in_channels, int64_t out_channels, int64_t patch,
                                       const at::TensorOptions& options)
    : patch_(patch) {
  weight = register_parameter("weight",
                              at::empty({out_channels, in_channels, patch, patch}, options), false);
  bias = register_parameter("bias", at::empty({out_channels}, options), false);
}

at::Tensor MochiPatchConvImpl::forward(const at::Tensor& x) {
  auto y = at::conv2d(x, weight, bias, {patch_, patch_});
  count_conv_flops(y.numel(), weight.numel(), weight.size(0));
  return y;
}

MochiPatchEmbedImpl::MochiPatchEmbedImpl(int64_t in_channels, int64_t embed_dim, int64_t patch,
                                         const at::TensorOptions& options) {
  proj = register_module("proj", MochiPatchConv(in_channels, embed_dim, patch, options));
}

at::Tensor MochiPatchEmbedImpl::forward(const at::Tensor& x) {
  const int64_t batch = x.size(0), frames = x.size(2);
  auto per_frame = x.permute({0, 2, 1, 3, 4}).flatten(0, 1);  // [B F, C, H, W]
  auto y = proj(per_frame).flatten(2).transpose(1, 2);        // [B F, H' W', D]
  return y.unflatten(0, {batch, frames}).flatten(1, 2);       // [B, F H' W', D]
}

std::pair<at::Tensor, at::Tensor> mochi_rope(const at::Tensor& pos_frequencies, int64_t frames,
                                             int64_t height, int64_t width) {
  const auto f32 = pos_frequencies.options().dtype(at::kFloat);
  // Patch centres on a grid scaled to the base area and centred on 0, as Python floats.
  const double scale = std::pow(kRopeBaseArea / static_cast<double>(height * width), 0.5);
  auto centers = [&](int64_t n) {
    const double half = -static_cast<double>(n) * scale / 2;
    auto edges = at::linspace(half, -half, n + 1, f32);          // [n + 1]
    return (edges.narrow(0, 0, n) + edges.narrow(0, 1, n)) / 2;  // [n]
  };
  auto grids = at::meshgrid({at::arange(frames, f32), centers(height), centers(width)}, "ij");
  auto positions = at::stack(grids, -1).view({-1, 3});  // [N, 3]: (t, h, w)
  auto angles = at::einsum("nd,dhf->nhf", {positions, pos_frequencies.to(at::kFloat)});
  count_gemm_flops(positions.size(0), positions.size(1), angles.numel() / angles.size(0));
  return {angles.cos(), angles.sin()};  // [N, H, Dh/2] each
}

at::Tensor mochi_apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const auto dtype = x.scalar_type();
  auto pairs = x.unflatten(-1, {-1, 2});           // [B, N, H, Dh/2, 2]
  auto even = pairs.select(-1, 0).to(at::kFloat);  // [B, N, H, Dh/2]
  auto odd = pairs.select(-1, 1).to(at::kFloat);
  auto first = (even * cos - odd * sin).to(dtype);
  auto second = (even * sin + odd * cos).to(dtype);
  return at::stack({first, second}, -1).flatten(-2);  // [B, N, H, Dh]
}

// ---- blocks ----

MochiModulationImpl::MochiModulationImpl(int64_t dim, int64_t width, bool scale_only,
                                         const at::TensorOptions& options) {
  if (scale_only) {
    linear_1 = register_module("linear_1", Linear(dim, width, true, options));
  } else {
    linear = register_module("linear", Linear(dim, 4 * width, true, options));
  }
}

MochiModulationImpl::Output MochiModulationImpl::forward(const at::Tensor& x,
                                                         const at::Tensor& temb) {
  if (!linear_1.is_empty()) {
    auto scale = linear_1(at::silu(temb).to(x.scalar_type()));  // [B, W]
    return {mochi_modulated_rms_norm(x, one_plus(scale), kNormEps), {}, {}, {}};
  }
  auto chunks = linear(at::silu(temb)).chunk(4, 1);  // scale_msa, gate_msa, scale_mlp, gate_mlp
  return {mochi_modulated_rms_norm(x, one_plus(chunks[0]), kNormEps), chunks[1], chunks[2],
          chunks[3]};
}

MochiAttentionImpl::MochiAttentionImpl(int64_t heads, int64_t head_dim, int64_t context_dim,
                                       bool context_pre_only, const at::TensorOptions& options)
    : heads_(heads) {
  const int64_t dim = heads * head_dim;
  register_modules<MochiRMSNorm>(*this,
                                 {{"norm_q", &norm_q},
                                  {"norm_k", &norm_k},
                                  {"norm_added_q", &norm_added_q},
                                  {"norm_added_k", &norm_added_k}},
                                 head_dim, kQkNormEps, options);
  register_modules<Linear>(*this, {{"to_q", &to_q}, {"to_k", &to_k}, {"to_v", &to_v}}, dim, dim,
                           false, options);
  register_modules<Linear>(
      *this,
      {{"add_k_proj", &add_k_proj}, {"add_v_proj", &add_v_proj}, {"add_q_proj", &add_q_proj}},
      context_dim, dim, false, options);
  to_out = register_module("to_out", OutProjection(dim, dim, true, options));
  if (!context_pre_only) {
    to_add_out = register_module("to_add_out", Linear(dim, context_dim, true, options));
  }
}

std::pair<at::Tensor, at::Tensor> MochiAttentionImpl::forward(
    const at::Tensor& x, const at::Tensor& c, const at::Tensor& cos, const at::Tensor& sin,
    const at::Tensor& key_mask, const at::Tensor& text_padding) {
  const int64_t n = x.size(1), l = c.size(1);
  // Image stream [B, N, H, Dh]: QK norm, then RoPE.
  auto q = mochi_apply_rope(norm_q(split_heads(to_q(x), heads_)), cos, sin);
  auto k = mochi_apply_rope(norm_k(split_heads(to_k(x), heads_)), cos, sin);
  auto v = split_heads(to_v(x), heads_);
  // Text stream [B, L, H, Dh]: its own projections and norms, no RoPE.
  auto qc = norm_added_q(split_heads(add_q_proj(c), heads_));
  auto kc = norm_added_k(split_heads(add_k_proj(c), heads_));
  auto vc = split_heads(add_v_proj(c), heads_);
  // Joint [image, text] in [B, H, N + L, Dh]. diffusers drops each sample's padded text from the
  // sequence; masking those keys gives the same attention for every kept query.
  auto out = attend(at::cat({q, qc}, 1).transpose(1, 2), at::cat({k, kc}, 1).transpose(1, 2),
                    at::cat({v, vc}, 1).transpose(1, 2), key_mask);
  out = out.transpose(1, 2).flatten(2, 3).to(q.scalar_type());  // [B, N + L, D]
  auto ox = to_out(out.narrow(1, 0, n));                        // [B, N, D]
  if (to_add_out.is_empty()) return {ox, at::Tensor()};
  // Dropped text rows come back as zeros in diffusers (so to_add_out gives its bias there).
  auto oc = out.narrow(1, n, l);  // [B, L, D]
  if (text_padding.defined()) oc = oc.masked_fill(text_padding, 0);
  return {ox, to_add_out(oc)};  // [B, L, Dc]
}

MochiTransformerBlockImpl::MochiTransformerBlockImpl(const MochiConfig& config,
                                                     bool context_pre_only,
                                                     const at::TensorOptions& options)
    : context_pre_only_(context_pre_only) {
  const int64_t dim = config.inner_dim(), context_dim = config.pooled_projection_dim;
  norm1 = register_module("norm1", MochiModulation(dim, dim, false, options));
  norm1_context = register_module("norm1_context",
                                  MochiModulation(dim, context_dim, context_pre_only, options));
  attn1 =
      register_module("attn1", MochiAttention(config.num_attention_heads, config.attention_head_dim,
                                              context_dim, context_pre_only, options));
  ff = register_module("ff", FeedForward(dim, config.ff_inner_dim(), FeedForwardActivation::kSwiGLU,
                                         options, -1, false));
  if (!context_pre_only) {
    ff_context = register_module("ff_context",
                                 FeedForward(context_dim, config.ff_context_inner_dim(),
                                             FeedForwardActivation::kSwiGLU, options, -1, false));
  }
}

std::pair<at::Tensor, at::Tensor> MochiTransformerBlockImpl::forward(const at::Tensor& x,
                                                                     const at::Tensor& c,
                                                                     const at::Tensor& temb,
                                                                     const MochiState& st) {
  auto nx = norm1(x, temb);          // x̂ [B, N, D], gates and MLP scale [B, D]
  auto nc = norm1_context(c, temb);  // ĉ [B, L, Dc]
  auto [ax, ac] = attn1(nx.x, nc.x, st.rope_cos, st.rope_sin, st.key_mask, st.text_padding);
  // Sandwich norms: the branch output is RMS-normed and scaled by its tanh gate, in f32.
  auto x1 = x + mochi_modulated_rms_norm(ax, nx.gate_msa.tanh().unsqueeze(1), kNormEps);
  auto mlp_in = mochi_modulated_rms_norm(x1, one_plus(nx.scale_mlp), kNormEps);
  auto x2 = x1 + mochi_modulated_rms_norm(ff(mlp_in), nx.gate_mlp.tanh().unsqueeze(1), kNormEps);
  if (context_pre_only_) return {x2, c};
  auto c1 = c + mochi_modulated_rms_norm(ac, nc.gate_msa.tanh().unsqueeze(1), kNormEps);
  auto c_mlp_in = mochi_modulated_rms_norm(c1, one_plus(nc.scale_mlp), kNormEps);
  auto c2 = c1 + mochi_modulated_rms_norm(ff_context(c_mlp_in), nc.gate_mlp.tanh().unsqueeze(1),
                                          kNormEps);
  return {x2, c2};
}

// ---- the model ----

MochiTransformer3DModelImpl::MochiTransformer3DModelImpl(const MochiConfig& config,
                                                         const at::TensorOptions& options)
    : config_(config) {
  config_.validate("MochiConfig");
  const int64_t dim = config_.inner_dim();
  patch_embed = register_module(
      "patch_embed", MochiPatchEmbed(config_.in_channels, dim, config_.patch_size, options));
  time_embed = register_module("time_embed", MochiTimeCaptionEmbedding(config_, options));
  pos_frequencies = register_parameter(
      "pos_frequencies",
      at::empty({3, config_.num_attention_heads, config_.attention_head_dim / 2}, options), false);
  auto blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    transformer_blocks.push_back(
        MochiTransformerBlock(config_, /*context_pre_only=*/i == config_.num_layers - 1, options));
    blocks->push_back(transformer_blocks.back().ptr());
  }
  norm_out = register_module("norm_out", AdaLayerNormContinuous(dim, dim, options, kNormEps));
  proj_out = register_module(
      "proj_out",
      Linear(dim, config_.patch_size * config_.patch_size * config_.out_channels, true, options));
}

BlockState MochiTransformer3DModelImpl::prepare(const TransformerInputs& in) {
  const auto& c = config_;
  const auto opts = proj_out->weight.options();
  const auto dtype = opts.dtype().toScalarType();
  const auto device = opts.device();
  // ---- validate the inputs, naming the tensor at fault ----
  const auto& latents = in.latents;
  if (!latents.defined() || latents.dim() != 5 || latents.size(1) != c.in_channels) {
    throw InputError("latents: expected [B, " + std::to_string(c.in_channels) + ", F, H, W], got " +
                     (latents.defined() ? c10::str(latents.sizes()) : "none"));
  }
  const int64_t batch = latents.size(0), p = c.patch_size;
  if (latents.size(3) % p || latents.size(4) % p) {
    throw InputError("latents: H, W of " + c10::str(latents.sizes()) +
                     " not divisible by the patch size " + std::to_string(p));
  }
  const auto& text = in.prompt.embeds;
  if (!text.defined() || text.dim() != 3 || text.size(0) != batch ||
      text.size(2) != c.text_embed_dim) {
    throw InputError("prompt.embeds: expected [" + std::to_string(batch) + ", L, " +
                     std::to_string(c.text_embed_dim) + "], got " +
                     (text.defined() ? c10::str(text.sizes()) : "none"));
  }
  const int64_t text_len = text.size(1);
  at::Tensor text_mask = in.prompt.attention_mask;
  if (!text_mask.defined()) {
    text_mask = at::ones({batch, text_len}, at::TensorOptions().dtype(at::kBool));
  } else if (text_mask.dim() != 2 || text_mask.size(0) != batch || text_mask.size(1) != text_len) {
    throw InputError("prompt.attention_mask: expected [" + std::to_string(batch) + ", " +
                     std::to_string(text_len) + "], got " + c10::str(text_mask.sizes()));
  }
  const auto& t = in.timestep;
  if (!t.defined() || t.dim() > 1 || (t.dim() == 1 && t.size(0) != batch && t.size(0) != 1)) {
    throw InputError("timestep: expected [" + std::to_string(batch) + "], got " +
                     (t.defined() ? c10::str(t.sizes()) : "none"));
  }
  auto timestep = t.reshape({-1}).expand({batch}).to(device);  // [B]
  auto x_in = latents.to(device, dtype);
  auto text_in = text.to(device, dtype);
  text_mask = text_mask.to(device, at::kBool);

  auto state = std::make_shared<MochiState>();
  state->grid = {latents.size(2), latents.size(3) / p, latents.size(4) / p};
  std::tie(state->rope_cos, state->rope_sin) =
      mochi_rope(pos_frequencies, state->grid[0], state->grid[1], state->grid[2]);

  BlockState s;
  std::tie(s.temb, s.context) =
      time_embed(timestep, text_in, text_mask, dtype);  // [B, D], [B, L, Dc]
  s.hidden = patch_embed(x_in);                         // [B, N, D]
  const int64_t n = s.hidden.size(1);
  state->num_image_tokens = n;

  Communicator* group = current_sequence_group();
  if (!group) {
    state->key_mask = concat_key_masks({}, n, text_mask, text_len, batch, device);  // [B, N + L]
    state->text_padding = text_mask.logical_not().unsqueeze(-1);                    // [B, L, 1]
    s.extra = state;
    return s;
  }
  // Context parallelism, as HunyuanVideo: rank r of P keeps rows [r, r + 1) * ceil(S / P) of the
  // image tokens, their RoPE rows and the text tokens (pooler and caption projection have seen
  // the whole prompt); padding rows and padded text are never attended to, and the text rows
  // that diffusers drops come out of the attention as zeros on every rank.
  const int world = group->size(), rank = group->rank();
  // [B, N/P, D] and the RoPE rows [N/P, H, Dh/2]
  const auto image_keys = state->shard_image(s, state->rope_cos, state->rope_sin, *group);
  s.context = shard_sequence(s.context, 1, rank, world).local;  // [B, L/P, Dc]
  const int64_t n_local = s.hidden.size(1), l_local = s.context.size(1);
  auto text_keys = shard_key_mask(text_mask, batch, text_len, rank, world, device);  // [B, L/P]
  state->key_mask = concat_key_masks(image_keys, n_local, text_keys, l_local, batch,
                                     device);                   // [B, N/P + L/P]
  state->text_padding = text_keys.logical_not().unsqueeze(-1);  // [B, L/P, 1]
  s.extra = state;
  return s;
}

void MochiTransformer3DModelImpl::run_block(int64_t i, BlockState& s) {
  TORCH_CHECK(i >= 0 && i < num_blocks(), "run_block: block ", i, " of ", num_blocks());
  auto [x, ctx] = transformer_blocks[i](s.hidden, s.context, s.temb, mochi_state(s));
  s.hidden = x;
  s.context = ctx;
}

at::Tensor MochiTransformer3DModelImpl::finish(BlockState& s) {
  const auto& st = mochi_state(s);
  auto x = proj_out(norm_out(s.hidden, s.temb));  // [B, N, p*p*C], features (ph, pw, C)
  x = st.gather_image(x);
  const int64_t batch = x.size(0), p = config_.patch_size;
  const auto [f, h, w] = st.grid;
  return x.reshape({batch, f, h, w, p, p, config_.out_channels})
      .permute({0, 6, 1, 2, 4, 3, 5})
      .reshape({batch, config_.out_channels, f, h * p, w * p});  // [B, C, F, H, W]
}

BlockState MochiTransformer3DModelImpl::fork_state(const BlockState& s) const {
  return fork_with_state<MochiState>(s, "Mochi");
}

std::vector<at::Tensor> MochiTransformer3DModelImpl::state_tensors(const BlockState& s) const {
  const auto& st = extra_state<MochiState>(s, "Mochi");
  return {s.hidden, s.context, s.temb, st.rope_cos, st.rope_sin, st.key_mask, st.text_padding};
}

at::Tensor MochiTransformer3DModelImpl::teacache_signal(const BlockState& s) {
  // Context-parallel padding rows are left out: the signal's means are over real tokens only.
  return transformer_blocks[0]
      ->norm1(real_rows(s.hidden, s.hidden_valid_rows), s.temb)
      .x;  // [B, N, D]
}

}  // namespace ditbench
