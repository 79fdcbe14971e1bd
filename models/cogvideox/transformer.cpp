#include "models/cogvideox/transformer.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "models/common/error.h"
#include "models/common/flop_count.h"
#include "models/common/register_modules.h"
#include "models/common/tensor_io.h"
#include "optimizations/attention/attention.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/sequence_shard.h"

namespace ditbench {
namespace {

constexpr double kQkNormEps = 1e-6;

// diffusers get_1d_sincos_pos_embed_from_grid: [sin | cos] of positions times f64 frequencies.
// pos: [M] float32 -> [M, dim] float64
at::Tensor sincos_1d(int64_t dim, const at::Tensor& pos) {
  auto omega = at::arange(dim / 2, pos.options().dtype(at::kDouble));
  omega = omega / (static_cast<double>(dim) / 2.0);
  omega = at::pow(10000.0, omega).reciprocal();  // 1.0 / 10000**omega
  auto out = at::outer(pos.reshape(-1), omega);  // [M, dim/2] f64 (promoted)
  return at::cat({at::sin(out), at::cos(out)}, 1);
}

// Python's round(): halves to even, as std::nearbyint in the default rounding mode.
int64_t round_half_even(double x) { return static_cast<int64_t>(std::nearbyint(x)); }

}  // namespace

// ---- layers ----

CogVideoXConv2dImpl::CogVideoXConv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel,
                                         int64_t stride, int64_t padding,
                                         const at::TensorOptions& options)
    : stride_(stride), padding_(padding) {
  weight =
      register_parameter("weight", at::empty({out_channels, in_channels, kernel, kernel}, options));
  bias = register_parameter("bias", at::empty({out_channels}, options));
}

at::Tensor CogVideoXConv2dImpl::forward(const at::Tensor& x) {
  auto y = at::conv2d(x, weight, bias, {stride_, stride_}, {padding_, padding_});
  count_conv_flops(y.numel(), weight.numel(), weight.size(0));
  return y;
}

CogVideoXPatchEmbedImpl::CogVideoXPatchEmbedImpl(const CogVideoXConfig& config,
                                                 const at::TensorOptions& options) {
  const int64_t dim = config.inner_dim(), p = config.patch_size;
  proj = register_module("proj", CogVideoXConv2d(config.in_channels, dim, p, p, 0, options));
  text_proj = register_module("text_proj", Linear(config.text_embed_dim, dim, true, options));
}

at::Tensor CogVideoXPatchEmbedImpl::embed_image(const at::Tensor& x) {
  const int64_t b = x.size(0), f = x.size(1);
  auto y = proj(x.reshape({b * f, x.size(2), x.size(3), x.size(4)}));  // [B*F, D, H', W']
  y = y.view({b, f, y.size(1), y.size(2), y.size(3)});                 // [B, F, D, H', W']
  return y.flatten(3).transpose(2, 3).flatten(1, 2);                   // [B, F*H'*W', D]
}

CogVideoXLayerNormZeroImpl::CogVideoXLayerNormZeroImpl(int64_t cond_dim, int64_t dim, double eps,
                                                       const at::TensorOptions& options) {
  linear = register_module("linear", Linear(cond_dim, 6 * dim, true, options));
  norm = register_module("norm", LayerNorm(dim, eps, options));
}

CogVideoXLayerNormZeroImpl::Output CogVideoXLayerNormZeroImpl::forward(const at::Tensor& x,
                                                                       const at::Tensor& c,
                                                                       const at::Tensor& temb) {
  // shift, scale, gate, enc_shift, enc_scale, enc_gate: each [B, D]
  auto chunks = linear(at::silu(temb)).chunk(6, 1);
  return {modulate(norm(x), chunks[0], chunks[1]), modulate(norm(c), chunks[3], chunks[4]),
          chunks[2], chunks[5]};
}

