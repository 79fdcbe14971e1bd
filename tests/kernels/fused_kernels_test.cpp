// The fused kernels (optimizations/kernels/fused.h) against the ATen chains the HunyuanVideo blocks
// run otherwise (models/common norms, RMSNorm, apply_rotary_emb): on the GPU the fused bf16
// result must equal the chain's bf16 result element for element up to the order of the row
// reductions, and be as close as the chain to a float32 CPU reference of the same chain. Without
// CUDA the kernels must decline, so the model keeps its ATen path.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "fused_kernels_gpu.h"
#include "models/checkpoint/checkpoint.h"
#include "models/common/embeddings.h"
#include "models/common/norms.h"
#include "models/hunyuan_video/config.h"
#include "models/hunyuan_video/transformer.h"
#include "optimizations/kernels/fused.h"
#include "optimizations/quant/quant.h"
#include "test_util.h"

namespace ditbench {
namespace {

using testing::rel_error;

constexpr double kEps = 1e-6;

at::TensorOptions gpu_bf16() { return at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16); }

// Share of elements where a and b are bit-equal.
double equal_share(const at::Tensor& a, const at::Tensor& b) {
  return a.eq(b).to(at::kFloat).mean().item<double>();
}

// A float32 CPU copy of a (bf16 GPU) tensor, for the float32 reference of the ATen chain.
at::Tensor f32_cpu(const at::Tensor& t) { return t.to(at::kCPU, at::kFloat); }

// The fused result is as close to the float32 chain as the bf16 chain is (within 5%).
void expect_as_accurate(const at::Tensor& fused, const at::Tensor& chain, const at::Tensor& ref32) {
  const double fused_error = rel_error(f32_cpu(fused), ref32);
  const double chain_error = rel_error(f32_cpu(chain), ref32);
  EXPECT_LE(fused_error, chain_error * 1.05 + 1e-5)
      << "fused " << fused_error << " vs chain " << chain_error;
  EXPECT_LT(fused_error, 8e-3);
}

class RestoreSwitch {
 public:
  RestoreSwitch() : was_(fused_kernels_enabled()) {}
  ~RestoreSwitch() { set_fused_kernels_enabled(was_); }

