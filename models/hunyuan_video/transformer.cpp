#include "models/hunyuan_video/transformer.h"

#include <algorithm>
#include <functional>
#include <string>
#include <tuple>

#include "models/common/error.h"
#include "models/common/image_tokens.h"
#include "models/common/joint_sequence.h"
#include "optimizations/attention/attention.h"
#include "optimizations/kernels/fused.h"
#include "optimizations/kernels/fused_fp8.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/sequence_shard.h"

namespace ditbench {
namespace {

constexpr double kNormEps = 1e-6;

// A ModuleList-like holder: children registered under "0", "1", ... so keys read "name.i.*".
template <typename Holder>
std::vector<Holder> register_list(torch::nn::Module& parent, const std::string& name, int64_t count,
                                  const std::function<Holder()>& make) {
  auto list = parent.register_module(name, torch::nn::ModuleList());
  std::vector<Holder> items;
  for (int64_t i = 0; i < count; ++i) {
    items.push_back(make());
    list->push_back(items.back().ptr());
  }
  return items;
}

// [B, S, D] -> [B, S, H, Dh]
at::Tensor split_heads(const at::Tensor& x, int64_t heads) { return x.unflatten(2, {heads, -1}); }

// ---- memory-bound chains: the fused kernels (optimizations/kernels/fused.h) serve bfloat16 CUDA
// activations, every other run takes the ATen chain written beside each call, which defines the
// numerics the kernels reproduce ----

// modulate(LayerNorm(x)): x [B, S, D], shift/scale [B, D] -> [B, S, D]
at::Tensor norm_modulate(const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale) {
  auto out = try_layer_norm_modulate(x, shift, scale, kNormEps);
  return out.defined() ? out : modulate(layer_norm_plain(x, kNormEps), shift, scale);
}

// QK RMSNorm, then RoPE on the first cos.size(0) rows of the sequence (none when cos is
// undefined). q, k: fresh projections [B, S, H, Dh], replaced (or written in place).
void qk_norm_rope(at::Tensor& q, at::Tensor& k, RMSNorm& norm_q, RMSNorm& norm_k,
                  const at::Tensor& cos, const at::Tensor& sin) {
  if (try_qk_rms_norm_rope_(q, k, norm_q->weight, norm_k->weight, cos, sin, kNormEps)) return;
  auto rope = [&](const at::Tensor& t) {
    if (!cos.defined()) return t;
    const int64_t rows = cos.size(0);
    if (rows == t.size(1)) return apply_rotary_emb(t, cos, sin, 1);
    return at::cat(
        {apply_rotary_emb(t.narrow(1, 0, rows), cos, sin, 1), t.narrow(1, rows, t.size(1) - rows)},
        1);
  };
  q = rope(norm_q(q));
  k = rope(norm_k(k));
}

// qk_norm_rope writing its result into q and k, views of a packed projection buffer.
void qk_norm_rope_into(const at::Tensor& q, const at::Tensor& k, RMSNorm& norm_q, RMSNorm& norm_k,
                       const at::Tensor& cos, const at::Tensor& sin) {
  auto q_out = q, k_out = k;
  qk_norm_rope(q_out, k_out, norm_q, norm_k, cos, sin);
  if (!q_out.is_same(q)) q.copy_(q_out);  // the kernel did not serve: the chain made new tensors
  if (!k_out.is_same(k)) k.copy_(k_out);
}

// norm_modulate for the Linears in `consumers`: with any of them on fp8_dynamic, the result's
// e4m3 rows too, quantized once for all of them (in the LayerNorm kernel itself where it serves,
// which leaves out the bfloat16 result when every consumer reads e4m3 rows).
QuantizedActivation norm_modulate_for(const at::Tensor& x, const at::Tensor& shift,
                                      const at::Tensor& scale,
                                      std::initializer_list<const LinearImpl*> consumers) {
  if (any_takes_fp8(consumers)) {
    bool all_fp8 = true;
    for (const auto* linear : consumers) all_fp8 = all_fp8 && linear->takes_fp8();
    auto fused = try_layer_norm_modulate_fp8(x, shift, scale, kNormEps, /*keep_full=*/!all_fp8);
    if (fused.fp8.values.defined()) return fused;
  }
  return quantize_for(norm_modulate(x, shift, scale), consumers);
}

// AdaLayerNormZero(Single): the modulation chunks in the order AdaLayerNormZero(Single)Impl::
// forward splits them (shift, scale first), and the LayerNorm + modulate of x for `consumers`.
struct AdaNormed {
  std::vector<at::Tensor> chunks;  // chunks x [B, D]
  QuantizedActivation x;           // x̂ [B, S, D]
};
template <typename Norm>
AdaNormed ada_norm_for(Norm& norm, const at::Tensor& x, const at::Tensor& temb, int64_t chunks,
                       std::initializer_list<const LinearImpl*> consumers) {
  auto parts = norm->linear(at::silu(temb)).chunk(chunks, 1);
  auto normed = norm_modulate_for(x, parts[0], parts[1], consumers);
  return {std::move(parts), std::move(normed)};
}

std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace

HunyuanVideoState& hunyuan_video_state(BlockState& s) {
  TORCH_CHECK(s.extra, "BlockState has no HunyuanVideo state; call prepare() first");
  return *static_cast<HunyuanVideoState*>(s.extra.get());
}
const HunyuanVideoState& hunyuan_video_state(const BlockState& s) {
  TORCH_CHECK(s.extra, "BlockState has no HunyuanVideo state; call prepare() first");
  return *static_cast<const HunyuanVideoState*>(s.extra.get());
}

// ---- attention ----

HunyuanVideoAttentionImpl::HunyuanVideoAttentionImpl(int64_t heads, int64_t head_dim,
                                                     bool dual_stream,
                                                     const at::TensorOptions& options)
    : heads_(heads) {
  const int64_t dim = heads * head_dim;
  // Registration order follows diffusers' Attention.__init__.
  norm_q = register_module("norm_q", RMSNorm(head_dim, kNormEps, true, options));
  norm_k = register_module("norm_k", RMSNorm(head_dim, kNormEps, true, options));
  to_q = register_module("to_q", Linear(dim, dim, true, options));
  to_k = register_module("to_k", Linear(dim, dim, true, options));
  to_v = register_module("to_v", Linear(dim, dim, true, options));
  if (dual_stream) {
    add_k_proj = register_module("add_k_proj", Linear(dim, dim, true, options));
    add_v_proj = register_module("add_v_proj", Linear(dim, dim, true, options));
    add_q_proj = register_module("add_q_proj", Linear(dim, dim, true, options));
    to_out = register_module("to_out", OutProjection(dim, dim, true, options));
    to_add_out = register_module("to_add_out", Linear(dim, dim, true, options));
    norm_added_q = register_module("norm_added_q", RMSNorm(head_dim, kNormEps, true, options));
    norm_added_k = register_module("norm_added_k", RMSNorm(head_dim, kNormEps, true, options));
    added_qkv_ = LinearGroup({add_q_proj, add_k_proj, add_v_proj});
  }
  qkv_ = LinearGroup({to_q, to_k, to_v});
}

at::Tensor HunyuanVideoAttentionImpl::attend_dual(const QuantizedActivation& xa,
                                                  const QuantizedActivation& ca,
                                                  const at::Tensor& key_mask, const at::Tensor& cos,
                                                  const at::Tensor& sin) {
  const int64_t n = xa.shape.at(1), l = ca.shape.at(1);
  at::Tensor q, k, v;  // joint sequence [image, text]: [B, N + L, H, Dh]
  if (qkv_.serves(xa) && added_qkv_.serves(ca)) {
    // Both streams' q | k | v projections (bf16, or FP8 from the e4m3 rows) written straight
    // into one joint buffer, image rows first: no per-projection outputs and no [image, text]
    // concatenation of q, k and v.
    const int64_t batch = xa.shape.at(0);
    const auto& device_of = xa.full.defined() ? xa.full : xa.fp8.values;
    auto packed = at::empty({batch, n + l, qkv_.out_features()},
                            device_of.options().dtype(xa.dtype));  // [B, N + L, 3D]
    for (int64_t b = 0; b < batch; ++b) {
      qkv_.forward_into(sample_of(xa, b), packed[b].narrow(0, 0, n));
      added_qkv_.forward_into(sample_of(ca, b), packed[b].narrow(0, n, l));
    }
    // Column ranges of the buffer: [B, N + L, H, Dh] views with token stride 3D.
    q = split_heads(qkv_.member_output(packed, 0), heads_);
    k = split_heads(qkv_.member_output(packed, 1), heads_);
    v = split_heads(qkv_.member_output(packed, 2), heads_);
    qk_norm_rope_into(q.narrow(1, 0, n), k.narrow(1, 0, n), norm_q, norm_k, cos, sin);
    qk_norm_rope_into(q.narrow(1, n, l), k.narrow(1, n, l), norm_added_q, norm_added_k, {}, {});
  } else {
    // Image stream: [B, N, H, Dh], QK norm, then RoPE.
    auto qx = split_heads(to_q->forward_quantized(xa), heads_);
    auto kx = split_heads(to_k->forward_quantized(xa), heads_);
    qk_norm_rope(qx, kx, norm_q, norm_k, cos, sin);
    auto vx = split_heads(to_v->forward_quantized(xa), heads_);
    // Text stream: [B, L, H, Dh], own projections and norms, no RoPE.
    auto qc = split_heads(add_q_proj->forward_quantized(ca), heads_);
    auto kc = split_heads(add_k_proj->forward_quantized(ca), heads_);
    qk_norm_rope(qc, kc, norm_added_q, norm_added_k, {}, {});
    auto vc = split_heads(add_v_proj->forward_quantized(ca), heads_);
    q = at::cat({qx, qc}, 1);
    k = at::cat({kx, kc}, 1);
    v = at::cat({vx, vc}, 1);
  }
  // Attention layout [B, H, N + L, Dh] (views).
  auto out = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), key_mask);
  return out.transpose(1, 2).flatten(2, 3).to(q.scalar_type());  // [B, N + L, D]
}