CogVideoXAttentionImpl::CogVideoXAttentionImpl(int64_t heads, int64_t head_dim,
                                               const at::TensorOptions& options)
    : heads_(heads) {
  const int64_t dim = heads * head_dim;
  register_modules<LayerNorm>(*this, {{"norm_q", &norm_q}, {"norm_k", &norm_k}}, head_dim,
                              kQkNormEps, options);
  register_modules<Linear>(*this, {{"to_q", &to_q}, {"to_k", &to_k}, {"to_v", &to_v}}, dim, dim,
                           true, options);
  to_out = register_module("to_out", OutProjection(dim, dim, true, options));
}

std::pair<at::Tensor, at::Tensor> CogVideoXAttentionImpl::forward(const at::Tensor& x,
                                                                  const at::Tensor& c,
                                                                  const at::Tensor& key_mask,
                                                                  const at::Tensor& cos,
                                                                  const at::Tensor& sin) {
  const int64_t l = c.size(1), n = x.size(1);
  auto joint = at::cat({c, x}, 1);  // [B, L + N, D], text first
  // [B, S, D] -> [B, H, S, Dh]
  auto heads = [&](const at::Tensor& t) { return t.unflatten(2, {heads_, -1}).transpose(1, 2); };
  auto q = norm_q(heads(to_q(joint)));
  auto k = norm_k(heads(to_k(joint)));
  auto v = heads(to_v(joint));
  if (cos.defined()) {
    // RoPE on the image rows only.
    auto rope = [&](const at::Tensor& t) {
      return at::cat({t.narrow(2, 0, l), apply_rotary_emb(t.narrow(2, l, n), cos, sin, 2)}, 2);
    };
    q = rope(q);
    k = rope(k);
  }
  auto out = attend(q, k, v, key_mask);                                 // [B, H, L + N, Dh]
  out = to_out(out.transpose(1, 2).flatten(2, 3).to(q.scalar_type()));  // [B, L + N, D]
  return {out.narrow(1, l, n), out.narrow(1, 0, l)};
}

CogVideoXBlockImpl::CogVideoXBlockImpl(const CogVideoXConfig& config,
                                       const at::TensorOptions& options) {
  const int64_t dim = config.inner_dim();
  norm1 = register_module(
      "norm1", CogVideoXLayerNormZero(config.time_embed_dim, dim, config.norm_eps, options));
  attn1 = register_module(
      "attn1", CogVideoXAttention(config.num_attention_heads, config.attention_head_dim, options));
  norm2 = register_module(
      "norm2", CogVideoXLayerNormZero(config.time_embed_dim, dim, config.norm_eps, options));
  ff = register_module("ff", FeedForward(dim, 4 * dim, FeedForwardActivation::kGeluTanh, options));
}

std::pair<at::Tensor, at::Tensor> CogVideoXBlockImpl::forward(
    const at::Tensor& x, const at::Tensor& c, const at::Tensor& temb, const at::Tensor& key_mask,
    const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t l = c.size(1), n = x.size(1);
  auto m1 = norm1(x, c, temb);
  auto [ax, ac] = attn1(m1.x, m1.c, key_mask, cos, sin);
  auto x1 = x + m1.gate.unsqueeze(1) * ax;      // [B, N, D]
  auto c1 = c + m1.enc_gate.unsqueeze(1) * ac;  // [B, L, D]
  auto m2 = norm2(x1, c1, temb);
  auto f = ff(at::cat({m2.c, m2.x}, 1));  // [B, L + N, D], shared MLP over [text, image]
  return {x1 + m2.gate.unsqueeze(1) * f.narrow(1, l, n),
          c1 + m2.enc_gate.unsqueeze(1) * f.narrow(1, 0, l)};
}

CogVideoXAdaLayerNormImpl::CogVideoXAdaLayerNormImpl(int64_t cond_dim, int64_t dim, double eps,
                                                     const at::TensorOptions& options) {
  linear = register_module("linear", Linear(cond_dim, 2 * dim, true, options));
  norm = register_module("norm", LayerNorm(dim, eps, options));
}

at::Tensor CogVideoXAdaLayerNormImpl::forward(const at::Tensor& x, const at::Tensor& temb) {
  auto chunks = linear(at::silu(temb)).chunk(2, 1);  // shift, scale: [B, D]
  return modulate(norm(x), chunks[0], chunks[1]);
}