 private:
  bool was_;
};

// ---- every build ----

TEST(FusedKernels, DeclineCpuTensorsSoTheModelKeepsItsAtenPath) {
  auto x = at::randn({2, 5, 64}).to(at::kBFloat16);
  auto mod = at::randn({2, 64}).to(at::kBFloat16);
  EXPECT_FALSE(fused_kernels_serve(x));
  EXPECT_FALSE(fused_kernels_serve(x.to(at::kFloat)));
  EXPECT_FALSE(try_layer_norm_modulate(x, mod, mod, kEps).defined());
  EXPECT_FALSE(try_gate_residual(x, mod, x).defined());
  auto q = at::randn({2, 5, 4, 16}).to(at::kBFloat16), k = q.clone();
  const auto q_before = q.clone();
  auto w = at::ones({16}, at::kBFloat16);
  EXPECT_FALSE(try_qk_rms_norm_rope_(q, k, w, w, {}, {}, kEps));
  EXPECT_TRUE(at::equal(q, q_before));
  EXPECT_FALSE(try_qk_rms_norm_rope(q, k, w, w, {}, {}, kEps).first.defined());
}

TEST(FusedKernels, SwitchTurnsThemOffAndOn) {
  RestoreSwitch restore;
  set_fused_kernels_enabled(false);
  EXPECT_FALSE(fused_kernels_enabled());
  set_fused_kernels_enabled(true);
  EXPECT_TRUE(fused_kernels_enabled());
}

// ---- on the GPU ----

class FusedKernelsGpu : public testing::FusedKernelsGpuTest {};

// shift, scale and gates are chunks of one [B, k*D] modulation output, as the blocks get them.
std::vector<at::Tensor> modulation_chunks(int64_t batch, int64_t dim, int64_t chunks) {
  return (at::randn({batch, chunks * dim}, gpu_bf16()) * 0.5).chunk(chunks, 1);
}

TEST_F(FusedKernelsGpu, LayerNormModulateEqualsTheAtenChain) {
  for (int64_t dim : {3072, 64, 1000, 8192}) {
    SCOPED_TRACE("dim " + std::to_string(dim));
    auto x = at::randn({2, 301, dim}, gpu_bf16()) * 3 + 0.5;  // [B, S, D]
    auto mod = modulation_chunks(2, dim, 6);
    auto fused = try_layer_norm_modulate(x, mod[0], mod[1], kEps);
    ASSERT_TRUE(fused.defined());
    auto chain = modulate(layer_norm_plain(x, kEps), mod[0], mod[1]);
    auto ref32 = modulate(layer_norm_plain(f32_cpu(x), kEps), f32_cpu(mod[0]), f32_cpu(mod[1]));
    EXPECT_GT(equal_share(fused, chain), 0.99);
    expect_as_accurate(fused, chain, ref32);
  }
}

TEST_F(FusedKernelsGpu, LayerNormModulateReadsStridedRowsAndBroadcastsOneModulationRow) {
  // The image rows of a joint [B, N + L, D] tensor, and one modulation row for the batch.
  auto joint = at::randn({2, 40, 256}, gpu_bf16());
  auto x = joint.narrow(1, 0, 32);
  auto mod = modulation_chunks(1, 256, 2);
  auto fused = try_layer_norm_modulate(x, mod[0], mod[1], kEps);
  ASSERT_TRUE(fused.defined());
  EXPECT_GT(equal_share(fused, modulate(layer_norm_plain(x, kEps), mod[0], mod[1])), 0.99);
}

TEST_F(FusedKernelsGpu, GateResidualEqualsTheAtenChainExactly) {
  for (int64_t dim : {3072, 8, 1000}) {
    SCOPED_TRACE("dim " + std::to_string(dim));
    auto x = at::randn({2, 257, dim}, gpu_bf16());
    auto y = at::randn({2, 257, dim}, gpu_bf16()) * 4;
    auto gate = modulation_chunks(2, dim, 3)[2];
    auto fused = try_gate_residual(x, gate, y);
    ASSERT_TRUE(fused.defined());
    auto chain = x + y * gate.unsqueeze(1);
    EXPECT_TRUE(at::equal(fused, chain));
    expect_as_accurate(fused, chain, f32_cpu(x) + f32_cpu(y) * f32_cpu(gate).unsqueeze(1));
  }
}

TEST_F(FusedKernelsGpu, KernelsDeclineWhatTheyCannotServe) {
  auto x = at::randn({1, 8, 65}, gpu_bf16());  // D not a multiple of 8
  auto mod = modulation_chunks(1, 65, 2);
  EXPECT_FALSE(try_layer_norm_modulate(x, mod[0], mod[1], kEps).defined());
  EXPECT_FALSE(try_gate_residual(x, mod[0], x).defined());
  auto wide = at::randn({1, 8, 72}, gpu_bf16()).narrow(2, 1, 64);  // rows not 16-byte aligned
  auto mod64 = modulation_chunks(1, 64, 2);
  EXPECT_FALSE(try_layer_norm_modulate(wide, mod64[0], mod64[1], kEps).defined());
  auto f32 = at::randn({1, 8, 64}, at::TensorOptions().device(at::kCUDA));
  EXPECT_FALSE(try_gate_residual(f32, mod64[0].to(at::kFloat), f32).defined());
  {
    RestoreSwitch restore;
    set_fused_kernels_enabled(false);
    auto ok = at::randn({1, 8, 64}, gpu_bf16());
    EXPECT_FALSE(try_gate_residual(ok, mod64[0], ok).defined());
  }
}

// The ATen chain of HunyuanVideo's attention: RMSNorm with weight, then RoPE on the first
// cos.size(0) rows (the image tokens of a joint sequence).
at::Tensor norm_rope_chain(const at::Tensor& x, RMSNorm& norm, const at::Tensor& cos,
                           const at::Tensor& sin) {
  auto y = norm(x);
  if (!cos.defined()) return y;
  const int64_t rows = cos.size(0);
  return at::cat(
      {apply_rotary_emb(y.narrow(1, 0, rows), cos, sin, 1), y.narrow(1, rows, y.size(1) - rows)},
      1);
}

struct QkCase {
  int64_t heads, head_dim, seq;
  std::array<int64_t, 3> grid;  // RoPE rows: the (t, h, w) grid's tokens; all 0: no RoPE
  std::vector<int64_t> axes;    // RoPE axis dims, summing to head_dim
};

TEST_F(FusedKernelsGpu, QkRmsNormRopeEqualsTheAtenChain) {
  const std::vector<QkCase> cases = {
      {24, 128, 262, {2, 5, 25}, {16, 56, 56}},  // released head layout, joint image + text rows
      {24, 128, 250, {2, 5, 25}, {16, 56, 56}},  // image stream only
      {24, 128, 40, {0, 0, 0}, {}},              // text stream: norm only
      {2, 16, 30, {2, 3, 4}, {4, 6, 6}},         // the tiny preset
      {4, 64, 33, {2, 3, 4}, {16, 24, 24}},
      // More items than resident groups: each group walks items, loading the next while it
      // norms this one; image rows, then text rows without RoPE.
      {24, 128, 1040, {4, 10, 25}, {16, 56, 56}},
  };
  for (const auto& c : cases) {
    const int64_t rope_rows = c.grid[0] * c.grid[1] * c.grid[2];
    SCOPED_TRACE("heads " + std::to_string(c.heads) + " head_dim " + std::to_string(c.head_dim) +
                 " rope rows " + std::to_string(rope_rows));
    auto q = at::randn({2, c.seq, c.heads, c.head_dim}, gpu_bf16()) * 2;
    auto k = at::randn({2, c.seq, c.heads, c.head_dim}, gpu_bf16());
    RMSNorm norm_q(c.head_dim, kEps, true, gpu_bf16()), norm_k(c.head_dim, kEps, true, gpu_bf16());
    norm_q->weight.normal_(1.0, 0.2);
    norm_k->weight.normal_(1.0, 0.2);
    at::Tensor cos, sin;
    if (rope_rows > 0) {  // float32 tables [rows, Dh] as the model builds them
      std::tie(cos, sin) = rope_3d_grid(c.grid[0], c.grid[1], c.grid[2], c.axes, 256.0, at::kCUDA);
    }
    auto [q_fused, k_fused] =
        try_qk_rms_norm_rope(q, k, norm_q->weight, norm_k->weight, cos, sin, kEps);
    ASSERT_TRUE(q_fused.defined());
    auto q_chain = norm_rope_chain(q, norm_q, cos, sin);
    auto k_chain = norm_rope_chain(k, norm_k, cos, sin);
    EXPECT_GT(equal_share(q_fused, q_chain), 0.99);
    EXPECT_GT(equal_share(k_fused, k_chain), 0.99);

    // float32 reference of the same chain from the same bf16 inputs and weights.
    RMSNorm ref_q(c.head_dim, kEps, true, at::TensorOptions());
    RMSNorm ref_k(c.head_dim, kEps, true, at::TensorOptions());
    ref_q->weight = f32_cpu(norm_q->weight);
    ref_k->weight = f32_cpu(norm_k->weight);
    const at::Tensor cos32 = cos.defined() ? cos.cpu() : cos;
    const at::Tensor sin32 = sin.defined() ? sin.cpu() : sin;
    expect_as_accurate(q_fused, q_chain, norm_rope_chain(f32_cpu(q), ref_q, cos32, sin32));
    expect_as_accurate(k_fused, k_chain, norm_rope_chain(f32_cpu(k), ref_k, cos32, sin32));

    // In place gives the same values.
    auto q_in = q.clone(), k_in = k.clone();
    ASSERT_TRUE(try_qk_rms_norm_rope_(q_in, k_in, norm_q->weight, norm_k->weight, cos, sin, kEps));
    EXPECT_TRUE(at::equal(q_in, q_fused));
    EXPECT_TRUE(at::equal(k_in, k_fused));
  }
}

TEST_F(FusedKernelsGpu, QkRmsNormRopeServesColumnRangesOfAPackedProjection) {
  // q | k | v of one [B, S, 3 * H * Dh] GEMM output: q and k are views with token stride 3 H Dh.
  const int64_t heads = 24, head_dim = 128, seq = 262;
  auto packed = at::randn({2, seq, 3 * heads * head_dim}, gpu_bf16());
  const auto before = packed.clone();
  auto view = [&](int64_t i) {
    return packed.narrow(2, i * heads * head_dim, heads * head_dim).unflatten(2, {heads, head_dim});
  };
  auto q = view(0), k = view(1);
  auto w_q = at::randn({head_dim}, gpu_bf16()) * 0.2 + 1, w_k = at::randn({head_dim}, gpu_bf16());
  auto [cos, sin] = rope_3d_grid(2, 5, 25, {16, 56, 56}, 256.0, at::kCUDA);
  auto [q_ref, k_ref] =
      try_qk_rms_norm_rope(q.contiguous(), k.contiguous(), w_q, w_k, cos, sin, kEps);
  ASSERT_TRUE(q_ref.defined());
  ASSERT_TRUE(try_qk_rms_norm_rope_(q, k, w_q, w_k, cos, sin, kEps));
  EXPECT_TRUE(at::equal(q, q_ref));
  EXPECT_TRUE(at::equal(k, k_ref));
  EXPECT_TRUE(at::equal(view(2), before.narrow(2, 2 * heads * head_dim, heads * head_dim)
                                     .unflatten(2, {heads, head_dim})));  // v untouched
  // The text rows of a joint buffer (a row range of the views), norm only.
  auto q_text = view(0).narrow(1, 250, 12), k_text = view(1).narrow(1, 250, 12);
  auto [qt_ref, kt_ref] =
      try_qk_rms_norm_rope(q_text.contiguous(), k_text.contiguous(), w_k, w_q, {}, {}, kEps);
  ASSERT_TRUE(try_qk_rms_norm_rope_(q_text, k_text, w_k, w_q, {}, {}, kEps));
  EXPECT_TRUE(at::equal(q_text, qt_ref));
  EXPECT_TRUE(at::equal(k_text, kt_ref));
}

TEST_F(FusedKernelsGpu, QkRmsNormRopeDeclinesOtherHeadDimsAndLayouts) {
  auto w = at::ones({48}, gpu_bf16());
  auto q = at::randn({1, 4, 2, 48}, gpu_bf16()), k = q.clone();
  EXPECT_FALSE(try_qk_rms_norm_rope_(q, k, w, w, {}, {}, kEps));  // Dh / 8 not a power of two
  auto w16 = at::ones({16}, gpu_bf16());
  auto strided = at::randn({1, 2, 4, 16}, gpu_bf16()).transpose(1, 2);  // [B, H, S, Dh] view
  auto strided_k = strided.clone();
  EXPECT_FALSE(try_qk_rms_norm_rope_(strided, strided_k, w16, w16, {}, {}, kEps));
}

// bf16 GPU inputs of the tiny preset: [B, C, 3, 8, 8] latents and 12 text tokens, all valid.
TransformerInputs tiny_inputs(const HunyuanVideoConfig& config, int64_t batch, double timestep) {
  TransformerInputs in;
  in.latents = at::randn({batch, config.in_channels, 3, 8, 8}, gpu_bf16());
  in.timestep = at::full({batch}, timestep, gpu_bf16());
  in.guidance = at::full({batch}, 6000.0, gpu_bf16());
  in.prompt.embeds = at::randn({batch, 12, config.text_embed_dim}, gpu_bf16());
  in.prompt.pooled = at::randn({batch, config.pooled_projection_dim}, gpu_bf16());
  return in;
}

// The HunyuanVideo tiny preset in bf16 on the GPU: the whole forward pass with the fused kernels
// against the same model on its ATen path.
TEST_F(FusedKernelsGpu, HunyuanVideoForwardMatchesItsAtenPath) {
  torch::NoGradGuard no_grad;
  auto config = hunyuan_video_preset("hunyuan-video-tiny");
  HunyuanVideoTransformer3DModel model(config, gpu_bf16());
  random_init(*model, 7);
  auto in = tiny_inputs(config, 1, 500.0);
  auto mask = at::ones({1, 12}, at::TensorOptions().device(at::kCUDA).dtype(at::kBool));
  mask.narrow(1, 9, 3).fill_(false);
  in.prompt.attention_mask = mask;
  auto fused = model->forward(in);
  set_fused_kernels_enabled(false);
  auto aten = model->forward(in);
  EXPECT_LT(rel_error(f32_cpu(fused), f32_cpu(aten)), 2e-2);
}

// The GEMM arrangements on top (GELU epilogues, q | k | v as one GEMM into a joint [image, text]
// buffer, proj_out without the concatenation) with a batch of two, the parameters keeping their
// keys and shapes; then with FP8 Linears, whose q | k | v run as one FP8 GEMM from the shared
// e4m3 rows, also into the joint buffer.
TEST_F(FusedKernelsGpu, HunyuanVideoBatchOfTwoAndFp8MatchTheirAtenPaths) {
  torch::NoGradGuard no_grad;
  auto config = hunyuan_video_preset("hunyuan-video-tiny");
  HunyuanVideoTransformer3DModel model(config, gpu_bf16());
  random_init(*model, 11);
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const auto& p : model->named_parameters())
    shapes.emplace_back(p.key(), p.value().sizes().vec());
  auto in = tiny_inputs(config, 2, 700.0);
  auto fused = model->forward(in);
  std::vector<std::pair<std::string, std::vector<int64_t>>> after;
  for (const auto& p : model->named_parameters())
    after.emplace_back(p.key(), p.value().sizes().vec());
  EXPECT_EQ(after, shapes);
  set_fused_kernels_enabled(false);
  auto aten = model->forward(in);
  EXPECT_LT(rel_error(f32_cpu(fused), f32_cpu(aten)), 2e-2);
  if (!check_quant_mode(QuantMode::fp8_dynamic, at::Device(at::kCUDA)).ok) return;
  apply_quantization(*model, QuantMode::fp8_dynamic, {"attn\\.", "proj_"}, {});
  auto fp8_aten = model->forward(in);
  set_fused_kernels_enabled(true);
  auto fp8_fused = model->forward(in);
  // The FP8 q | k | v groups ran: each block's e4m3 projections now view one stacked weight.
  for (auto* attn : {model->transformer_blocks[0]->attn.get(),
                     model->single_transformer_blocks[0]->attn.get()}) {
    EXPECT_TRUE(attn->to_v->weight_fp8.values.is_alias_of(attn->to_q->weight_fp8.values));
  }
  EXPECT_TRUE(model->transformer_blocks[0]->attn->add_v_proj->weight_fp8.values.is_alias_of(
      model->transformer_blocks[0]->attn->add_q_proj->weight_fp8.values));
  // The fused kernels round their bf16 outputs once where the chain rounds after every op; an
  // e4m3 activation (3 mantissa bits) turns a last-bit bf16 difference into a whole e4m3 step
  // now and then, so the two FP8 paths may differ by up to FP8's own effect, not by bf16's.
  // Broken fused FP8 inputs would put the output ~100% off.
  const double fp8_effect = rel_error(f32_cpu(fp8_aten), f32_cpu(aten));
  const double fused_vs_aten = rel_error(f32_cpu(fp8_fused), f32_cpu(fp8_aten));
  EXPECT_LT(fused_vs_aten, std::max(2e-2, 1.5 * fp8_effect))
      << "fp8 fused vs fp8 ATen " << fused_vs_aten << ", fp8 vs bf16 " << fp8_effect;
  EXPECT_LT(rel_error(f32_cpu(fp8_fused), f32_cpu(aten)), 2 * fp8_effect + 2e-2)
      << "fp8 fused vs bf16 " << rel_error(f32_cpu(fp8_fused), f32_cpu(aten));
}

}  // namespace
}  // namespace ditbench