at::Tensor HunyuanVideoAttentionImpl::forward_single(const QuantizedActivation& joint_in,
                                                     int64_t num_image_tokens,
                                                     const at::Tensor& key_mask,
                                                     const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(cos.size(0) == num_image_tokens, "forward_single: RoPE table rows ", cos.size(0),
              " != image tokens ", num_image_tokens);
  // [B, S, H, Dh]; RoPE on the first N (image) rows only.
  at::Tensor q, k, v;
  if (qkv_.serves(joint_in)) {
    // One GEMM for q | k | v ([B, S, 3D]; bf16, or FP8 from the e4m3 rows); q, k, v are its
    // column ranges (token stride 3D), and QK norm + RoPE run in place on them. proj_mlp, which
    // reads the same input, stays a GEMM of its own: its GELU epilogue would apply to q, k and v
    // too.
    auto packed = qkv_.forward(joint_in);
    q = split_heads(qkv_.member_output(packed, 0), heads_);
    k = split_heads(qkv_.member_output(packed, 1), heads_);
    v = split_heads(qkv_.member_output(packed, 2), heads_);
  } else {
    q = split_heads(to_q->forward_quantized(joint_in), heads_);
    k = split_heads(to_k->forward_quantized(joint_in), heads_);
    v = split_heads(to_v->forward_quantized(joint_in), heads_);
  }
  qk_norm_rope(q, k, norm_q, norm_k, cos, sin);
  auto out = attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), key_mask);
  return out.transpose(1, 2).flatten(2, 3).to(q.scalar_type());  // [B, S, D]
}