// ---- the model ----

CogVideoXTransformer3DModelImpl::CogVideoXTransformer3DModelImpl(const CogVideoXConfig& config,
                                                                 const at::TensorOptions& options)
    : config_(config) {
  config_.validate("CogVideoXConfig");
  const int64_t dim = config_.inner_dim();
  patch_embed = register_module("patch_embed", CogVideoXPatchEmbed(config_, options));
  time_embedding =
      register_module("time_embedding", TimestepEmbedding(dim, config_.time_embed_dim, options));
  transformer_blocks =
      register_module_list<CogVideoXBlock>(*this, "transformer_blocks", config_.num_layers,
                                           [&] { return CogVideoXBlock(config_, options); });
  norm_final = register_module("norm_final", LayerNorm(dim, config_.norm_eps, options));
  norm_out = register_module(
      "norm_out", CogVideoXAdaLayerNorm(config_.time_embed_dim, dim, config_.norm_eps, options));
  const int64_t p = config_.patch_size;
  proj_out = register_module("proj_out", Linear(dim, p * p * config_.out_channels, true, options));
}

at::TensorOptions CogVideoXTransformer3DModelImpl::param_options() const {
  return proj_out->weight.options();
}

at::Tensor CogVideoXTransformer3DModelImpl::sincos_positions(int64_t frames, int64_t height,
                                                             int64_t width,
                                                             const at::Device& device) const {
  const int64_t dim = config_.inner_dim();
  const int64_t dim_spatial = 3 * dim / 4, dim_temporal = dim / 4;
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  // Spatial: [w | h] halves over the (h, w) grid, w fastest.
  auto grid_h = at::arange(height, f32) / config_.spatial_interpolation_scale;
  auto grid_w = at::arange(width, f32) / config_.spatial_interpolation_scale;
  auto grid = at::meshgrid({grid_w, grid_h}, "xy");  // 2 x [H', W']: w coords, h coords
  auto spatial = at::cat({sincos_1d(dim_spatial / 2, grid[0]), sincos_1d(dim_spatial / 2, grid[1])},
                         1);  // [H'W', 3D/4]
  auto grid_t = at::arange(frames, f32) / config_.temporal_interpolation_scale;
  auto temporal = sincos_1d(dim_temporal, grid_t);  // [F, D/4]
  auto table = at::cat({temporal.unsqueeze(1).expand({frames, height * width, dim_temporal}),
                        spatial.unsqueeze(0).expand({frames, height * width, dim_spatial})},
                       -1);  // [F, H'W', D]
  return table.flatten(0, 1);
}

std::pair<at::Tensor, at::Tensor> CogVideoXTransformer3DModelImpl::rotary_tables(
    int64_t frames, int64_t height, int64_t width, const at::Device& device) const {
  const int64_t p = config_.patch_size;
  const int64_t base_w = config_.sample_width / p, base_h = config_.sample_height / p;
  // get_resize_crop_region_for_grid((height, width), base_w, base_h)
  int64_t resize_h = 0, resize_w = 0;
  const double ratio = static_cast<double>(height) / static_cast<double>(width);
  if (ratio > static_cast<double>(base_h) / static_cast<double>(base_w)) {
    resize_h = base_h;
    resize_w = round_half_even(static_cast<double>(base_h) / height * width);
  } else {
    resize_w = base_w;
    resize_h = round_half_even(static_cast<double>(base_w) / width * height);
  }
  const int64_t top = round_half_even((base_h - resize_h) / 2.0);
  const int64_t left = round_half_even((base_w - resize_w) / 2.0);
  const int64_t bottom = top + resize_h, right = left + resize_w;
  // get_3d_rotary_pos_embed(head_dim, crops, (height, width), frames, grid_type="linspace")
  auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  auto grid_h = at::linspace(static_cast<double>(top),
                             static_cast<double>(bottom) * (height - 1) / height, height, f32);
  auto grid_w = at::linspace(static_cast<double>(left),
                             static_cast<double>(right) * (width - 1) / width, width, f32);
  auto grid_t = at::linspace(0.0, static_cast<double>(frames) * (frames - 1) / frames, frames, f32);
  const int64_t head_dim = config_.attention_head_dim;
  const int64_t dim_t = head_dim / 4, dim_hw = head_dim / 8 * 3;
  constexpr double kTheta = 10000.0;
  auto [t_cos, t_sin] = rope_1d(dim_t, grid_t, kTheta);
  auto [h_cos, h_sin] = rope_1d(dim_hw, grid_h, kTheta);
  auto [w_cos, w_sin] = rope_1d(dim_hw, grid_w, kTheta);
  auto combine = [&](const at::Tensor& t, const at::Tensor& h, const at::Tensor& w) {
    return at::cat({t.view({frames, 1, 1, dim_t}).expand({frames, height, width, dim_t}),
                    h.view({1, height, 1, dim_hw}).expand({frames, height, width, dim_hw}),
                    w.view({1, 1, width, dim_hw}).expand({frames, height, width, dim_hw})},
                   -1)
        .view({frames * height * width, -1});  // [F*H'*W', dim_t + 2 dim_hw]
  };
  return {combine(t_cos, h_cos, w_cos), combine(t_sin, h_sin, w_sin)};
}

