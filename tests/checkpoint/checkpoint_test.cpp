// Checkpoint (single, sharded, folder), load_module and random_init.
#include "models/checkpoint/checkpoint.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <torch/nn/modules/container/modulelist.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "models/common/error.h"
#include "test_util.h"

namespace ditbench {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no InputError";
  return "";
}

bool has(const std::string& message, const std::string& part) {
  return message.find(part) != std::string::npos;
}

std::string hunyuan_model_dir() {
  return testing::fixtures_dir() + "/diffusers/hunyuan_video/model";
}

// ---- the sharded HunyuanVideo fixture (20 shards + index, written by diffusers) ----

// Expected values computed with Python:
//   from safetensors.torch import load_file
//   t = load_file(weight_map[key])[key]; t.double().sum().item(), t.double().abs().sum().item()
struct ExpectedTensor {
  const char* key;
  std::vector<int64_t> shape;
  double sum, abs_sum;
};
const std::vector<ExpectedTensor> kHunyuanExpected = {
    {"x_embedder.proj.weight", {32, 4, 1, 2, 2}, 7.995259163042647, 102.58024474613194},
    {"transformer_blocks.0.attn.to_q.weight", {32, 32}, 13.24637971532502, 147.50543265061424},
    {"proj_out.bias", {16}, 0.021292864345014095, 0.2967094397172332},
    {"context_embedder.proj_in.bias", {32}, -0.05392970493994653, 0.47878565301653},
};

void expect_hunyuan(const Checkpoint& ckpt) {
  std::ifstream in(hunyuan_model_dir() + "/diffusion_pytorch_model.safetensors.index.json");
  const auto weight_map = nlohmann::json::parse(in).at("weight_map");
  EXPECT_EQ(ckpt.size(), weight_map.size());
  EXPECT_EQ(ckpt.keys().size(), 138u);  // len(weight_map) in Python
  EXPECT_EQ(ckpt.files().size(), 20u);
  for (const auto& expected : kHunyuanExpected) {
    SCOPED_TRACE(expected.key);
    ASSERT_TRUE(ckpt.contains(expected.key));
    EXPECT_EQ(ckpt.shape(expected.key), expected.shape);
    EXPECT_EQ(ckpt.dtype(expected.key), at::kFloat);
    const auto t = ckpt.tensor(expected.key).to(at::kDouble);
    EXPECT_NEAR(t.sum().item<double>(), expected.sum, 1e-9);
    EXPECT_NEAR(t.abs().sum().item<double>(), expected.abs_sum, 1e-9);
  }
}

TEST(Checkpoint, ShardedFixtureByFolder) { expect_hunyuan(Checkpoint::open(hunyuan_model_dir())); }

TEST(Checkpoint, ShardedFixtureByIndexPath) {
  expect_hunyuan(
      Checkpoint::open(hunyuan_model_dir() + "/diffusion_pytorch_model.safetensors.index.json"));
}

TEST(Checkpoint, SingleFileFolderAndFile) {
  TempDir dir;
  const auto weights = at::randn({4, 3});
  save_safetensors(dir.file("diffusion_pytorch_model.safetensors"), {{"w", weights}});
  for (const auto& path : {dir.path().string(), dir.file("diffusion_pytorch_model.safetensors")}) {
    const auto ckpt = Checkpoint::open(path);
    EXPECT_EQ(ckpt.keys(), (std::vector<std::string>{"w"}));
    EXPECT_TRUE(at::equal(ckpt.tensor("w"), weights));
  }
}

TEST(Checkpoint, FolderWithoutCheckpointAndMissingPath) {
  TempDir dir;
  std::ofstream(dir.file("config.json")) << "{}";
  EXPECT_TRUE(has(error_of([&] { Checkpoint::open(dir.path().string()); }), dir.path().string()));
  EXPECT_TRUE(has(error_of([&] { Checkpoint::open(dir.file("nothing_here")); }), "nothing_here"));
}

// A two-shard checkpoint written here: a.* in shard 1, b.* in shard 2.
void write_two_shards(const TempDir& dir, const nlohmann::json& weight_map) {
  save_safetensors(dir.file("model-00001-of-00002.safetensors"),
                   {{"a.weight", at::ones({2, 2})}, {"a.bias", at::zeros({2})}});
  save_safetensors(dir.file("model-00002-of-00002.safetensors"), {{"b.weight", at::ones({3})}});
  std::ofstream(dir.file("model.safetensors.index.json"))
      << nlohmann::json{{"metadata", {{"total_size", 40}}}, {"weight_map", weight_map}}.dump();
}

