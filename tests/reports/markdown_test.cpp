// The Markdown and CSV speedup tables from constructed records (expected text written by hand from
// the records' numbers), and the Pareto front on hand-made points.
#include "reports/markdown.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <tuple>

#include "reports/sweep.h"

namespace ditbench {
namespace {
using nlohmann::json;

constexpr int64_t kGiB = int64_t{1} << 30;

ResultRecord ok_record(const std::string& id, int gpus, double e2e, double denoise, double vae,
                       std::vector<std::vector<double>> steps, int64_t peak_bytes) {
  ResultRecord r;
  r.suite = "speedup-tiny";
  r.config_id = id;
  r.config = {{"model", "hunyuan-video"}, {"weights", "random"}, {"axes", {{"gpus", gpus}}}};
  TimingsRecord t;
  t.e2e = summarize({e2e, e2e + 0.5, e2e - 0.5});
  t.stages["denoise"] = summarize({denoise});
  t.stages["vae_decode"] = summarize({vae});
  t.steps_s = std::move(steps);
  r.timings = t;
  r.peak_bytes = peak_bytes;
  return r;
}

std::vector<ResultRecord> sample_records() {
  std::vector<ResultRecord> records;

  ResultRecord base = ok_record("cache=none/attn=sdpa/quant=none/gpus=1", 1, 10.0, 8.0, 1.5,
                                {{0.8, 0.8, 0.9}, {0.7, 0.8, 0.8}}, 2 * kGiB);
  base.baseline = true;
  base.env = {
      {"gpu", nullptr}, {"torch", "2.11.0"}, {"cuda", nullptr}, {"git", "abc123"}, {"host", "box"}};
  QualityRecord same;
  same.identical = true;
  same.ssim_mean = 1.0;
  same.ssim_min = 1.0;
  base.quality = same;
  records.push_back(base);

  // A failed first attempt of the fbcache config, redone later: the later record counts.
  ResultRecord early;
  early.suite = "speedup-tiny";
  early.config_id = "cache=fbcache/thr=0.06/attn=sdpa/quant=none/gpus=1";
  early.status = RunStatus::kFailed;
  early.reason = "out of memory";
  records.push_back(early);

  ResultRecord teacache = ok_record("cache=teacache/thr=0.1/attn=sdpa/quant=none/gpus=1", 1, 8.0,
                                    6.0, 1.5, {{0.6, 0.6, 0.6, 0.6}}, 2 * kGiB);
  teacache.cache = CacheRecord{"teacache", 0.1, 4, 0, {}};
  QualityRecord tq;
  tq.psnr_mean = 40.0;
  tq.psnr_min = 39.5;
  tq.ssim_mean = 0.99;
  tq.ssim_min = 0.98;
  teacache.quality = tq;
  records.push_back(teacache);

  ResultRecord skipped;
  skipped.suite = "speedup-tiny";
  skipped.config_id = "cache=none/attn=sdpa/quant=none/gpus=2/cp=ulysses/u=2/r=1";
  skipped.config = {{"axes", {{"gpus", 2}}}};
  skipped.status = RunStatus::kSkipped;
  skipped.reason = "needs 2 GPUs, 1 available";
  records.push_back(skipped);

  ResultRecord failed;
  failed.suite = "speedup-tiny";
  failed.config_id = "cache=none/attn=flash/quant=none/gpus=1";
  failed.config = {{"axes", {{"gpus", 1}}}};
  failed.status = RunStatus::kFailed;
  failed.reason = "flash attention needs a CUDA device";
  records.push_back(failed);

  ResultRecord fb = ok_record("cache=fbcache/thr=0.06/attn=sdpa/quant=none/gpus=1", 1, 5.0, 3.5,
                              1.5, {{0.5, 0.25, 0.25, 0.5}}, 3 * kGiB / 2);
  fb.cache = CacheRecord{"fbcache", 0.06, 2, 2, {}};
  QualityRecord fq;
  fq.psnr_mean = 31.234;
  fq.psnr_min = 28.5;
  fq.ssim_mean = 0.95123;
  fq.ssim_min = 0.9;
  fb.quality = fq;
  records.push_back(fb);
  return records;
}

TEST(MarkdownReportTest, GoldenSpeedupTable) {
  // Baseline e2e median 10 s: fbcache at 5 s is 2.00x, teacache at 8 s is 1.25x. Step medians:
  // baseline {0.7, 0.8 x4, 0.9} -> 0.8; fbcache {0.25, 0.25, 0.5, 0.5} -> 0.375.
  const std::string expected =
      "# ditbench report: speedup-tiny\n"
      "\n"
      "Environment: GPU none, torch 2.11.0, CUDA none, git abc123, host box.\n"
      "\n"
      "Baseline: `cache=none/attn=sdpa/quant=none/gpus=1`.\n"
      "\n"
      "> **Note:** random weights: timings exact, quality meaningless for caches.\n"
      "\n"
      "| config | status | e2e median (s) | speedup | denoise (s) | step median (s) | VAE decode "
      "(s) "
      "| PSNR mean/min (dB) | SSIM mean/min | reused/total steps | peak mem (GiB) | GPUs |\n"
      "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
      "| `cache=none/attn=sdpa/quant=none/gpus=1` (baseline) | ok | 10.000 | 1.00x | 8.000 | "
      "0.8000 "
      "| 1.500 | identical | 1.0000 / 1.0000 | — | 2.00 | 1 |\n"
      "| `cache=fbcache/thr=0.06/attn=sdpa/quant=none/gpus=1` | ok | 5.000 | 2.00x | 3.500 | "
      "0.3750 | 1.500 | 31.23 / 28.50 | 0.9512 / 0.9000 | 2/4 | 1.50 | 1 |\n"
      "| `cache=teacache/thr=0.1/attn=sdpa/quant=none/gpus=1` | ok | 8.000 | 1.25x | 6.000 | "
      "0.6000 | 1.500 | 40.00 / 39.50 | 0.9900 / 0.9800 | 0/4 **0 reused!** | 2.00 | 1 |\n"
      "| `cache=none/attn=flash/quant=none/gpus=1` | failed | — | — | — | — | — | — | — | — | — | "
      "1 "
      "|\n"
      "\n"
      "## Stage medians (s)\n"
      "\n"
      "Median over the timed repeats; `step`, `transformer` and `scheduler` are totals over a "
      "generation's steps.\n"
      "\n"
      "| config | e2e | denoise | vae_decode |\n"
      "|---|--:|--:|--:|\n"
      "| `cache=none/attn=sdpa/quant=none/gpus=1` | 10.000 | 8.000 | 1.500 |\n"
      "| `cache=fbcache/thr=0.06/attn=sdpa/quant=none/gpus=1` | 5.000 | 3.500 | 1.500 |\n"
      "| `cache=teacache/thr=0.1/attn=sdpa/quant=none/gpus=1` | 8.000 | 6.000 | 1.500 |\n"
      "\n"
      "## Skipped and failed\n"
      "\n"
      "- `cache=none/attn=sdpa/quant=none/gpus=2/cp=ulysses/u=2/r=1`: skipped: needs 2 GPUs, 1 "
      "available\n"
      "- `cache=none/attn=flash/quant=none/gpus=1`: failed: flash attention needs a CUDA device\n";
  // The cached configs carry thresholds, so the sweep section (sweep_test.cpp) follows.
  const std::string sweep = sweep_report(sample_records());
  ASSERT_NE(sweep, "");
  EXPECT_EQ(markdown_report(sample_records()), expected + sweep);
}

TEST(MarkdownReportTest, NoFinishedBaselineMeansNoSpeedups) {
  auto records = sample_records();
  records.erase(records.begin());  // drop the baseline
  std::string report = markdown_report(records);
  EXPECT_NE(report.find("No baseline config finished, so there are no speedups."),
            std::string::npos);
  EXPECT_EQ(report.find("2.00x"), std::string::npos);
  EXPECT_NE(
      report.find("| `cache=fbcache/thr=0.06/attn=sdpa/quant=none/gpus=1` | ok | 5.000 | — |"),
      std::string::npos)
      << report;
}

TEST(MarkdownReportTest, NoRandomWeightsNoteForRealWeights) {
  auto records = sample_records();
  for (auto& r : records) r.config["weights"] = "/models/hunyuan";
  EXPECT_EQ(markdown_report(records).find("random weights"), std::string::npos);
}

TEST(MarkdownReportTest, RecordsOfSeveralSuitesUseTheirOwnBaselines) {
  // Suite a: baseline 10 s, cached 5 s (2.00x); suite b: the same config ids, baseline 4 s and
  // cached 3 s (1.33x). Same ids in two suites are two configs.
  std::vector<ResultRecord> records;
  for (const auto& [suite, base_s, cached_s] :
       {std::tuple<std::string, double, double>{"a", 10.0, 5.0}, {"b", 4.0, 3.0}}) {
    ResultRecord base = ok_record("cache=none", 1, base_s, 1, 1, {}, kGiB);
    base.suite = suite;
    base.baseline = true;
    ResultRecord cached = ok_record("cache=fbcache", 1, cached_s, 1, 1, {}, kGiB);
    cached.suite = suite;
    records.push_back(base);
    records.push_back(cached);
  }
  const std::string report = markdown_report(records);
  EXPECT_EQ(report.rfind("# ditbench report: a, b\n", 0), 0u) << report;
  EXPECT_NE(report.find("| `cache=fbcache` | ok | 5.000 | 2.00x |"), std::string::npos) << report;
  EXPECT_NE(report.find("| `cache=fbcache` | ok | 3.000 | 1.33x |"), std::string::npos) << report;
  EXPECT_EQ(latest_per_config(records).size(), 4u);
}

TEST(CsvReportTest, SameColumnsWithRawNumbers) {
  auto records = sample_records();
  std::string csv = csv_report(records);
  const std::string header =
      "config_id,status,baseline,e2e_median_s,speedup,denoise_median_s,step_median_s,"
      "vae_decode_median_s,psnr_mean,psnr_min,ssim_mean,ssim_min,identical,reused_steps,"
      "total_steps,peak_gib,gpus,transformer_tflop_s,sm_clock_mhz,power_w,reason\n";
  EXPECT_EQ(csv.rfind(header, 0), 0u);
  EXPECT_NE(
      csv.find(
          "\ncache=none/attn=sdpa/quant=none/gpus=1,ok,true,10,1,8,0.8,1.5,,,1,1,true,,,2,1,,,,\n"),
      std::string::npos)
      << csv;
  EXPECT_NE(
      csv.find("\ncache=fbcache/thr=0.06/attn=sdpa/quant=none/gpus=1,ok,false,5,2,3.5,0.375,1.5,"
               "31.234,28.5,0.95123,0.9,false,2,4,1.5,1,,,,\n"),
      std::string::npos)
      << csv;
  EXPECT_NE(csv.find("\ncache=none/attn=flash/quant=none/gpus=1,failed,false,,,,,,,,,,,,,,1,,,,"
                     "flash attention needs a CUDA device\n"),
            std::string::npos)
      << csv;
  // 1 header + 5 configs (the failed fbcache attempt is superseded).
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 6);
}

// TFLOP/s = the generation's transformer FLOPs over its median transformer stage time:
// (3 + 3) * 1e12 FLOP in 0.4 s (median of 0.4, 0.5, 0.3) = 15 TFLOP/s.
TEST(MarkdownReportTest, TransformerTflopsFromStepFlopsAndTheTransformerStage) {
  ResultRecord r = ok_record("cache=none", 1, 1.0, 0.5, 0.2, {{0.2, 0.2}}, kGiB);
  r.baseline = true;
  r.timings->stages["transformer"] = summarize({0.4, 0.5, 0.3});
  r.timings->step_flops = {3e12, 3e12};
  const std::string report = markdown_report({r});
  EXPECT_NE(report.find("| transformer | vae_decode | TFLOP/s |"), std::string::npos) << report;
  EXPECT_NE(report.find("| 0.400 | 0.200 | 15 |"), std::string::npos) << report;
  EXPECT_NE(csv_report({r}).find(",1,15,,,\n"), std::string::npos) << csv_report({r});
  // Without step_flops (older records) there is no such column.
  r.timings->step_flops.clear();
  EXPECT_EQ(markdown_report({r}).find("TFLOP/s"), std::string::npos);
}

// The clocks section and the CSV columns from a record's telemetry: a row per GPU; the CSV takes
// the lowest median SM clock (1485 of 1485 and 1520) and the mean power over the GPUs
// ((569 + 600) / 2 = 584.5).
TEST(MarkdownReportTest, GpuClocksAndPowerFromTelemetry) {
  ResultRecord r = ok_record("cache=none", 2, 1.0, 0.5, 0.2, {{0.2, 0.2}}, kGiB);
  r.baseline = true;
  auto has = [](const std::string& text, const char* part) {
    return text.find(part) != std::string::npos;
  };
  EXPECT_FALSE(has(markdown_report({r}), "GPU clocks"));  // none recorded
  // device, samples, SM clock median / min / max, the card's maximum, power mean / max, limit,
  // hottest reading, power-capped and thermal shares.
  const GpuTelemetryEntry a{0, 5, 1485, 1395, 1980, 1980.0, 569, 700, 700.0, 66, 0.6, 0.4};
  const GpuTelemetryEntry b{1, 5, 1520, 1395, 1980, 1980.0, 600, 700, std::nullopt, 66, 0.6, 0.4};
  r.telemetry = TelemetryRecord{0.1, {a, b}, std::nullopt};
  const std::string report = markdown_report({r});
  const std::string csv = csv_report({r});
  EXPECT_TRUE(has(report, "## GPU clocks and power\n\nSampled through NVML every 0.1 s")) << report;
  EXPECT_TRUE(has(report,
                  "| `cache=none` | 0 | 5 | 1485 (1395-1980) | 1980 | 569 / 700 | 700 | "
                  "60% | 40% | 66 |\n"))
      << report;
  EXPECT_TRUE(has(report,
                  "| `cache=none` | 1 | 5 | 1520 (1395-1980) | 1980 | 600 / 700 | — | "
                  "60% | 40% | 66 |\n"))
      << report;
  EXPECT_TRUE(has(csv, ",2,,1485,584.5,\n")) << csv;
  // No readings: the reason instead, and empty CSV cells.
  r.telemetry = TelemetryRecord{0.1, {}, std::string("NVML not loaded (x)")};
  EXPECT_TRUE(has(markdown_report({r}), "| `cache=none` | - | 0 | NVML not loaded (x) |"))
      << markdown_report({r});
  EXPECT_TRUE(has(csv_report({r}), ",2,,,,\n")) << csv_report({r});
}

TEST(CsvReportTest, QuotesCellsWithCommas) {
  ResultRecord r;
  r.suite = "s";
  r.config_id = "x";
  r.status = RunStatus::kSkipped;
  r.reason = "needs \"usp\", 4 GPUs";
  EXPECT_NE(csv_report({r}).find(",\"needs \"\"usp\"\", 4 GPUs\"\n"), std::string::npos);
}

TEST(ParetoFrontTest, MarksNonDominatedPoints) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<ParetoPoint> points = {
      {1.0, inf},   // identical baseline: best quality
      {2.0, 30.0},  // on the front
      {1.5, 25.0},  // dominated by (2.0, 30.0)
      {2.5, 20.0},  // fastest
      {2.5, 20.0},  // equal points are both kept
      {0.9, 50.0},  // dominated by the identical baseline
      {2.0, 28.0},  // same speed as (2.0, 30.0) but worse
  };
  EXPECT_EQ(pareto_front(points), (std::vector<bool>{true, true, false, true, true, false, false}));
  EXPECT_TRUE(pareto_front({}).empty());
}

}  // namespace
}  // namespace ditbench