std::shared_ptr<const CogVideoXTransformer3DModelImpl::PositionCache>
CogVideoXTransformer3DModelImpl::positions(const std::array<int64_t, 3>& grid) {
  const auto opts = param_options();
  std::lock_guard<std::mutex> lock(position_mutex_);
  const auto& cached = position_cache_;
  if (cached && cached->grid == grid && cached->device == opts.device() &&
      cached->dtype == opts.dtype().toScalarType()) {
    return cached;
  }
  auto entry = std::make_shared<PositionCache>();
  entry->grid = grid;
  entry->device = opts.device();
  entry->dtype = opts.dtype().toScalarType();
  if (config_.use_rotary_positional_embeddings) {
    std::tie(entry->rope_cos, entry->rope_sin) =
        rotary_tables(grid[0], grid[1], grid[2], opts.device());
  } else {
    // diffusers keeps the table in f64 and casts it to the embeddings' dtype when adding it.
    entry->sincos = sincos_positions(grid[0], grid[1], grid[2], opts.device()).to(entry->dtype);
  }
  position_cache_ = entry;
  return entry;
}

BlockState CogVideoXTransformer3DModelImpl::prepare(const TransformerInputs& in) {
  const auto& c = config_;
  const auto opts = param_options();
  const auto& latents = in.latents;
  if (!latents.defined() || latents.dim() != 5 || latents.size(2) != c.in_channels) {
    throw InputError("latents: expected [B, F, " + std::to_string(c.in_channels) +
                     ", H, W] (frames before channels), got " + describe_shape(latents));
  }
  const int64_t batch = latents.size(0), p = c.patch_size;
  if (latents.size(3) % p || latents.size(4) % p) {
    throw InputError("latents: H, W of " + describe_shape(latents) +
                     " not divisible by the patch " + std::to_string(p));
  }
  const auto& text = in.prompt.embeds;
  if (!text.defined() || text.dim() != 3 || text.size(0) != batch ||
      text.size(2) != c.text_embed_dim) {
    throw InputError("prompt.embeds: expected [" + std::to_string(batch) + ", L, " +
                     std::to_string(c.text_embed_dim) + "], got " + describe_shape(text));
  }
  const auto& t = in.timestep;
  if (!t.defined() || t.dim() > 1 || (t.dim() == 1 && t.size(0) != batch && t.size(0) != 1)) {
    throw InputError("timestep: expected [" + std::to_string(batch) + "], got " +
                     describe_shape(t));
  }
  const auto dtype = opts.dtype().toScalarType();
  auto timestep = t.reshape({-1}).expand({batch}).to(opts.device());
  auto x_in = latents.to(opts.device(), dtype);
  auto text_in = text.to(opts.device(), dtype);

  auto state = std::make_shared<CogVideoXState>();
  state->grid = {latents.size(1), latents.size(3) / p, latents.size(4) / p};
  const auto pos = positions(state->grid);
  state->rope_cos = pos->rope_cos;
  state->rope_sin = pos->rope_sin;

  BlockState s;
  // Sinusoid of width D in f32, cast to the hidden dtype, then the MLP: [B, time_embed_dim]
  s.temb = time_embedding(timestep_sinusoid(timestep, c.inner_dim(), c.flip_sin_to_cos,
                                            static_cast<double>(c.freq_shift))
                              .to(dtype));
  s.context = patch_embed->text_proj(text_in);                   // [B, L, D]
  s.hidden = patch_embed->embed_image(x_in);                     // [B, N, D]
  if (pos->sincos.defined()) s.hidden = s.hidden + pos->sincos;  // text rows get zeros
  const int64_t n = s.hidden.size(1), text_len = s.context.size(1);
  state->num_image_tokens = n;

  Communicator* group = current_sequence_group();
  if (!group) {
    s.extra = state;
    return s;
  }
  // Context parallelism as HunyuanVideo does it: rank r of P keeps the contiguous rows
  // [r, r + 1) * ceil(S / P) of the image tokens, of their RoPE rows and of the text tokens, so
  // its joint sequence is [text shard, image shard]; attention does not depend on the order of
  // its keys, and the key mask leaves the zero padding rows of the last ranks out.
  const int world = group->size(), rank = group->rank();
  const auto device = opts.device();
  // [B, N/P, D] and the RoPE rows [N/P, head_dim]
  const auto image_keys = state->shard_image(s, state->rope_cos, state->rope_sin, *group);
  s.context = shard_sequence(s.context, 1, rank, world).local;  // [B, L/P, D]
  const int64_t n_local = s.hidden.size(1), l_local = s.context.size(1);
  state->key_mask = concat_key_masks(shard_key_mask({}, batch, text_len, rank, world, device),
                                     l_local, image_keys, n_local, batch,
                                     device);  // [B, L/P + N/P] or undefined
  s.extra = state;
  return s;
}