RefinerAttentionImpl::RefinerAttentionImpl(int64_t heads, int64_t head_dim,
                                           const at::TensorOptions& options)
    : heads_(heads) {
  const int64_t dim = heads * head_dim;
  to_q = register_module("to_q", Linear(dim, dim, true, options));
  to_k = register_module("to_k", Linear(dim, dim, true, options));
  to_v = register_module("to_v", Linear(dim, dim, true, options));
  to_out = register_module("to_out", OutProjection(dim, dim, true, options));
}

at::Tensor RefinerAttentionImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  // [B, L, D] -> [B, H, L, Dh]
  auto q = split_heads(to_q(x), heads_).transpose(1, 2);
  auto k = split_heads(to_k(x), heads_).transpose(1, 2);
  auto v = split_heads(to_v(x), heads_).transpose(1, 2);
  auto out = attend_with_mask(q, k, v, mask);                   // [B, H, L, Dh]
  out = out.transpose(1, 2).flatten(2, 3).to(q.scalar_type());  // [B, L, D]
  return to_out(out);
}

// ---- token refiner ----

HunyuanVideoTokenRefinerBlockImpl::HunyuanVideoTokenRefinerBlockImpl(
    int64_t heads, int64_t head_dim, double mlp_ratio, const at::TensorOptions& options) {
  const int64_t dim = heads * head_dim;
  norm1 = register_module("norm1", LayerNorm(dim, kNormEps, options));
  attn = register_module("attn", RefinerAttention(heads, head_dim, options));
  norm2 = register_module("norm2", LayerNorm(dim, kNormEps, options));
  ff = register_module("ff", FeedForward(dim, static_cast<int64_t>(dim * mlp_ratio),
                                         FeedForwardActivation::kLinearSiLU, options));
  auto norm_out = register_module("norm_out", std::make_shared<torch::nn::Module>());
  norm_out_linear = norm_out->register_module("linear", Linear(dim, 2 * dim, true, options));
}