const nlohmann::json kTwoShardMap = {{"a.weight", "model-00001-of-00002.safetensors"},
                                     {"a.bias", "model-00001-of-00002.safetensors"},
                                     {"b.weight", "model-00002-of-00002.safetensors"}};

TEST(Checkpoint, ShardedTensorsComeFromTheirShard) {
  TempDir dir;
  write_two_shards(dir, kTwoShardMap);
  const auto ckpt = Checkpoint::open(dir.path().string());
  EXPECT_EQ(ckpt.keys(), (std::vector<std::string>{"a.bias", "a.weight", "b.weight"}));
  EXPECT_EQ(ckpt.shape("b.weight"), (std::vector<int64_t>{3}));
  EXPECT_TRUE(at::equal(ckpt.tensor("a.weight"), at::ones({2, 2})));
}

TEST(Checkpoint, IndexNamingAbsentShard) {
  TempDir dir;
  auto map = kTwoShardMap;
  map["c.weight"] = "model-00003-of-00003.safetensors";
  write_two_shards(dir, map);
  const auto message = error_of([&] { Checkpoint::open(dir.path().string()); });
  EXPECT_TRUE(has(message, "model-00003-of-00003.safetensors")) << message;
  EXPECT_TRUE(has(message, "model.safetensors.index.json")) << message;
}

TEST(Checkpoint, IndexKeyAbsentFromItsShard) {
  TempDir dir;
  auto map = kTwoShardMap;
  map["b.bias"] = "model-00002-of-00002.safetensors";
  write_two_shards(dir, map);
  const auto message = error_of([&] { Checkpoint::open(dir.path().string()); });
  EXPECT_TRUE(has(message, "'b.bias'")) << message;
  EXPECT_TRUE(has(message, "model-00002-of-00002.safetensors")) << message;
  EXPECT_TRUE(has(message, "model.safetensors.index.json")) << message;
}

TEST(Checkpoint, IndexNotJsonOrWithoutWeightMap) {
  TempDir dir;
  const auto index = dir.file("x.safetensors.index.json");
  std::ofstream(index) << "{\"weight_map\": ";
  auto message = error_of([&] { Checkpoint::open(index); });
  EXPECT_TRUE(has(message, index) && has(message, "not valid JSON")) << message;
  std::ofstream(index) << R"({"metadata": {}})";
  message = error_of([&] { Checkpoint::open(index); });
  EXPECT_TRUE(has(message, index) && has(message, "weight_map")) << message;
}

// ---- load_module ----

struct BlockImpl : torch::nn::Module {
  BlockImpl() {
    weight = register_parameter("weight", torch::empty({4, 3}));
    bias = register_parameter("bias", torch::empty({4}));
    scale = register_buffer("scale", torch::empty({4}));
  }
  torch::Tensor weight, bias, scale;
};
TORCH_MODULE(Block);

struct TinyNetImpl : torch::nn::Module {
  explicit TinyNetImpl(at::ScalarType dtype = at::kFloat) {
    blocks = register_module("blocks", torch::nn::ModuleList(Block(), Block()));
    norm_weight = register_parameter("norm_weight", torch::empty({3}));
    proj = register_parameter("proj", torch::empty({5, 2, 3, 3}));
    to(dtype);
  }
  torch::nn::ModuleList blocks;
  torch::Tensor norm_weight, proj;
};
TORCH_MODULE(TinyNet);

// Values for every key of TinyNet, in double so loading must convert.
std::map<std::string, at::Tensor> tiny_net_weights() {
  at::manual_seed(3);
  std::map<std::string, at::Tensor> w;
  for (const char* block : {"blocks.0.", "blocks.1."}) {
    w[std::string(block) + "weight"] = at::randn({4, 3}, at::kDouble);
    w[std::string(block) + "bias"] = at::randn({4}, at::kDouble);
    w[std::string(block) + "scale"] = at::randn({4}, at::kDouble);
  }
  w["norm_weight"] = at::randn({3}, at::kDouble);
  w["proj"] = at::randn({5, 2, 3, 3}, at::kDouble);
  return w;
}

