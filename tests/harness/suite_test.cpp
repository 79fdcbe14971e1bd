// Suite parsing, validation messages, matrix expansion, skips, baseline, filter and plan text.
// Expected ids and messages are written from the suite format (DESIGN.md and harness/suite.h).
#include "harness/suite.h"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "models/common/error.h"
#include "test_util.h"

namespace ditbench {
namespace {
using nlohmann::json;

json base_suite() {
  return {
      {"preset", "hunyuan-video-tiny"}, {"height", 32}, {"width", 48}, {"frames", 5}, {"steps", 4}};
}

std::vector<RunConfig> expand(const json& doc) {
  return expand_matrix(parse_suite(doc, "suites/suite.json"));
}

// The InputError message parsing + expanding `doc` throws, or "" when it succeeds.
std::string error_of(const json& doc) {
  try {
    expand(doc);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> ids(const std::vector<RunConfig>& configs) {
  std::vector<std::string> out;
  for (const auto& c : configs) out.push_back(c.id);
  return out;
}

const RunConfig& by_id(const std::vector<RunConfig>& configs, const std::string& id) {
  for (const auto& c : configs)
    if (c.id == id) return c;
  throw std::runtime_error("no config " + id);
}

// ---- bad suites: each names the file, the JSON path and what is allowed ----

struct BadSuite {
  const char* label;
  json patch;  // merged into base_suite(); null values remove the key
  std::vector<std::string> expected_parts;
};

class BadSuiteTest : public ::testing::TestWithParam<BadSuite> {};

TEST_P(BadSuiteTest, MessageNamesPathAndAllowedValues) {
  json doc = base_suite();
  doc.merge_patch(GetParam().patch);
  std::string message = error_of(doc);
  ASSERT_FALSE(message.empty()) << "suite was accepted: " << doc.dump();
  EXPECT_EQ(message.rfind("suites/suite.json: ", 0), 0u) << message;
  for (const auto& part : GetParam().expected_parts)
    EXPECT_NE(message.find(part), std::string::npos)
        << "missing \"" << part << "\" in: " << message;
}

const BadSuite kBadSuites[] = {
    {"misspelled_cache",
     {{"axes", {{"cache", {"none", "fbcahe"}}}}},
     {"suites/suite.json: /axes/cache/1: unknown cache \"fbcahe\" (allowed: none, fbcache, "
      "teacache)"}},
    {"unknown_top_key",
     {{"stpes", 3}},
     {"/stpes: unknown key \"stpes\"", "allowed: name,", "steps"}},
    {"height_not_multiple", {{"height", 40}}, {"/height: 40 is not a multiple of 16"}},
    {"frames_rule", {{"frames", 6}}, {"/frames: 6 frames", "4k + 1"}},
    {"zero_steps", {{"steps", 0}}, {"/steps: must be >= 1, got 0"}},
    {"missing_width", {{"width", nullptr}}, {"/width: missing required key"}},
    {"bad_dtype",
     {{"dtype", "fp32"}},
     {"/dtype: unknown dtype \"fp32\" (allowed: float32, bfloat16, float16)"}},
    {"bad_device",
     {{"device", "gpu"}},
     {"/device: unknown device \"gpu\" (allowed: auto, cpu, cuda)"}},
    {"preset_and_checkpoint",
     {{"checkpoint", "x"}},
     {"both \"preset\" and \"checkpoint\"", "exactly one"}},
    {"unknown_preset",
     {{"preset", "hunyuan-tiny"}},
     // No "model" key: every family's presets are allowed, each family's in its own order.
     {"/preset: unknown preset \"hunyuan-tiny\" (allowed: hunyuan-video, hunyuan-video-tiny, ",
      "flux-dev, flux-schnell, flux-tiny", "wan2.1-t2v-14b, wan2.1-t2v-1.3b, wan-tiny"}},
    {"unknown_model",
     {{"model", "flux-dev"}},
     {"/model: unknown model \"flux-dev\" (allowed: hunyuan-video, cogvideox, wan, mochi, flux)"}},
    {"unknown_attention",
     {{"axes", {{"attention", {"flash2"}}}}},
     {"/axes/attention/0: unknown attention backend \"flash2\" (allowed: math, sdpa, flash, "
      "efficient, cudnn, cudnn_fp8, cutlass_fmha)"}},
    {"unknown_quant",
     {{"axes", {{"quant", {"none", "int8"}}}}},
     {"/axes/quant/1: unknown quant mode \"int8\" (allowed: none, fp8_dynamic, fp8_weight_only)"}},
    {"unknown_cp_mode",
     {{"axes", {{"cp_mode", "tensor"}}}},
     {"/axes/cp_mode: unknown cp_mode \"tensor\" (allowed: none, ulysses, ring, usp)"}},
    {"threshold_out_of_range",
     {{"axes", {{"cache", {"fbcache"}}, {"cache_threshold", {0.1, 12}}}}},
     {"/axes/cache_threshold/1: threshold 12 outside [0, 10]"}},
    {"threshold_for_absent_cache",
     {{"axes", {{"cache", {"none", "fbcache"}}, {"cache_threshold", {{"teacache", {0.1}}}}}}},
     {"/axes/cache_threshold/teacache: cache \"teacache\" is not on the cache axis (allowed: "
      "fbcache)"}},
    {"threshold_without_cache",
     {{"axes", {{"cache_threshold", {0.1}}}}},
     {"/axes/cache_threshold: thresholds given but the cache axis has no cache"}},
    {"zero_gpus", {{"axes", {{"gpus", {1, 0}}}}}, {"/axes/gpus/1: must be >= 1, got 0"}},
    {"unknown_axis",
     {{"axes", {{"cp", {"ulysses"}}}}},
     {"/axes/cp: unknown key \"cp\"", "cp_mode", "ring_degree"}},
    {"empty_axis", {{"axes", {{"quant", json::array()}}}}, {"/axes/quant: empty list"}},
    {"non_bool_axis",
     {{"axes", {{"cfg_parallel", {"yes"}}}}},
     {"/axes/cfg_parallel/0: expected true or false"}},
    {"zero_repeats", {{"repeats", 0}}, {"/repeats: must be >= 1, got 0"}},
    {"negative_warmup", {{"warmup", -1}}, {"/warmup: must be >= 0, got -1"}},
    {"weights_checkpoint_without_folder",
     {{"weights", "checkpoint"}},
     {"/weights: \"checkpoint\" needs a \"checkpoint\" folder"}},
    {"prompt_valid_exceeds_tokens",
     {{"prompt", {{"tokens", 10}, {"valid", 20}}}},
     {"/prompt/valid: 20 valid tokens exceed tokens = 10"}},
    {"prompt_unknown_key",
     {{"prompt", {{"length", 10}}}},
     {"/prompt/length: unknown key", "allowed: tokens, valid"}},
    {"cache_options_unknown_key",
     {{"cache_options", {{"warmup", 1}}}},
     {"/cache_options/warmup: unknown key \"warmup\" (allowed: warmup_steps, max_cached_steps, "
      "max_consecutive_cached)"}},
    {"teacache_coefficients_unknown",
     {{"teacache_coefficients", "flux-pro"}},
     {"/teacache_coefficients: TeaCache coefficients 'flux-pro': not a known set (",
      "hunyuan-video", "five comma-separated numbers"}},
    {"timeout_zero", {{"timeout_s", 0}}, {"/timeout_s: must be > 0"}},
    {"noise_missing", {{"noise", "no_such_noise.safetensors"}}, {"/noise: file", "does not exist"}},
    {"baseline_value_not_on_axis",
     {{"baseline", {{"cache", "teacache"}}}, {"axes", {{"cache", {"none", "fbcache"}}}}},
     {"/baseline/cache: \"teacache\" is not on the suite's cache axis (allowed: none, fbcache)"}},
    {"baseline_threshold_not_in_suite",
     {{"baseline", {{"cache", "fbcache"}, {"cache_threshold", 0.2}}},
      {"axes", {{"cache", {"fbcache"}}, {"cache_threshold", {0.05, 0.1}}}}},
     {"/baseline/cache_threshold: 0.2 is not a fbcache threshold of the suite (allowed: 0.05, "
      "0.1)"}},
    {"baseline_unknown_axis",
     {{"baseline", {{"atn", "sdpa"}}}},
     {"/baseline/atn: unknown key", "attention"}},
    {"baseline_is_skipped",
     {{"baseline", {{"gpus", 2}}}, {"axes", {{"gpus", {1, 2}}}}},
     {"/baseline: the baseline config cache=none/attn=sdpa/quant=none/gpus=2 cannot run: gpus=2 "
      "needs a cp_mode"}},
    {"wrong_type_height",
     {{"height", "32"}},
     {"/height: expected an integer >= 1, got string \"32\""}},
};

INSTANTIATE_TEST_SUITE_P(Suite, BadSuiteTest, ::testing::ValuesIn(kBadSuites),
                         [](const auto& info) { return std::string(info.param.label); });

TEST(SuiteTest, MissingCheckpointFolderIsNamed) {
  json doc = base_suite();
  doc.erase("preset");
  doc["model"] = "hunyuan-video";
  doc["checkpoint"] = "no/such/folder";
  std::string message = error_of(doc);
  EXPECT_NE(message.find("/checkpoint: folder \"suites/no/such/folder\" does not exist"),
            std::string::npos)
      << message;
}

TEST(SuiteTest, UnreadableJsonNamesTheFile) {
  auto path = std::filesystem::temp_directory_path() / "ditbench_bad_suite.json";
  std::ofstream(path) << "{\"steps\": 4,";
  try {
    load_suite(path);
    FAIL() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(path.string() + ": not valid JSON"), std::string::npos);
  }
  std::filesystem::remove(path);
}

// ---- good suites ----

TEST(SuiteTest, DefaultsOfAMinimalSuite) {
  Suite suite = parse_suite(base_suite(), "suites/smoke.json");
  EXPECT_EQ(suite.name, "smoke");
  const RunSettings& s = suite.settings;
  EXPECT_EQ(s.model, "hunyuan-video");  // from the preset
  EXPECT_EQ(s.weights, "random");
  EXPECT_EQ(s.dtype, "bfloat16");
  EXPECT_EQ(s.device, "auto");
  EXPECT_EQ(s.seed, 0);
  EXPECT_DOUBLE_EQ(s.guidance, 6.0);
  EXPECT_EQ(s.warmup, 1);
  EXPECT_EQ(s.repeats, 3);
  EXPECT_TRUE(s.decode);
  EXPECT_TRUE(s.save_frames);
  EXPECT_EQ(s.prompt.describe(), "synthetic:256/256");
  EXPECT_FALSE(s.timeout_s.has_value());

  auto configs = expand_matrix(suite);
  ASSERT_EQ(configs.size(), 1u);
  EXPECT_EQ(configs[0].id, "cache=none/attn=sdpa/quant=none/gpus=1");
  EXPECT_TRUE(configs[0].baseline);
  EXPECT_FALSE(configs[0].skipped());
  EXPECT_EQ(configs[0].suite, "smoke");
}

TEST(SuiteTest, TeaCacheCoefficientsByNameOrNumbers) {
  json doc = base_suite();
  doc["teacache_coefficients"] = "hunyuan-video";
  EXPECT_EQ(parse_suite(doc, "s.json").settings.teacache_coefficients, "hunyuan-video");
  doc["teacache_coefficients"] = "1, -2, 3, 0.5, 0.01";
  EXPECT_EQ(parse_suite(doc, "s.json").settings.teacache_coefficients, "1, -2, 3, 0.5, 0.01");
}

TEST(SuiteTest, CheckpointResolvesAgainstTheSuiteFolder) {
  // root/suites/tiny.json names "../ckpt", a diffusers-style folder with transformer/ and vae/.
  std::string pattern = (std::filesystem::temp_directory_path() / "ditbench_suite_XXXXXX").string();
  ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
  const std::filesystem::path root = pattern;
  for (const char* sub : {"suites", "ckpt", "ckpt/transformer", "ckpt/vae"})
    std::filesystem::create_directory(root / sub);
  json doc = base_suite();
  doc.erase("preset");
  doc["model"] = "hunyuan-video";
  doc["checkpoint"] = "../ckpt";
  Suite suite = parse_suite(doc, root / "suites" / "tiny.json");
  const auto expected = root / "ckpt";
  ASSERT_TRUE(suite.settings.checkpoint.has_value());
  EXPECT_EQ(*suite.settings.checkpoint, expected);
  EXPECT_EQ(suite.settings.weights, "checkpoint");  // default when a checkpoint is given
  json config = expand_matrix(suite)[0].to_json();
  EXPECT_EQ(config["weights"], expected.string());
  EXPECT_EQ(config["preset"], "");

  // Without vae/ the suite must not decode.
  std::filesystem::remove(root / "ckpt" / "vae");
  EXPECT_THROW(parse_suite(doc, root / "suites" / "tiny.json"), InputError);
  doc["decode"] = false;
  EXPECT_NO_THROW(parse_suite(doc, root / "suites" / "tiny.json"));

  // Flat removals only: libtorch.so's exported fs::remove_all crashes.
  for (const char* sub : {"ckpt/transformer", "ckpt", "suites", ""})
    std::filesystem::remove(root / sub);
}

TEST(SuiteTest, MatrixSizeIsTheProductWithOneConfigForCacheNone) {
  json doc = base_suite();
  doc["axes"] = {{"cache", {"none", "fbcache", "teacache"}},
                 {"cache_threshold", {0.05, 0.1}},
                 {"attention", {"sdpa", "math"}},
                 {"quant", {"none", "fp8_dynamic"}}};
  auto configs = expand(doc);
  // (none + 2 fbcache thresholds + 2 teacache thresholds) x 2 attention x 2 quant
  EXPECT_EQ(configs.size(), 20u);
  int baselines = 0;
  for (const auto& c : configs) {
    EXPECT_FALSE(c.skipped()) << c.id;
    baselines += c.baseline;
    EXPECT_EQ(c.axes.cache_threshold.has_value(), c.axes.cache != "none") << c.id;
  }
  EXPECT_EQ(baselines, 1);
  EXPECT_TRUE(configs.front().baseline);
  EXPECT_EQ(configs.front().id, "cache=none/attn=sdpa/quant=none/gpus=1");
}

TEST(SuiteTest, ThresholdsPerCache) {
  json doc = base_suite();
  doc["axes"] = {{"cache", {"none", "fbcache", "teacache"}},
                 {"cache_threshold", {{"fbcache", {0.05, 0.08, 0.1}}, {"teacache", {0.2}}}}};
  EXPECT_EQ(ids(expand(doc)), (std::vector<std::string>{
                                  "cache=none/attn=sdpa/quant=none/gpus=1",
                                  "cache=fbcache/thr=0.05/attn=sdpa/quant=none/gpus=1",
                                  "cache=fbcache/thr=0.08/attn=sdpa/quant=none/gpus=1",
                                  "cache=fbcache/thr=0.1/attn=sdpa/quant=none/gpus=1",
                                  "cache=teacache/thr=0.2/attn=sdpa/quant=none/gpus=1",
                              }));
}

TEST(SuiteTest, CacheWithoutThresholdGetsThePolicyDefault) {
  json doc = base_suite();
  doc["axes"] = {{"cache", {"fbcache", "teacache"}}};
  EXPECT_EQ(ids(expand(doc)), (std::vector<std::string>{
                                  "cache=fbcache/thr=0.06/attn=sdpa/quant=none/gpus=1",
                                  "cache=teacache/thr=0.1/attn=sdpa/quant=none/gpus=1",
                              }));
}

TEST(SuiteTest, ParallelCombinationsBecomeSkipsWithReasons) {
  json doc = base_suite();
  doc["axes"] = {{"gpus", {1, 2}}, {"cp_mode", {"none", "ulysses"}}};
  auto configs = expand(doc);
  ASSERT_EQ(configs.size(), 4u);
  EXPECT_FALSE(by_id(configs, "cache=none/attn=sdpa/quant=none/gpus=1").skipped());
  EXPECT_EQ(by_id(configs, "cache=none/attn=sdpa/quant=none/gpus=1/cp=ulysses/u=1/r=1").skip_reason,
            "cp_mode=ulysses needs more than one GPU (gpus=1)");
  EXPECT_EQ(by_id(configs, "cache=none/attn=sdpa/quant=none/gpus=2").skip_reason,
            "gpus=2 needs a cp_mode (ulysses, ring or usp)");
  const RunConfig& ulysses =
      by_id(configs, "cache=none/attn=sdpa/quant=none/gpus=2/cp=ulysses/u=2/r=1");
  EXPECT_FALSE(ulysses.skipped()) << ulysses.skip_reason;
  EXPECT_EQ(ulysses.axes.ulysses_degree, 2);
  EXPECT_EQ(ulysses.axes.ring_degree, 1);
}

TEST(SuiteTest, RingDerivesItsDegree) {
  json doc = base_suite();
  doc["axes"] = {{"gpus", {4}}, {"cp_mode", {"ring"}}};
  auto configs = expand(doc);
  ASSERT_EQ(configs.size(), 1u);
  EXPECT_EQ(configs[0].id, "cache=none/attn=sdpa/quant=none/gpus=4/cp=ring/u=1/r=4");
  EXPECT_FALSE(configs[0].skipped());
}

TEST(SuiteTest, UspDegreesMustMultiplyToGpus) {
  json doc = base_suite();
  doc["axes"] = {
      {"gpus", {4}}, {"cp_mode", {"usp"}}, {"ulysses_degree", {2, 4}}, {"ring_degree", {2}}};
  auto configs = expand(doc);
  ASSERT_EQ(configs.size(), 2u);
  EXPECT_FALSE(by_id(configs, "cache=none/attn=sdpa/quant=none/gpus=4/cp=usp/u=2/r=2").skipped());
  EXPECT_EQ(by_id(configs, "cache=none/attn=sdpa/quant=none/gpus=4/cp=usp/u=4/r=2").skip_reason,
            "ulysses_degree=4 x ring_degree=2 != gpus=4 for cp_mode=usp");
}

TEST(SuiteTest, UspDerivesTheMissingDegree) {
  json doc = base_suite();
  doc["axes"] = {{"gpus", {4, 8}}, {"cp_mode", {"usp"}}, {"ulysses_degree", {2}}};
  auto configs = expand(doc);
  EXPECT_EQ(ids(configs), (std::vector<std::string>{
                              "cache=none/attn=sdpa/quant=none/gpus=4/cp=usp/u=2/r=2",
                              "cache=none/attn=sdpa/quant=none/gpus=8/cp=usp/u=2/r=4",
                          }));
  for (const auto& c : configs) EXPECT_FALSE(c.skipped()) << c.id << ": " << c.skip_reason;
}

TEST(SuiteTest, CfgParallelOnAModelWithoutCfgIsSkipped) {
  json doc = base_suite();
  doc["axes"] = {{"cfg_parallel", {false, true}}};
  auto configs = expand(doc);
  ASSERT_EQ(configs.size(), 2u);
  EXPECT_FALSE(configs[0].skipped());
  EXPECT_EQ(configs[1].id, "cache=none/attn=sdpa/quant=none/gpus=1/cfgp=on");
  EXPECT_EQ(configs[1].skip_reason,
            "cfg_parallel: hunyuan-video has no classifier-free guidance branches to split");
}

TEST(SuiteTest, DuplicatesAreRemoved) {
  json doc = base_suite();
  doc["axes"] = {{"attention", {"sdpa", "math", "sdpa"}},
                 {"cache", {"none", "fbcache"}},
                 {"cache_threshold", {0.1, 0.1}},
                 {"gpus", {2}},
                 {"cp_mode", {"ulysses"}},
                 {"ulysses_degree", {2}}};  // the degree ulysses derives anyway
  EXPECT_EQ(ids(expand(doc)),
            (std::vector<std::string>{
                "cache=none/attn=sdpa/quant=none/gpus=2/cp=ulysses/u=2/r=1",
                "cache=none/attn=math/quant=none/gpus=2/cp=ulysses/u=2/r=1",
                "cache=fbcache/thr=0.1/attn=sdpa/quant=none/gpus=2/cp=ulysses/u=2/r=1",
                "cache=fbcache/thr=0.1/attn=math/quant=none/gpus=2/cp=ulysses/u=2/r=1",
            }));
}

TEST(SuiteTest, ExplicitBaselineSelectsItsConfig) {
  json doc = base_suite();
  doc["axes"] = {{"cache", {"none", "fbcache"}},
                 {"cache_threshold", {0.05, 0.1}},
                 {"attention", {"sdpa", "math"}}};
  doc["baseline"] = {{"cache", "fbcache"}, {"cache_threshold", 0.1}, {"attention", "math"}};
  auto configs = expand(doc);
  std::vector<std::string> baselines;
  for (const auto& c : configs)
    if (c.baseline) baselines.push_back(c.id);
  EXPECT_EQ(baselines,
            std::vector<std::string>{"cache=fbcache/thr=0.1/attn=math/quant=none/gpus=1"});

  // Axes the baseline leaves out take their first value.
  doc["baseline"] = {{"attention", "math"}};
  baselines.clear();
  for (const auto& c : expand(doc))
    if (c.baseline) baselines.push_back(c.id);
  EXPECT_EQ(baselines, std::vector<std::string>{"cache=none/attn=math/quant=none/gpus=1"});
}

TEST(SuiteTest, ConfigIdsDoNotDependOnHowTheSuiteSpellsDefaults) {
  json plain = base_suite();
  json spelled = base_suite();
  spelled["axes"] = {{"graphs", {false}}, {"cfg_parallel", false}, {"cp_mode", {"none"}},
                     {"gpus", 1},         {"quant", {"none"}},     {"attention", {"sdpa"}},
                     {"cache", {"none"}}};
  EXPECT_EQ(ids(expand(plain)), ids(expand(spelled)));
  AxisValues a;
  a.cache = "teacache";
  a.cache_threshold = 0.15;
  a.attention = "flash";
  a.quant = "fp8_dynamic";
  a.graphs = true;
  EXPECT_EQ(a.config_id(), "cache=teacache/thr=0.15/attn=flash/quant=fp8_dynamic/gpus=1/graphs=on");
}

TEST(SuiteTest, ConfigJsonCarriesTheDesignKeys) {
  json doc = base_suite();
  doc["axes"] = {{"cache", {"fbcache"}}, {"cache_threshold", {0.08}}};
  doc["prompt"] = {{"tokens", 64}, {"valid", 40}};
  doc["cache_options"] = {{"warmup_steps", 1}};
  json config = expand(doc)[0].to_json();
  EXPECT_EQ(config["model"], "hunyuan-video");
  EXPECT_EQ(config["preset"], "hunyuan-video-tiny");
  EXPECT_EQ(config["weights"], "random");
  EXPECT_EQ(config["height"], 32);
  EXPECT_EQ(config["frames"], 5);
  EXPECT_EQ(config["prompt"], "synthetic:64/40");
  EXPECT_EQ(config["cache_options"], (json{{"warmup_steps", 1}}));
  EXPECT_EQ(config["axes"]["cache"], "fbcache");
  EXPECT_DOUBLE_EQ(config["axes"]["cache_threshold"].get<double>(), 0.08);
  EXPECT_EQ(config["axes"]["gpus"], 1);
  EXPECT_EQ(config["axes"]["cfg_parallel"], false);
}

TEST(SuiteTest, FilterMatchesAxisValuesAndSubstrings) {
  json doc = base_suite();
  doc["axes"] = {{"cache", {"none", "fbcache"}},
                 {"cache_threshold", {0.05, 0.1}},
                 {"attention", {"sdpa", "math"}}};
  auto configs = expand(doc);
  EXPECT_EQ(ids(filter_configs(configs, "cache=fbcache thr=0.10")),
            (std::vector<std::string>{"cache=fbcache/thr=0.1/attn=sdpa/quant=none/gpus=1",
                                      "cache=fbcache/thr=0.1/attn=math/quant=none/gpus=1"}));
  EXPECT_EQ(ids(filter_configs(configs, "attention=math,cache=none")),
            (std::vector<std::string>{"cache=none/attn=math/quant=none/gpus=1"}));
  EXPECT_EQ(filter_configs(configs, "thr=0.05").size(), 2u);
  EXPECT_EQ(filter_configs(configs, "attn=sdpa graphs=off gpus=1").size(), 3u);
  EXPECT_EQ(filter_configs(configs, "fbcache/thr=0.05/attn=m").size(), 1u);  // substring
  EXPECT_EQ(filter_configs(configs, "").size(), configs.size());
  EXPECT_TRUE(filter_configs(configs, "graphs=on").empty());
  try {
    filter_configs(configs, "cahce=none");
    FAIL() << "unknown key accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--filter: unknown key \"cahce\""), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("cache_threshold"), std::string::npos);
  }
}

TEST(SuiteTest, PlanTextHasOneLinePerConfig) {
  json doc = base_suite();
  doc["axes"] = {{"cache", {"none", "fbcache"}}, {"gpus", {1, 2}}};
  std::string expected =
      "cache=none/attn=sdpa/quant=none/gpus=1              [baseline]\n"
      "cache=none/attn=sdpa/quant=none/gpus=2              skip: gpus=2 needs a cp_mode (ulysses, "
      "ring or usp)\n"
      "cache=fbcache/thr=0.06/attn=sdpa/quant=none/gpus=1\n"
      "cache=fbcache/thr=0.06/attn=sdpa/quant=none/gpus=2  skip: gpus=2 needs a cp_mode (ulysses, "
      "ring or usp)\n";
  EXPECT_EQ(plan_text(expand(doc)), expected);
}

}  // namespace
}  // namespace ditbench