at::Tensor HunyuanVideoTokenRefinerBlockImpl::forward(const at::Tensor& x, const at::Tensor& temb,
                                                      const at::Tensor& mask) {
  auto attn_out = attn(norm1(x), mask);                      // [B, L, D]
  auto gates = norm_out_linear(at::silu(temb)).chunk(2, 1);  // gate_msa, gate_mlp: [B, D]
  auto h = x + attn_out * gates[0].unsqueeze(1);
  return h + ff(norm2(h)) * gates[1].unsqueeze(1);
}

HunyuanVideoTokenRefinerImpl::HunyuanVideoTokenRefinerImpl(const HunyuanVideoConfig& config,
                                                           const at::TensorOptions& options) {
  const int64_t dim = config.inner_dim();
  time_text_embed = register_module(
      "time_text_embed",
      CombinedTimestepTextProjEmbeddings(dim, config.text_embed_dim, false, options));
  proj_in = register_module("proj_in", Linear(config.text_embed_dim, dim, true, options));
  auto token_refiner = register_module("token_refiner", std::make_shared<torch::nn::Module>());
  refiner_blocks = register_list<HunyuanVideoTokenRefinerBlock>(
      *token_refiner, "refiner_blocks", config.num_refiner_layers, [&] {
        return HunyuanVideoTokenRefinerBlock(config.num_attention_heads, config.attention_head_dim,
                                             config.mlp_ratio, options);
      });
}

at::Tensor HunyuanVideoTokenRefinerImpl::forward(const at::Tensor& text, const at::Tensor& timestep,
                                                 const at::Tensor& text_mask) {
  // Masked mean of the raw text states, in f32 (the f32 mask promotes), back to text's dtype.
  auto mask_f = text_mask.to(at::kFloat).unsqueeze(-1);                           // [B, L, 1]
  auto pooled = ((text * mask_f).sum(1) / mask_f.sum(1)).to(text.scalar_type());  // [B, text_dim]
  auto temb = time_text_embed(timestep, pooled);                                  // [B, D]
  auto h = proj_in(text);                                                         // [B, L, D]
  // Self-attention mask [B, 1, L, L]: valid query x valid key, key 0 always visible so padded
  // query rows do not turn into NaN.
  const int64_t l = text_mask.size(1);
  auto valid = text_mask.to(at::kBool);
  auto keys = valid.view({valid.size(0), 1, 1, l}).expand({-1, 1, l, l});
  auto mask = (keys & keys.transpose(2, 3)).clone();
  mask.select(3, 0).fill_(true);
  for (auto& block : refiner_blocks) h = block(h, temb, mask);
  return h;
}

// ---- transformer blocks ----

HunyuanVideoTransformerBlockImpl::HunyuanVideoTransformerBlockImpl(
    int64_t heads, int64_t head_dim, double mlp_ratio, const at::TensorOptions& options) {
  const int64_t dim = heads * head_dim;
  const auto mlp = static_cast<int64_t>(dim * mlp_ratio);
  norm1 = register_module("norm1", AdaLayerNormZero(dim, options, kNormEps));
  norm1_context = register_module("norm1_context", AdaLayerNormZero(dim, options, kNormEps));
  attn = register_module("attn", HunyuanVideoAttention(heads, head_dim, true, options));
  ff = register_module("ff", FeedForward(dim, mlp, FeedForwardActivation::kGeluTanh, options));
  ff_context = register_module("ff_context",
                               FeedForward(dim, mlp, FeedForwardActivation::kGeluTanh, options));
}

