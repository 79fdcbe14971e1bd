#include "models/flux/transformer.h"

#include <algorithm>
#include <string>
#include <tuple>

#include "models/common/error.h"
#include "models/common/joint_sequence.h"
#include "models/common/register_modules.h"
#include "models/common/tensor_io.h"
#include "optimizations/attention/attention.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/sequence_shard.h"

namespace ditbench {
namespace {

constexpr double kNormEps = 1e-6;

// [B, S, D] -> [B, S, H, Dh]
at::Tensor split_heads(const at::Tensor& x, int64_t heads) { return x.unflatten(2, {heads, -1}); }

// diffusers clips the streams to the fp16 range after each block when running in fp16.
at::Tensor clip_fp16(const at::Tensor& x) {
  return x.scalar_type() == at::kHalf ? x.clip(-65504, 65504) : x;
}

// Position ids [S, 3] (or the deprecated [1, S, 3]) of `name`; `rows` > 0 requires that many.
at::Tensor position_ids(const at::Tensor& ids, int64_t rows, const char* name) {
  at::Tensor t = ids.defined() && ids.dim() == 3 && ids.size(0) == 1 ? ids[0] : ids;
  if (!t.defined() || t.dim() != 2 || t.size(1) != 3 || (rows > 0 && t.size(0) != rows)) {
    throw InputError(std::string(name) + ": expected [" + (rows > 0 ? std::to_string(rows) : "S") +
                     ", 3], got " + describe_shape(ids));
  }
  return t;
}

}  // namespace

std::pair<at::Tensor, at::Tensor> flux_rope(const at::Tensor& ids,
                                            const std::vector<int64_t>& axes_dim, double theta) {
  auto pos = ids.to(at::kFloat);  // [S, 3]
  std::vector<at::Tensor> cos_parts, sin_parts;
  for (size_t axis = 0; axis < axes_dim.size(); ++axis) {
    auto [c, s] =
        rope_1d(axes_dim[axis], pos.select(1, static_cast<int64_t>(axis)), theta, at::kDouble);
    cos_parts.push_back(c);
    sin_parts.push_back(s);
  }
  return {at::cat(cos_parts, 1), at::cat(sin_parts, 1)};  // each [S, head_dim] f32
}

// ---- attention ----

FluxAttentionImpl::FluxAttentionImpl(int64_t heads, int64_t head_dim, bool dual_stream,
                                     const at::TensorOptions& options)
    : heads_(heads) {
  const int64_t dim = heads * head_dim;
  register_modules<TorchRMSNorm>(*this, {{"norm_q", &norm_q}, {"norm_k", &norm_k}}, head_dim,
                                 kNormEps, options);
  register_modules<Linear>(*this, {{"to_q", &to_q}, {"to_k", &to_k}, {"to_v", &to_v}}, dim, dim,
                           true, options);
  if (dual_stream) {
    to_out = register_module("to_out", OutProjection(dim, dim, true, options));
    register_modules<TorchRMSNorm>(
        *this, {{"norm_added_q", &norm_added_q}, {"norm_added_k", &norm_added_k}}, head_dim,
        kNormEps, options);
    register_modules<Linear>(*this,
                             {{"add_q_proj", &add_q_proj},
                              {"add_k_proj", &add_k_proj},
                              {"add_v_proj", &add_v_proj},
                              {"to_add_out", &to_add_out}},
                             dim, dim, true, options);
  }
}

at::Tensor FluxAttentionImpl::heads(const at::Tensor& x, TorchRMSNorm& norm) const {
  return norm(split_heads(x, heads_));
}

at::Tensor FluxAttentionImpl::attend_joint(const at::Tensor& q, const at::Tensor& k,
                                           const at::Tensor& v, const at::Tensor& key_mask,
                                           const at::Tensor& cos, const at::Tensor& sin) const {
  // RoPE on every row of the joint sequence, then attention in the layout [B, H, S, Dh].
  auto qr = apply_rotary_emb(q, cos, sin, 1);
  auto kr = apply_rotary_emb(k, cos, sin, 1);
  auto out = attend(qr.transpose(1, 2), kr.transpose(1, 2), v.transpose(1, 2), key_mask);
  return out.transpose(1, 2).flatten(2, 3).to(qr.scalar_type());  // [B, S, D]
}

std::pair<at::Tensor, at::Tensor> FluxAttentionImpl::forward_dual(const at::Tensor& x,
                                                                  const at::Tensor& c,
                                                                  const at::Tensor& key_mask,
                                                                  const at::Tensor& cos,
                                                                  const at::Tensor& sin) {
  const int64_t l = c.size(1), n = x.size(1);
  // Image stream [B, N, H, Dh] and text stream [B, L, H, Dh], each with its own norms.
  auto q = heads(to_q(x), norm_q), k = heads(to_k(x), norm_k);
  auto v = split_heads(to_v(x), heads_);
  auto qc = heads(add_q_proj(c), norm_added_q), kc = heads(add_k_proj(c), norm_added_k);
  auto vc = split_heads(add_v_proj(c), heads_);
  // Joint sequence [text, image]: [B, L + N, D]
  auto out = attend_joint(at::cat({qc, q}, 1), at::cat({kc, k}, 1), at::cat({vc, v}, 1), key_mask,
                          cos, sin);
  return {to_out(out.narrow(1, l, n)), to_add_out(out.narrow(1, 0, l))};
}

at::Tensor FluxAttentionImpl::forward_single(const at::Tensor& joint, const at::Tensor& key_mask,
                                             const at::Tensor& cos, const at::Tensor& sin) {
  auto q = heads(to_q(joint), norm_q), k = heads(to_k(joint), norm_k);  // [B, S, H, Dh]
  auto v = split_heads(to_v(joint), heads_);
  return attend_joint(q, k, v, key_mask, cos, sin);  // [B, S, D]
}

// ---- blocks ----

FluxTransformerBlockImpl::FluxTransformerBlockImpl(int64_t heads, int64_t head_dim,
                                                   double mlp_ratio,
                                                   const at::TensorOptions& options) {
  const int64_t dim = heads * head_dim;
  const auto mlp = static_cast<int64_t>(static_cast<double>(dim) * mlp_ratio);
  norm1 = register_module("norm1", AdaLayerNormZero(dim, options, kNormEps));
  norm1_context = register_module("norm1_context", AdaLayerNormZero(dim, options, kNormEps));
  attn = register_module("attn", FluxAttention(heads, head_dim, true, options));
  ff = register_module("ff", FeedForward(dim, mlp, FeedForwardActivation::kGeluTanh, options));
  ff_context = register_module("ff_context",
                               FeedForward(dim, mlp, FeedForwardActivation::kGeluTanh, options));
}

std::pair<at::Tensor, at::Tensor> FluxTransformerBlockImpl::forward(
    const at::Tensor& x, const at::Tensor& c, const at::Tensor& temb, const at::Tensor& key_mask,
    const at::Tensor& cos, const at::Tensor& sin) {
  auto nx = norm1(x, temb);          // x̂ [B, N, D] + gates/shift/scale [B, D]
  auto nc = norm1_context(c, temb);  // ĉ [B, L, D]
  auto [ax, ac] = attn->forward_dual(nx.x, nc.x, key_mask, cos, sin);
  // Gated residuals, then the gated MLP of the re-normalised, modulated streams.
  auto x1 = x + nx.gate_msa.unsqueeze(1) * ax;
  auto mx = modulate(layer_norm_plain(x1, kNormEps), nx.shift_mlp, nx.scale_mlp);
  auto x2 = x1 + nx.gate_mlp.unsqueeze(1) * ff(mx);
  auto c1 = c + nc.gate_msa.unsqueeze(1) * ac;
  auto mc = modulate(layer_norm_plain(c1, kNormEps), nc.shift_mlp, nc.scale_mlp);
  auto c2 = c1 + nc.gate_mlp.unsqueeze(1) * ff_context(mc);
  return {clip_fp16(c2), x2};
}

FluxSingleTransformerBlockImpl::FluxSingleTransformerBlockImpl(int64_t heads, int64_t head_dim,
                                                               double mlp_ratio,
                                                               const at::TensorOptions& options) {
  const int64_t dim = heads * head_dim;
  const auto mlp = static_cast<int64_t>(static_cast<double>(dim) * mlp_ratio);
  norm = register_module("norm", AdaLayerNormZeroSingle(dim, options, kNormEps));
  proj_mlp = register_module("proj_mlp", Linear(dim, mlp, true, options));
  proj_out = register_module("proj_out", Linear(dim + mlp, dim, true, options));
  attn = register_module("attn", FluxAttention(heads, head_dim, false, options));
}

at::Tensor FluxSingleTransformerBlockImpl::forward(const at::Tensor& joint, const at::Tensor& temb,
                                                   const at::Tensor& key_mask,
                                                   const at::Tensor& cos, const at::Tensor& sin) {
  auto normed = norm(joint, temb);                                     // x̂ [B, S, D], gate [B, D]
  auto mlp = at::gelu(proj_mlp(normed.x), "tanh");                     // [B, S, M]
  auto attn_out = attn->forward_single(normed.x, key_mask, cos, sin);  // [B, S, D]
  auto out = proj_out(at::cat({attn_out, mlp}, 2));                    // [B, S, D + M] -> [B, S, D]
  return clip_fp16(joint + normed.gate.unsqueeze(1) * out);
}

// ---- the model ----

FluxTransformer2DModelImpl::FluxTransformer2DModelImpl(const FluxConfig& config,
                                                       const at::TensorOptions& options)
    : config_(config) {
  config_.validate("FluxConfig");
  const int64_t dim = config_.inner_dim();
  const int64_t heads = config_.num_attention_heads, head_dim = config_.attention_head_dim;
  time_text_embed = register_module(
      "time_text_embed", CombinedTimestepTextProjEmbeddings(dim, config_.pooled_projection_dim,
                                                            config_.guidance_embeds, options));
  context_embedder =
      register_module("context_embedder", Linear(config_.joint_attention_dim, dim, true, options));
  x_embedder = register_module("x_embedder", Linear(config_.in_channels, dim, true, options));
  transformer_blocks = register_module_list<FluxTransformerBlock>(
      *this, "transformer_blocks", config_.num_layers,
      [&] { return FluxTransformerBlock(heads, head_dim, config_.mlp_ratio, options); });
  single_transformer_blocks = register_module_list<FluxSingleTransformerBlock>(
      *this, "single_transformer_blocks", config_.num_single_layers,
      [&] { return FluxSingleTransformerBlock(heads, head_dim, config_.mlp_ratio, options); });
  norm_out = register_module("norm_out", AdaLayerNormContinuous(dim, dim, options, kNormEps));
  proj_out = register_module(
      "proj_out",
      Linear(dim, config_.patch_size * config_.patch_size * config_.out_channels, true, options));
}

BlockState FluxTransformer2DModelImpl::prepare(const TransformerInputs& in) {
  const auto& c = config_;
  const auto opts = proj_out->weight.options();
  const auto dtype = opts.dtype().toScalarType();
  const auto device = opts.device();
  // ---- validate the inputs, naming the tensor at fault ----
  const auto& latents = in.latents;
  if (!latents.defined() || latents.dim() != 3 || latents.size(2) != c.in_channels) {
    throw InputError("latents: expected packed [B, N, " + std::to_string(c.in_channels) +
                     "], got " + describe_shape(latents));
  }
  const int64_t batch = latents.size(0), n = latents.size(1);
  const auto& text = in.prompt.embeds;
  if (!text.defined() || text.dim() != 3 || text.size(0) != batch ||
      text.size(2) != c.joint_attention_dim) {
    throw InputError("prompt.embeds: expected [" + std::to_string(batch) + ", L, " +
                     std::to_string(c.joint_attention_dim) + "], got " + describe_shape(text));
  }
  const int64_t text_len = text.size(1);
  const auto& pooled = in.prompt.pooled;
  if (!pooled.defined() || pooled.dim() != 2 || pooled.size(0) != batch ||
      pooled.size(1) != c.pooled_projection_dim) {
    throw InputError("prompt.pooled: expected [" + std::to_string(batch) + ", " +
                     std::to_string(c.pooled_projection_dim) + "], got " + describe_shape(pooled));
  }
  auto per_batch = [&](const at::Tensor& t, const char* name) {
    if (!t.defined() || t.dim() > 1 || (t.dim() == 1 && t.size(0) != batch && t.size(0) != 1)) {
      throw InputError(std::string(name) + ": expected [" + std::to_string(batch) + "], got " +
                       describe_shape(t));
    }
    return t.reshape({-1}).expand({batch}).to(device);  // [B]
  };
  const auto image_ids = position_ids(in.image_ids, n, "image_ids");
  const auto text_ids = in.text_ids.defined() ? position_ids(in.text_ids, text_len, "text_ids")
                                              : at::zeros({text_len, 3}, image_ids.options());

  // timestep.to(dtype) * 1000 (and the same for guidance): rounded in the model dtype.
  auto timestep = per_batch(in.timestep, "timestep").to(dtype) * 1000;
  at::Tensor guidance;
  if (c.guidance_embeds) guidance = per_batch(in.guidance, "guidance").to(dtype) * 1000;

  auto state = std::make_shared<FluxState>();
  BlockState s;
  s.hidden = x_embedder(latents.to(device, dtype));                        // [B, N, D]
  s.temb = time_text_embed(timestep, pooled.to(device, dtype), guidance);  // [B, D]
  s.context = context_embedder(text.to(device, dtype));                    // [B, L, D]
  state->num_image_tokens = n;
  // RoPE of the joint ids [text, image]: [L + N, head_dim] f32.
  auto [text_cos, text_sin] = flux_rope(text_ids.to(device), c.axes_dims_rope, c.rope_theta);
  auto [image_cos, image_sin] = flux_rope(image_ids.to(device), c.axes_dims_rope, c.rope_theta);

  Communicator* group = current_sequence_group();
  if (group) {
    // Context parallelism: rank r of P keeps rows [r, r + 1) * ceil(S / P) of the text tokens and
    // of the image tokens (and of their RoPE rows), so its joint sequence is [text shard, image
    // shard]. Attention does not depend on the order of its keys; padding rows (zeros at the end
    // of the last shards) are masked keys. No FLUX text is ever masked otherwise.
    const int world = group->size(), rank = group->rank();
    const auto image_keys = state->shard_image(s, image_cos, image_sin, *group);  // [B, N/P, D]
    auto shard = [&](const at::Tensor& t, int64_t dim) {
      return shard_sequence(t, dim, rank, world).local;
    };
    s.context = shard(s.context, 1);  // [B, L/P, D]
    text_cos = shard(text_cos, 0), text_sin = shard(text_sin, 0);
    const int64_t n_local = s.hidden.size(1), l_local = s.context.size(1);
    state->key_mask =
        concat_key_masks(shard_key_mask({}, batch, text_len, rank, world, device), l_local,
                         image_keys, n_local, batch,
                         device);  // [B, L/P + N/P] bool, or undefined when nothing is padded
  }
  state->rope_cos = at::cat({text_cos, image_cos}, 0);  // [L + N, head_dim]
  state->rope_sin = at::cat({text_sin, image_sin}, 0);
  s.extra = state;
  return s;
}

void FluxTransformer2DModelImpl::run_block(int64_t i, BlockState& s) {
  TORCH_CHECK(i >= 0 && i < num_blocks(), "run_block: block ", i, " of ", num_blocks());
  auto& st = flux_state(s);
  if (i < config_.num_layers) {
    auto [ctx, x] =
        transformer_blocks[i](s.hidden, s.context, s.temb, st.key_mask, st.rope_cos, st.rope_sin);
    s.hidden = x;
    s.context = ctx;
    st.joint = at::Tensor();
    return;
  }
  const int64_t l = s.context.size(1), n = s.hidden.size(1);
  at::Tensor joint = joint_of(st.joint, s.context, s.hidden);  // [B, L + N, D]
  st.joint = single_transformer_blocks[i - config_.num_layers](joint, s.temb, st.key_mask,
                                                               st.rope_cos, st.rope_sin);
  s.context = st.joint.narrow(1, 0, l);  // [B, L, D]
  s.hidden = st.joint.narrow(1, l, n);   // [B, N, D]
}

at::Tensor FluxTransformer2DModelImpl::finish(BlockState& s) {
  const auto& st = flux_state(s);
  auto x = proj_out(norm_out(s.hidden, s.temb));  // [B, N, out_channels]
  // Under context parallelism: the local rows of every rank, in rank order, without the padding.
  x = st.gather_image(x);
  return x;
}

BlockState FluxTransformer2DModelImpl::fork_state(const BlockState& s) const {
  return fork_with_state<FluxState>(s, "FLUX");
}

std::vector<at::Tensor> FluxTransformer2DModelImpl::state_tensors(const BlockState& s) const {
  const auto& st = extra_state<FluxState>(s, "FLUX");
  return {s.hidden, s.context, s.temb, st.rope_cos, st.rope_sin, st.key_mask, st.joint};
}

at::Tensor FluxTransformer2DModelImpl::teacache_signal(const BlockState& s) {
  if (transformer_blocks.empty()) {
    throw Unsupported("TeaCache signal needs a dual-stream block 0 (num_layers is 0)");
  }
  // Context-parallel padding rows are left out: the signal's means are over real tokens only.
  return transformer_blocks[0]->norm1(real_rows(s.hidden, s.hidden_valid_rows), s.temb).x;
}

}  // namespace ditbench