void CogVideoXTransformer3DModelImpl::run_block(int64_t i, BlockState& s) {
  TORCH_CHECK(i >= 0 && i < num_blocks(), "run_block: block ", i, " of ", num_blocks());
  const auto& st = cogvideox_state(s);
  auto [x, ctx] =
      transformer_blocks[i](s.hidden, s.context, s.temb, st.key_mask, st.rope_cos, st.rope_sin);
  s.hidden = x;
  s.context = ctx;
}

at::Tensor CogVideoXTransformer3DModelImpl::finish(BlockState& s) {
  const auto& st = cogvideox_state(s);
  // Per-token norms: the image rows alone give what diffusers' joint norm_final gives them.
  auto x = proj_out(norm_out(norm_final(s.hidden), s.temb));  // [B, N, p*p*C]
  x = st.gather_image(x);
  const auto [f, h, w] = st.grid;
  const int64_t p = config_.patch_size;
  // Features are (C, ph, pw): [B, F, H', W', C, p, p] -> [B, F, C, H'p, W'p]
  return x.reshape({x.size(0), f, h, w, config_.out_channels, p, p})
      .permute({0, 1, 4, 2, 5, 3, 6})
      .flatten(5, 6)
      .flatten(3, 4);
}

BlockState CogVideoXTransformer3DModelImpl::fork_state(const BlockState& s) const {
  return fork_with_state<CogVideoXState>(s, "CogVideoX");
}

std::vector<at::Tensor> CogVideoXTransformer3DModelImpl::state_tensors(const BlockState& s) const {
  const auto& st = extra_state<CogVideoXState>(s, "CogVideoX");
  return {s.hidden, s.context, s.temb, st.rope_cos, st.rope_sin, st.key_mask};
}

at::Tensor CogVideoXTransformer3DModelImpl::teacache_signal(const BlockState& s) {
  return s.temb;  // [B, time_embed_dim], identical on every rank under CP
}

}  // namespace ditbench