std::pair<at::Tensor, at::Tensor> HunyuanVideoTransformerBlockImpl::forward(
    const at::Tensor& x, const at::Tensor& c, const at::Tensor& temb, const at::Tensor& key_mask,
    const at::Tensor& cos, const at::Tensor& sin) {
  // [shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp] x [B, D] and x̂ [B, N, D];
  // ĉ likewise [B, L, D]
  auto nx = ada_norm_for(norm1, x, temb, 6, {attn->to_q.get(), attn->to_k.get(), attn->to_v.get()});
  auto nc = ada_norm_for(norm1_context, c, temb, 6,
                         {attn->add_q_proj.get(), attn->add_k_proj.get(), attn->add_v_proj.get()});
  auto o = attn->attend_dual(nx.x, nc.x, key_mask, cos, sin);  // [B, N + L, D]
  const int64_t n = x.size(1), l = c.size(1);
  // x + gate_msa ⊙ to_out(o's image rows), c likewise with to_add_out: for an fp8_dynamic
  // to_out the residual is added in the GEMM's epilogue where it serves.
  auto x1 = linear_gated_residual(attn->to_out->linear, o.narrow(1, 0, n), x, nx.chunks[2]);
  auto c1 = linear_gated_residual(attn->to_add_out, o.narrow(1, n, l), c, nc.chunks[2]);
  // The MLPs' inputs, as e4m3 rows from the LayerNorm kernel itself for an fp8_dynamic net.0.
  auto mx = norm_modulate_for(x1, nx.chunks[3], nx.chunks[4], {ff->act_proj->proj.get()});
  auto mc = norm_modulate_for(c1, nc.chunks[3], nc.chunks[4], {ff_context->act_proj->proj.get()});
  return {ff->forward_gated_residual(mx, x1, nx.chunks[5]),
          ff_context->forward_gated_residual(mc, c1, nc.chunks[5])};
}

HunyuanVideoSingleTransformerBlockImpl::HunyuanVideoSingleTransformerBlockImpl(
    int64_t heads, int64_t head_dim, double mlp_ratio, const at::TensorOptions& options) {
  const int64_t dim = heads * head_dim;
  const auto mlp = static_cast<int64_t>(dim * mlp_ratio);
  attn = register_module("attn", HunyuanVideoAttention(heads, head_dim, false, options));
  norm = register_module("norm", AdaLayerNormZeroSingle(dim, options, kNormEps));
  proj_mlp = register_module("proj_mlp", Linear(dim, mlp, true, options));
  proj_out = register_module("proj_out", Linear(dim + mlp, dim, true, options));
}

at::Tensor HunyuanVideoSingleTransformerBlockImpl::forward(
    const at::Tensor& joint, int64_t num_image_tokens, const at::Tensor& temb,
    const at::Tensor& key_mask, const at::Tensor& cos, const at::Tensor& sin) {
  // [shift, scale, gate] x [B, D] and x̂ [B, S, D]
  auto normed = ada_norm_for(
      norm, joint, temb, 3, {attn->to_q.get(), attn->to_k.get(), attn->to_v.get(), proj_mlp.get()});
  const auto& gate = normed.chunks[2];
  if (proj_out->takes_fp8()) {
    // FP8 proj_out: the GELU of the MLP branch and the row quantization of [attn_out, mlp] in one
    // pass, without writing the GELU output or the concatenation; the gated residual in the
    // GEMM's epilogue where it serves.
    auto h = proj_mlp->forward_quantized(normed.x);  // [B, S, M] before the GELU
    auto attn_out = attn->forward_single(normed.x, num_image_tokens, key_mask, cos, sin);
    auto rows = try_gelu_tanh_fp8(h, attn_out);  // e4m3 rows of [attn_out, gelu(h)]
    if (rows.fp8.values.defined()) return linear_gated_residual(proj_out, rows, joint, gate);
    return gated_residual(joint, gate, linear_of_prefix_and_gelu(proj_out, attn_out, h));
  }
  // [B, S, M], GELU in the GEMM epilogue where it serves.
  auto mlp = normed.x.full.defined() ? linear_gelu_tanh(proj_mlp, normed.x.full)
                                     : at::gelu(proj_mlp->forward_quantized(normed.x), "tanh");
  auto attn_out = attn->forward_single(normed.x, num_image_tokens, key_mask, cos, sin);
  // proj_out(cat([attn_out, mlp])): [B, S, D + M] -> [B, S, D], without writing the concatenation
  // where the GEMMs serve.
  auto out = linear_of_concat(proj_out, {attn_out, mlp});
  return gated_residual(joint, gate, out);
}