TEST(LoadModule, FillsNestedParametersAndBuffersConvertingDtype) {
  TempDir dir;
  auto weights = tiny_net_weights();
  weights["encoder.conv.weight"] = at::ones({2});  // ignored by prefix
  save_safetensors(dir.file("w.safetensors"), weights);
  TinyNet net(at::kBFloat16);
  load_module(*net, Checkpoint::open(dir.file("w.safetensors")), {"encoder."});

  std::map<std::string, at::Tensor> loaded;
  for (const auto& p : net->named_parameters()) loaded[p.key()] = p.value();
  for (const auto& b : net->named_buffers()) loaded[b.key()] = b.value();
  EXPECT_EQ(loaded.size(), 8u);  // 2 blocks x (weight, bias, scale) + norm_weight + proj
  for (const auto& [name, value] : loaded) {
    SCOPED_TRACE(name);
    EXPECT_EQ(value.scalar_type(), at::kBFloat16);
    EXPECT_TRUE(at::equal(value, weights.at(name).to(at::kBFloat16)));
  }
  EXPECT_TRUE(
      net->blocks[1]->as<BlockImpl>()->scale.equal(weights.at("blocks.1.scale").to(at::kBFloat16)));
}

TEST(LoadModule, ReportsMissingUnexpectedAndMismatchedTogether) {
  TempDir dir;
  auto weights = tiny_net_weights();
  weights.erase("blocks.1.bias");                         // missing
  weights["blocks.2.weight"] = at::ones({4, 3});          // unexpected
  weights["proj"] = at::ones({5, 3, 3, 3}, at::kDouble);  // shape mismatch
  const auto path = dir.file("bad.safetensors");
  save_safetensors(path, weights);
  TinyNet net;
  {
    torch::NoGradGuard no_grad;
    net->norm_weight.fill_(-5.0);
  }
  const auto message = error_of([&] { load_module(*net, Checkpoint::open(path)); });
  EXPECT_TRUE(has(message, path)) << message;
  EXPECT_TRUE(has(message, "1 missing key: blocks.1.bias")) << message;
  EXPECT_TRUE(has(message, "1 unexpected key: blocks.2.weight")) << message;
  EXPECT_TRUE(has(message, "proj (checkpoint [5, 3, 3, 3], module [5, 2, 3, 3])")) << message;
  // Nothing was copied.
  EXPECT_TRUE(at::equal(net->norm_weight, at::full({3}, -5.0)));
}

TEST(LoadModule, TruncatesLongKeyLists) {
  TempDir dir;
  std::map<std::string, at::Tensor> weights = tiny_net_weights();
  for (int i = 0; i < 30; ++i) weights["extra." + std::to_string(i)] = at::zeros({1});
  const auto path = dir.file("extra.safetensors");
  save_safetensors(path, weights);
  TinyNet net;
  const auto message = error_of([&] { load_module(*net, Checkpoint::open(path)); });
  EXPECT_TRUE(has(message, "30 unexpected keys")) << message;
  EXPECT_TRUE(has(message, "and 18 more")) << message;
  EXPECT_LT(message.size(), 600u) << message;
}

TEST(LoadModule, LoadsTheShardedFixtureIntoAModuleOfItsKeys) {
  // A module whose parameters are exactly the fixture's keys: loading must touch every shard.
  const auto ckpt = Checkpoint::open(hunyuan_model_dir());
  auto root = std::make_shared<torch::nn::Module>();
  std::map<std::string, std::shared_ptr<torch::nn::Module>> children;
  for (const auto& key : ckpt.keys()) {
    // Walk/create the dotted path of submodules, then the leaf parameter.
    auto module = root;
    std::string prefix;
    size_t start = 0, dot;
    while ((dot = key.find('.', start)) != std::string::npos) {
      const auto part = key.substr(start, dot - start);
      prefix += part + ".";
      auto& child = children[prefix];
      if (!child) child = module->register_module(part, std::make_shared<torch::nn::Module>());
      module = child;
      start = dot + 1;
    }
    module->register_parameter(key.substr(start), torch::empty(ckpt.shape(key), at::kDouble));
  }
  load_module(*root, ckpt);
  const auto params = root->named_parameters();
  EXPECT_EQ(params.size(), ckpt.size());
  for (const auto& expected : kHunyuanExpected)
    EXPECT_NEAR(params[expected.key].sum().item<double>(), expected.sum, 1e-9) << expected.key;
}

// ---- random_init ----

TEST(RandomInit, DeterministicPerSeed) {
  TinyNet a, b, c;
  random_init(*a, 42);
  random_init(*b, 42);
  random_init(*c, 43);
  EXPECT_TRUE(at::equal(a->proj, b->proj));
  EXPECT_TRUE(
      at::equal(a->blocks[0]->as<BlockImpl>()->weight, b->blocks[0]->as<BlockImpl>()->weight));
  EXPECT_FALSE(at::equal(a->proj, c->proj));
  // Parameters of the same shape get different values (each is seeded by its name).
  EXPECT_FALSE(
      at::equal(a->blocks[0]->as<BlockImpl>()->weight, a->blocks[1]->as<BlockImpl>()->weight));
}

