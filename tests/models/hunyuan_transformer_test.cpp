// HunyuanVideo transformer against diffusers: the fixture checkpoint (fp32 output and first
// block), references generated with diffusers for bf16 and a masked batch of two
// (tests/data/hunyuan_video_refs.safetensors), key sets, and the released size by hand (§2.3).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>

#include "model_test_util.h"
#include "models/checkpoint/checkpoint.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"
#include "models/hunyuan_video/config.h"
#include "models/hunyuan_video/transformer.h"

namespace ditbench {
namespace {

using testing::checkpoint_shapes;
using testing::inputs_from;
using testing::parameter_shapes;
using testing::rel_error;
using testing::TensorMap;

std::string fixture_dir() { return testing::diffusers_fixture("hunyuan_video"); }

const TensorMap& fixture_io() { return testing::fixture_io("hunyuan_video"); }
const TensorMap& generated_refs() { return testing::test_data("hunyuan_video_refs.safetensors"); }

HunyuanVideoTransformer3DModel load_fixture_model(at::ScalarType dtype) {
  return testing::load_fixture_model<HunyuanVideoTransformer3DModel>(
      fixture_dir(), HunyuanVideoConfig::from_file(fixture_dir() + "/model/config.json"), dtype);
}

// The text rows of a reference block output that ditbench keeps: padded text tokens are dropped
// before the blocks when every sample has the same number of valid ones (they are only ever masked
// keys, and the output takes the image rows only). [B, L, D] -> [B, valid, D].
at::Tensor valid_text_rows(const at::Tensor& ref, const at::Tensor& mask) {
  const auto keep = mask.to(at::kBool);
  return ref.index({keep}).view({ref.size(0), -1, ref.size(2)});
}

TEST(HunyuanTransformer, ParameterKeysAndShapesEqualTheFixtureCheckpoint) {
  auto config = HunyuanVideoConfig::from_file(fixture_dir() + "/model");
  HunyuanVideoTransformer3DModel model(config, at::TensorOptions().device(at::kMeta));
  EXPECT_EQ(parameter_shapes(*model),
            checkpoint_shapes(Checkpoint::open(fixture_dir() + "/model")));
  EXPECT_TRUE(model->named_buffers().is_empty());
}

TEST(HunyuanTransformer, Fp32OutputAndFirstBlockMatchDiffusers) {
  torch::NoGradGuard no_grad;
  auto model = load_fixture_model(at::kFloat);
  const auto& io = fixture_io();
  auto in = inputs_from(io, "input.");

  auto state = model->prepare(in);
  // Row-major streams into and out of the blocks: the fused row kernels serve only those (a
  // transposed image stream once sent every dual-stream block down its ATen chains on GPUs).
  EXPECT_TRUE(state.hidden.is_contiguous());
  model->run_block(0, state);
  EXPECT_TRUE(state.hidden.is_contiguous());
  EXPECT_LE(rel_error(state.hidden, io.at("output.first_block_out0")), 1e-4);
  EXPECT_LE(rel_error(state.context,
                      valid_text_rows(io.at("output.first_block_out1"), in.prompt.attention_mask)),
            1e-4);

  auto out = model->forward(in);
  ASSERT_EQ(out.sizes(), io.at("output.sample").sizes());
  const double err = rel_error(out, io.at("output.sample"));
  RecordProperty("rel_error", ::testing::PrintToString(err));
  EXPECT_LE(err, 1e-4);
}

TEST(HunyuanTransformer, MaskedBatchOfTwoMatchesDiffusers) {
  torch::NoGradGuard no_grad;
  auto model = load_fixture_model(at::kFloat);
  const auto& refs = generated_refs();
  auto out = model->forward(inputs_from(refs, "b2.input."));
  // 3 and 7 valid text tokens: the samples differ, so the text stays padded under a key mask.
  auto state = model->prepare(inputs_from(refs, "b2.input."));
  EXPECT_EQ(state.context.size(1), 7);
  ASSERT_TRUE(hunyuan_video_state(state).key_mask.defined());
  EXPECT_EQ(hunyuan_video_state(state).key_mask.sum().item<int64_t>(),
            2 * state.hidden.size(1) + 3 + 7);
  const double err = rel_error(out, refs.at("b2.output.sample"));
  RecordProperty("rel_error", ::testing::PrintToString(err));
  EXPECT_LE(err, 1e-4);
  // Each sample alone gives the same result: masks and timesteps are per sample.
  auto in = inputs_from(refs, "b2.input.");
  for (int64_t b = 0; b < 2; ++b) {
    TransformerInputs one = in;
    for (auto* t : {&one.latents, &one.timestep, &one.guidance, &one.prompt.embeds,
                    &one.prompt.attention_mask, &one.prompt.pooled}) {
      *t = t->narrow(0, b, 1);
    }
    EXPECT_LE(rel_error(model->forward(one), refs.at("b2.output.sample").narrow(0, b, 1)), 1e-4);
  }
}

TEST(HunyuanTransformer, Bf16MatchesDiffusersBf16) {
  torch::NoGradGuard no_grad;
  auto model = load_fixture_model(at::kBFloat16);
  const auto& refs = generated_refs();
  auto in = inputs_from(refs, "input.");  // bf16 tensors, bf16 timestep and guidance (6016)
  // The reference was made on one CPU; bf16 GEMM kernels differ between CPUs (AVX512-BF16/AMX
  // accumulate differently), so the bound is bf16's documented parity tolerance, not bit-equality.
  constexpr double kBf16Tol = 1e-2;
  auto state = model->prepare(in);
  model->run_block(0, state);
  EXPECT_EQ(state.hidden.scalar_type(), at::kBFloat16);
  EXPECT_LE(rel_error(state.hidden, refs.at("output.first_block_out0")), kBf16Tol);
  EXPECT_LE(rel_error(state.context, valid_text_rows(refs.at("output.first_block_out1"),
                                                     in.prompt.attention_mask)),
            kBf16Tol);
  auto out = model->forward(in);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  const double err = rel_error(out, refs.at("output.sample"));
  RecordProperty("rel_error", ::testing::PrintToString(err));
  EXPECT_LE(err, kBf16Tol);
}

TEST(HunyuanTransformer, SingleStreamStateIsViewsOfOneJointTensorAndCachesMayReplaceIt) {
  torch::NoGradGuard no_grad;
  auto model = load_fixture_model(at::kFloat);
  auto in = inputs_from(fixture_io(), "input.");
  const int64_t first_single = model->config().num_layers;

  auto plain = model->prepare(in);
  for (int64_t i = 0; i < model->num_blocks(); ++i) {
    model->run_block(i, plain);
    if (i >= first_single) {
      EXPECT_TRUE(plain.hidden.is_alias_of(plain.context));
      EXPECT_EQ(plain.hidden.size(1), 48);
      EXPECT_EQ(plain.context.size(1), 5);  // the 5 valid of 7 text tokens
    }
  }
  // A cache replacing both streams with fresh tensors between single blocks changes nothing.
  auto replaced = model->prepare(in);
  for (int64_t i = 0; i < model->num_blocks(); ++i) {
    model->run_block(i, replaced);
    replaced.hidden = replaced.hidden + 0.0;
    replaced.context = replaced.context.clone();
  }
  EXPECT_TRUE(at::equal(model->finish(replaced), model->finish(plain)));
}

TEST(HunyuanTransformer, TeacacheSignalIsBlockZeroModulatedInput) {
  torch::NoGradGuard no_grad;
  auto model = load_fixture_model(at::kFloat);
  auto state = model->prepare(inputs_from(fixture_io(), "input."));
  auto signal = model->teacache_signal(state);  // [B, N, D]
  // x̂ = LN(x) * (1 + scale_msa) + shift_msa, with chunks 0 and 1 of norm1.linear(silu(temb)).
  auto& lin = model->transformer_blocks[0]->norm1->linear;
  auto mod = at::linear(at::silu(state.temb), lin->weight, lin->bias).chunk(6, 1);
  auto ln = at::layer_norm(state.hidden, {state.hidden.size(-1)}, {}, {}, 1e-6);
  auto expected = ln * (1 + mod[1].unsqueeze(1)) + mod[0].unsqueeze(1);
  EXPECT_LE(rel_error(signal, expected), 1e-6);
}

// §2.3 summed by hand for D=3072, M=12288, text 4096, pooled 768, 20 dual, 40 single, 2 refiner.
TEST(HunyuanTransformer, ReleasedPresetHasTheParameterCountOfSection2_3) {
  const int64_t D = 3072, M = 12288, T = 4096, P = 768, Dh = 128;
  auto lin = [](int64_t in, int64_t out) { return in * out + out; };
  const int64_t timestep_embedder = lin(256, D) + lin(D, D);
  int64_t expected = D * 16 * 1 * 2 * 2 + D;              // x_embedder
  expected += timestep_embedder + lin(T, D) + lin(D, D);  // refiner temb
  expected += lin(T, D);                                  // proj_in
  expected += 2 * (2 * D + 4 * lin(D, D) + 2 * D + lin(D, M) + lin(M, D) + lin(D, 2 * D));
  expected += 2 * timestep_embedder + lin(P, D) + lin(D, D);  // temb
  expected += 20 * (2 * lin(D, 6 * D) + 8 * lin(D, D) + 4 * Dh + 2 * (lin(D, M) + lin(M, D)));
  expected += 40 * (3 * lin(D, D) + 2 * Dh + lin(D, 3 * D) + lin(D, M) + lin(D + M, D));
  expected += lin(D, 2 * D) + lin(D, 64);  // output

  HunyuanVideoTransformer3DModel model(hunyuan_video_preset("hunyuan-video"),
                                       at::TensorOptions().device(at::kMeta).dtype(at::kBFloat16));
  int64_t count = 0;
  for (const auto& p : model->parameters()) count += p.numel();
  EXPECT_EQ(count, expected);
  EXPECT_GT(count, 12'800'000'000);
  EXPECT_LT(count, 12'900'000'000);
  EXPECT_EQ(model->num_blocks(), 60);
}

TEST(HunyuanTransformer, TinyPresetRunsInBf16AndFp16OnCpu) {
  torch::NoGradGuard no_grad;
  const auto config = hunyuan_video_preset("hunyuan-video-tiny");
  for (auto dtype : {at::kBFloat16, at::kHalf}) {
    HunyuanVideoTransformer3DModel model(config, at::TensorOptions().dtype(dtype));
    random_init(*model, 7);
    at::manual_seed(0);
    TransformerInputs in;
    in.latents = at::randn({2, config.in_channels, 2, 4, 4});
    in.timestep = at::tensor({1000.0f, 500.0f});
    in.guidance = at::tensor({6016.0f, 6016.0f});
    in.prompt.embeds = at::randn({2, 5, config.text_embed_dim}).to(dtype);
    in.prompt.attention_mask = at::tensor({1, 1, 1, 0, 0, 1, 1, 1, 1, 1}).reshape({2, 5});
    in.prompt.pooled = at::randn({2, config.pooled_projection_dim}).to(dtype);
    auto out = model->forward(in);
    EXPECT_EQ(out.sizes(), in.latents.sizes());
    EXPECT_EQ(out.scalar_type(), dtype);
    EXPECT_TRUE(at::isfinite(out).all().item<bool>()) << c10::toString(dtype);
  }
}

TEST(HunyuanTransformer, TrainedTinyShapesModelLoadsByKeyAndRuns) {
  torch::NoGradGuard no_grad;
  const std::string dir = testing::source_dir() + "/assets/tiny-shapes";
  auto config = HunyuanVideoConfig::from_file(dir + "/transformer/config.json");
  EXPECT_EQ(config.in_channels, 8);
  EXPECT_EQ(config.rope_axes_dim, (std::vector<int64_t>{8, 12, 12}));
  HunyuanVideoTransformer3DModel model(config, at::TensorOptions().dtype(at::kBFloat16));
  load_module(*model, Checkpoint::open(dir + "/transformer"));  // throws on any key mismatch
  auto prompt = load_safetensors(dir + "/prompt_0.safetensors");
  TransformerInputs in;
  in.latents = at::randn({1, 8, 3, 4, 4}).to(at::kBFloat16);
  in.timestep = at::tensor({1000.0f});
  in.guidance = at::tensor({6016.0f}).to(at::kBFloat16);
  in.prompt.embeds = prompt.at("prompt_embeds");
  in.prompt.attention_mask = prompt.at("prompt_attention_mask");
  in.prompt.pooled = prompt.at("pooled_prompt_embeds");
  auto out = model->forward(in);
  EXPECT_EQ(out.sizes(), in.latents.sizes());
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
}

TEST(HunyuanTransformer, RopeTablesInStateMatchHandComputation) {
  torch::NoGradGuard no_grad;
  auto model = load_fixture_model(at::kFloat);  // rope (4, 6, 6), theta 256, latents F3 H8 W8
  auto state = model->prepare(inputs_from(fixture_io(), "input."));
  const auto& st = hunyuan_video_state(state);
  EXPECT_EQ(st.grid, (std::array<int64_t, 3>{3, 4, 4}));
  ASSERT_EQ(st.rope_cos.sizes(), (at::IntArrayRef{48, 16}));
  // Token (t, h, w) = (2, 1, 3) is index (2 * 4 + 1) * 4 + 3 = 39.
  const int t = 2, h = 1, w = 3, token = 39;
  auto angle = [](double pos, int i, int dim) { return pos / std::pow(256.0, 2.0 * i / dim); };
  EXPECT_NEAR(st.rope_cos[token][2].item<double>(), std::cos(angle(t, 1, 4)), 1e-6);
  EXPECT_NEAR(st.rope_sin[token][5].item<double>(), std::sin(angle(h, 0, 6)), 1e-6);
  EXPECT_NEAR(st.rope_sin[token][8].item<double>(), std::sin(angle(h, 2, 6)), 1e-6);
  EXPECT_NEAR(st.rope_cos[token][15].item<double>(), std::cos(angle(w, 2, 6)), 1e-6);
  // The 2 padded of 7 text tokens are dropped, so the joint attention needs no key mask.
  EXPECT_EQ(state.context.size(1), 5);
  EXPECT_FALSE(st.key_mask.defined());
}

TEST(HunyuanTransformer, BadInputsNameTheTensor) {
  torch::NoGradGuard no_grad;
  const auto config = hunyuan_video_preset("hunyuan-video-tiny");
  HunyuanVideoTransformer3DModel model(config, at::kFloat);
  random_init(*model, 1);
  TransformerInputs in;
  in.latents = at::randn({1, config.in_channels, 1, 4, 4});
  in.timestep = at::tensor({10.0f});
  in.guidance = at::tensor({10.0f});
  in.prompt.embeds = at::randn({1, 3, config.text_embed_dim});
  in.prompt.pooled = at::randn({1, config.pooled_projection_dim});
  EXPECT_NO_THROW(model->forward(in));  // no mask: every token valid
  auto expect_error = [&](TransformerInputs bad, const std::string& name) {
    try {
      model->prepare(bad);
      ADD_FAILURE() << "no error for " << name;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
    }
  };
  auto bad = in;
  bad.latents = at::randn({1, 3, 1, 4, 4});
  expect_error(bad, "latents");
  bad = in;
  bad.latents = at::randn({1, config.in_channels, 1, 5, 4});
  expect_error(bad, "latents");
  bad = in;
  bad.prompt.embeds = at::randn({1, 3, 7});
  expect_error(bad, "prompt.embeds");
  bad = in;
  bad.prompt.pooled = at::Tensor();
  expect_error(bad, "prompt.pooled");
  bad = in;
  bad.guidance = at::Tensor();
  expect_error(bad, "guidance");
  bad = in;
  bad.prompt.attention_mask = at::ones({1, 4}, at::kBool);
  expect_error(bad, "prompt.attention_mask");
}

TEST(HunyuanVideoConfig, ReadsDiffusersConfigAndRejectsWrongTypes) {
  const std::string src = "transformer/config.json";
  auto j = nlohmann::json::parse(R"({"_class_name": "HunyuanVideoTransformer3DModel",
    "in_channels": 4, "out_channels": null, "num_attention_heads": 2, "attention_head_dim": 16,
    "rope_axes_dim": [4, 6, 6], "image_condition_type": null, "some_future_key": [1, 2]})");
  auto c = HunyuanVideoConfig::from_json(j, src);
  EXPECT_EQ(c.in_channels, 4);
  EXPECT_EQ(c.out_channels, 4);
  EXPECT_EQ(c.inner_dim(), 32);
  EXPECT_EQ(c.num_layers, 20);  // released default where the file is silent
  EXPECT_EQ(c.mlp_dim(), 128);

  auto expect_input_error = [&](nlohmann::json bad, const std::string& key) {
    try {
      HunyuanVideoConfig::from_json(bad, src);
      ADD_FAILURE() << "no error for " << key;
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find(src), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    }
  };
  auto bad = j;
  bad["num_layers"] = "20";
  expect_input_error(bad, "num_layers");
  bad = j;
  bad["mlp_ratio"] = true;
  expect_input_error(bad, "mlp_ratio");
  bad = j;
  bad["rope_axes_dim"] = {16, 56, 56};  // does not sum to head_dim 16
  expect_input_error(bad, "rope_axes_dim");
  bad = j;
  bad["guidance_embeds"] = 1;
  expect_input_error(bad, "guidance_embeds");
  bad = j;
  bad["image_condition_type"] = "latent_concat";
  EXPECT_THROW(HunyuanVideoConfig::from_json(bad, src), Unsupported);

  const auto released = hunyuan_video_preset("hunyuan-video");
  EXPECT_EQ(released.inner_dim(), 3072);
  EXPECT_EQ(released.rope_axes_dim, (std::vector<int64_t>{16, 56, 56}));
  try {
    hunyuan_video_preset("hunyuan-video-xl");
    ADD_FAILURE() << "unknown preset accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("hunyuan-video-tiny"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ditbench