// ---- the model ----

HunyuanVideoTransformer3DModelImpl::HunyuanVideoTransformer3DModelImpl(
    const HunyuanVideoConfig& config, const at::TensorOptions& options)
    : config_(config) {
  config_.validate("HunyuanVideoConfig");
  const int64_t dim = config_.inner_dim();
  const int64_t heads = config_.num_attention_heads, head_dim = config_.attention_head_dim;
  x_embedder = register_module(
      "x_embedder", PatchEmbed3d(config_.in_channels, dim,
                                 std::array<int64_t, 3>{config_.patch_size_t, config_.patch_size,
                                                        config_.patch_size},
                                 options));
  context_embedder =
      register_module("context_embedder", HunyuanVideoTokenRefiner(config_, options));
  time_text_embed = register_module(
      "time_text_embed", CombinedTimestepTextProjEmbeddings(dim, config_.pooled_projection_dim,
                                                            config_.guidance_embeds, options));
  transformer_blocks = register_list<HunyuanVideoTransformerBlock>(
      *this, "transformer_blocks", config_.num_layers,
      [&] { return HunyuanVideoTransformerBlock(heads, head_dim, config_.mlp_ratio, options); });
  single_transformer_blocks = register_list<HunyuanVideoSingleTransformerBlock>(
      *this, "single_transformer_blocks", config_.num_single_layers, [&] {
        return HunyuanVideoSingleTransformerBlock(heads, head_dim, config_.mlp_ratio, options);
      });
  norm_out = register_module("norm_out", AdaLayerNormContinuous(dim, dim, options, kNormEps));
  const int64_t patch_volume = config_.patch_size_t * config_.patch_size * config_.patch_size;
  proj_out =
      register_module("proj_out", Linear(dim, patch_volume * config_.out_channels, true, options));
}

at::TensorOptions HunyuanVideoTransformer3DModelImpl::param_options() const {
  return proj_out->weight.options();
}