TEST(RandomInit, BiasesZeroNormWeightsOneBuffersUntouched) {
  TinyNet net;
  auto* block = net->blocks[0]->as<BlockImpl>();
  block->scale.fill_(7.0);  // a buffer: no autograd
  random_init(*net, 1);
  EXPECT_TRUE(at::equal(block->bias, at::zeros({4})));
  EXPECT_TRUE(at::equal(net->norm_weight, at::ones({3})));
  EXPECT_TRUE(at::equal(block->scale, at::full({4}, 7.0)));
}

TEST(RandomInit, StdIsOneOverSqrtFanIn) {
  struct WideImpl : torch::nn::Module {
    WideImpl() {
      linear = register_parameter("linear_weight", torch::empty({256, 512}));
      conv = register_parameter("conv_weight", torch::empty({128, 8, 3, 3, 3}));  // fan_in 216
    }
    torch::Tensor linear, conv;
  };
  WideImpl wide;
  random_init(wide, 5);
  EXPECT_NEAR(wide.linear.std().item<double>(), 1.0 / std::sqrt(512.0), 0.02 / std::sqrt(512.0));
  EXPECT_NEAR(wide.linear.mean().item<double>(), 0.0, 0.01 / std::sqrt(512.0) * 5);
  EXPECT_NEAR(wide.conv.std().item<double>(), 1.0 / std::sqrt(216.0), 0.02 / std::sqrt(216.0));
}

TEST(RandomInit, LowPrecisionHoldsRoundedFloat32Values) {
  TinyNet full, half(at::kBFloat16);
  random_init(*full, 9);
  random_init(*half, 9);
  EXPECT_EQ(half->proj.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(half->proj, full->proj.to(at::kBFloat16)));
}

TEST(RandomInit, LeavesTheGlobalGeneratorAlone) {
  at::manual_seed(11);
  const auto expected = at::randn({8});
  at::manual_seed(11);
  TinyNet net;
  random_init(*net, 3);
  EXPECT_TRUE(at::equal(at::randn({8}), expected));
}

// ---- on a GPU (skipped where none is present) ----

TEST(CheckpointCuda, LoadModuleCopiesIntoGpuParametersConvertingDtype) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  TempDir dir;
  const auto weights = tiny_net_weights();
  save_safetensors(dir.file("w.safetensors"), weights);
  TinyNet net(at::kBFloat16);
  net->to(at::Device(at::kCUDA, 0));
  load_module(*net, Checkpoint::open(dir.file("w.safetensors")));
  EXPECT_TRUE(net->proj.is_cuda());
  EXPECT_TRUE(at::equal(net->proj.cpu(), weights.at("proj").to(at::kBFloat16)));
  EXPECT_TRUE(at::equal(net->blocks[1]->as<BlockImpl>()->scale.cpu(),
                        weights.at("blocks.1.scale").to(at::kBFloat16)));
  // Saving GPU tensors moves them to the host one by one.
  save_safetensors(dir.file("back.safetensors"), {{"proj", net->proj}});
  EXPECT_TRUE(
      at::equal(load_safetensors(dir.file("back.safetensors")).at("proj"), net->proj.cpu()));
}

TEST(CheckpointCuda, RandomInitOnGpuIsDeterministicWithTheRightStd) {
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  const auto cuda = at::Device(at::kCUDA, 0);
  struct WideImpl : torch::nn::Module {
    WideImpl() { weight = register_parameter("weight", torch::empty({512, 1024})); }
    torch::Tensor weight;
  };
  WideImpl a, b, c;
  a.to(cuda);
  b.to(cuda, at::kBFloat16);
  c.to(cuda);
  at::manual_seed(11);
  const auto expected = at::randn({8}, at::TensorOptions().device(cuda));
  at::manual_seed(11);
  random_init(a, 21);
  random_init(b, 21);
  random_init(c, 22);
  EXPECT_TRUE(at::equal(at::randn({8}, at::TensorOptions().device(cuda)), expected));
  EXPECT_TRUE(a.weight.is_cuda());
  EXPECT_TRUE(at::equal(b.weight, a.weight.to(at::kBFloat16)));
  EXPECT_FALSE(at::equal(a.weight, c.weight));
  WideImpl again;
  again.to(cuda);
  random_init(again, 21);
  EXPECT_TRUE(at::equal(again.weight, a.weight));
  EXPECT_NEAR(a.weight.std().item<double>(), 1.0 / 32.0, 0.01 / 32.0);
  EXPECT_NEAR(a.weight.mean().item<double>(), 0.0, 0.01 / 32.0);
}

}  // namespace
}  // namespace ditbench