BlockState HunyuanVideoTransformer3DModelImpl::prepare(const TransformerInputs& in) {
  const auto& c = config_;
  const auto opts = param_options();
  // ---- validate the inputs, naming the tensor at fault ----
  const auto& latents = in.latents;
  if (!latents.defined() || latents.dim() != 5 || latents.size(1) != c.in_channels) {
    throw InputError("latents: expected [B, " + std::to_string(c.in_channels) + ", F, H, W], got " +
                     (latents.defined() ? shape_str(latents) : "none"));
  }
  const int64_t batch = latents.size(0);
  if (latents.size(2) % c.patch_size_t || latents.size(3) % c.patch_size ||
      latents.size(4) % c.patch_size) {
    throw InputError("latents: F, H, W " + shape_str(latents) + " not divisible by the patch (" +
                     std::to_string(c.patch_size_t) + ", " + std::to_string(c.patch_size) + ", " +
                     std::to_string(c.patch_size) + ")");
  }
  const auto& text = in.prompt.embeds;
  if (!text.defined() || text.dim() != 3 || text.size(0) != batch ||
      text.size(2) != c.text_embed_dim) {
    throw InputError("prompt.embeds: expected [" + std::to_string(batch) + ", L, " +
                     std::to_string(c.text_embed_dim) + "], got " +
                     (text.defined() ? shape_str(text) : "none"));
  }
  const int64_t text_len = text.size(1);
  const auto& pooled = in.prompt.pooled;
  if (!pooled.defined() || pooled.dim() != 2 || pooled.size(0) != batch ||
      pooled.size(1) != c.pooled_projection_dim) {
    throw InputError("prompt.pooled: expected [" + std::to_string(batch) + ", " +
                     std::to_string(c.pooled_projection_dim) + "], got " +
                     (pooled.defined() ? shape_str(pooled) : "none"));
  }
  at::Tensor text_mask = in.prompt.attention_mask;
  if (!text_mask.defined()) {
    text_mask = at::ones({batch, text_len}, text.options().dtype(at::kBool));
  } else if (text_mask.dim() != 2 || text_mask.size(0) != batch || text_mask.size(1) != text_len) {
    throw InputError("prompt.attention_mask: expected [" + std::to_string(batch) + ", " +
                     std::to_string(text_len) + "], got " + shape_str(text_mask));
  }
  auto per_batch = [&](const at::Tensor& t, const char* name) {
    if (!t.defined() || t.dim() > 1 || (t.dim() == 1 && t.size(0) != batch && t.size(0) != 1)) {
      throw InputError(std::string(name) + ": expected [" + std::to_string(batch) + "], got " +
                       (t.defined() ? shape_str(t) : "none"));
    }
    return t.reshape({-1}).expand({batch});  // [B]
  };
  auto timestep = per_batch(in.timestep, "timestep");
  at::Tensor guidance;
  if (c.guidance_embeds) guidance = per_batch(in.guidance, "guidance");

  auto x_in = latents.to(opts.device(), opts.dtype().toScalarType());
  auto text_in = text.to(opts.device(), opts.dtype().toScalarType());
  auto pooled_in = pooled.to(opts.device(), opts.dtype().toScalarType());
  text_mask = text_mask.to(opts.device());
  timestep = timestep.to(opts.device());
  if (guidance.defined()) guidance = guidance.to(opts.device());

  auto state = std::make_shared<HunyuanVideoState>();
  state->grid = {latents.size(2) / c.patch_size_t, latents.size(3) / c.patch_size,
                 latents.size(4) / c.patch_size};
  // RoPE tables [N, head_dim] f32, computed from the patch grid.
  std::tie(state->rope_cos, state->rope_sin) =
      rope_3d_grid(state->grid[0], state->grid[1], state->grid[2], c.rope_axes_dim, c.rope_theta,
                   opts.device(), at::kFloat);

  BlockState s;
  s.temb = time_text_embed(timestep, pooled_in, guidance);     // [B, D]
  s.hidden = x_embedder(x_in);                                 // [B, N, D]
  s.context = context_embedder(text_in, timestep, text_mask);  // [B, L, D]

  const int64_t n = s.hidden.size(1);
  state->num_image_tokens = n;
  // Padded text tokens are only ever masked keys of the joint attention, and the output takes the
  // image rows only: when every sample has the same number of valid text tokens, the padded ones
  // are dropped here (exactly the masked result) so attention runs without a mask, where the
  // fastest kernels serve. Samples with different valid counts keep the key mask.
  int64_t joint_text_len = text_len;
  text_mask = text_mask.to(at::kBool);
  const auto valid_counts = text_mask.sum(1).cpu();  // [B], one device sync
  const int64_t valid_text = valid_counts.min().item<int64_t>();
  const bool text_all_valid = valid_text == text_len;
  if (!text_all_valid && valid_text > 0 && valid_counts.max().item<int64_t>() == valid_text) {
    s.context = s.context.index({text_mask}).view({batch, valid_text, s.context.size(2)});
    text_mask = at::ones({batch, valid_text}, text_mask.options());
    joint_text_len = valid_text;
  }
  const bool joint_unmasked = joint_text_len == valid_text;
  Communicator* group = current_sequence_group();
  if (!group) {
    // Key mask over [image, text], only where samples' valid text counts differ: the first
    // N + (number of valid text tokens) keys, as diffusers builds it (right-padded text assumed).
    if (!joint_unmasked) {
      auto valid_len = text_mask.sum(1, false, at::kInt) + n;  // [B]
      auto positions =
          at::arange(n + joint_text_len, text_mask.options().dtype(at::kLong));  // [N + L]
      state->key_mask = positions.unsqueeze(0) < valid_len.unsqueeze(1);         // [B, N + L] bool
    }
    s.extra = state;
    return s;
  }
  // Context parallelism: rank r of P keeps rows [r, r + 1) * ceil(S / P) of the image tokens, of
  // their RoPE rows and of the (already refined: the refiner's text self-attention is never
  // sharded) text tokens, so every rank's joint sequence is [image shard, text shard]. Attention
  // is invariant to the order of its keys, so the interleaved global order the wrappers see
  // ([image 0, text 0, image 1, text 1, ...]) gives each query what the unsharded order gives.
  // The mask is built per token from the shards: padding rows (zeros at the end of the last
  // ranks' shards) and padded text tokens are never attended to.
  const int world = group->size(), rank = group->rank();
  const auto device = opts.device();
  state->sequence_group = group;
  s.hidden = shard_sequence(s.hidden, 1, rank, world).local;                // [B, N/P, D]
  state->rope_cos = shard_sequence(state->rope_cos, 0, rank, world).local;  // [N/P, head_dim]
  state->rope_sin = shard_sequence(state->rope_sin, 0, rank, world).local;
  s.context = shard_sequence(s.context, 1, rank, world).local;  // [B, L/P, D]
  const int64_t n_local = s.hidden.size(1), l_local = s.context.size(1);
  // A key mask only where some key must be hidden (padding rows of uneven shards, or padded text
  // kept because samples' valid counts differ): masked attention kernels are ~1.4x slower. Every
  // rank derives this from the same global sizes, so all take the same collective path.
  const bool needs_mask =
      !joint_unmasked || n_local * world != n || l_local * world != joint_text_len;
  if (needs_mask) {
    state->key_mask = concat_key_masks(
        shard_key_mask({}, batch, n, rank, world, device), n_local,
        shard_key_mask(text_mask, batch, joint_text_len, rank, world, device), l_local, batch,
        device);  // [B, N/P + L/P] bool
  }
  s.hidden_valid_rows = std::clamp<int64_t>(n - rank * n_local, 0, n_local);
  s.extra = state;
  return s;
}

void HunyuanVideoTransformer3DModelImpl::run_block(int64_t i, BlockState& s) {
  TORCH_CHECK(i >= 0 && i < num_blocks(), "run_block: block ", i, " of ", num_blocks());
  auto& st = hunyuan_video_state(s);
  if (i < config_.num_layers) {
    auto [x, ctx] =
        transformer_blocks[i](s.hidden, s.context, s.temb, st.key_mask, st.rope_cos, st.rope_sin);
    s.hidden = x;
    s.context = ctx;
    st.joint = at::Tensor();
    return;
  }
  const int64_t n = s.hidden.size(1), l = s.context.size(1);
  at::Tensor joint = joint_of(st.joint, s.hidden, s.context);  // [B, N + L, D]
  st.joint = single_transformer_blocks[i - config_.num_layers](joint, n, s.temb, st.key_mask,
                                                               st.rope_cos, st.rope_sin);
  s.hidden = st.joint.narrow(1, 0, n);   // [B, N, D]
  s.context = st.joint.narrow(1, n, l);  // [B, L, D]
}

at::Tensor HunyuanVideoTransformer3DModelImpl::finish(BlockState& s) {
  const auto& st = hunyuan_video_state(s);
  auto x = proj_out(norm_out(s.hidden, s.temb));  // [B, N, pt*p*p*C]
  // Under context parallelism: the local rows of every rank, in rank order, without the padding.
  if (st.sequence_group) x = gather_sequence(x, 1, st.num_image_tokens, *st.sequence_group);
  return unpatchify_channels_first(x, st.grid,
                                   {config_.patch_size_t, config_.patch_size, config_.patch_size},
                                   config_.out_channels);  // [B, C, F, H, W]
}

BlockState HunyuanVideoTransformer3DModelImpl::fork_state(const BlockState& s) const {
  return fork_with_state<HunyuanVideoState>(s, "HunyuanVideo");
}

std::vector<at::Tensor> HunyuanVideoTransformer3DModelImpl::state_tensors(
    const BlockState& s) const {
  const auto& st = hunyuan_video_state(s);
  return {s.hidden, s.context, s.temb, st.rope_cos, st.rope_sin, st.key_mask, st.joint};
}

at::Tensor HunyuanVideoTransformer3DModelImpl::teacache_signal(const BlockState& s) {
  if (transformer_blocks.empty()) {
    throw Unsupported("TeaCache signal needs a dual-stream block 0 (num_layers is 0)");
  }
  // Context-parallel padding rows are left out: the signal's means are over real tokens only.
  return transformer_blocks[0]->norm1(real_rows(s.hidden, s.hidden_valid_rows), s.temb).x;
}

}  // namespace ditbench
