// The cache threshold sweep section from constructed records (expected text written by hand from
// the records' numbers): grouping, ordering by threshold, speedups, the Pareto front and the flag
// for thresholds that never fired.
#include "reports/sweep.h"

#include <gtest/gtest.h>

#include "reports/markdown.h"

namespace ditbench {
namespace {
using nlohmann::json;

ResultRecord sweep_record(const std::string& cache, std::optional<double> threshold,
                          const std::string& attention, double e2e) {
  ResultRecord r;
  r.suite = "sweep";
  r.config_id = "cache=" + cache;
  if (threshold) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", *threshold);
    r.config_id += "/thr=" + std::string(buf);
  }
  r.config_id += "/attn=" + attention + "/quant=none/gpus=1";
  r.config = {{"model", "hunyuan-video"},
              {"preset", "hunyuan-video-tiny"},
              {"weights", "random"},
              {"axes",
               {{"cache", cache},
                {"cache_threshold", threshold ? json(*threshold) : json(nullptr)},
                {"attention", attention}}}};
  TimingsRecord t;
  t.e2e = summarize({e2e});
  r.timings = t;
  return r;
}

QualityRecord quality(std::optional<double> psnr_mean, double psnr_min, double ssim_mean,
                      double ssim_min) {
  QualityRecord q;
  q.identical = !psnr_mean;
  if (psnr_mean) {
    q.psnr_mean = psnr_mean;
    q.psnr_min = psnr_min;
  }
  q.ssim_mean = ssim_mean;
  q.ssim_min = ssim_min;
  return q;
}

CacheRecord cache(const std::string& policy, double threshold, int reused, int total) {
  return CacheRecord{policy, threshold, total - reused, reused, {}, std::nullopt};
}

std::vector<ResultRecord> sweep_records() {
  std::vector<ResultRecord> records;
  ResultRecord base = sweep_record("none", std::nullopt, "sdpa", 10.0);
  base.baseline = true;
  base.quality = quality(std::nullopt, 0, 1, 1);
  base.cache = CacheRecord{"none", std::nullopt, 10, 0, {}, std::nullopt};
  records.push_back(base);
  // Listed out of threshold order: the table sorts them.
  ResultRecord fb02 = sweep_record("fbcache", 0.2, "sdpa", 4.0);
  fb02.cache = cache("fbcache", 0.2, 6, 10);
  fb02.quality = quality(28.0, 25.0, 0.95, 0.9);
  records.push_back(fb02);
  ResultRecord fb0 = sweep_record("fbcache", 0.0, "sdpa", 10.2);
  fb0.cache = cache("fbcache", 0.0, 0, 10);
  fb0.quality = quality(std::nullopt, 0, 1, 1);
  records.push_back(fb0);
  ResultRecord fb005 = sweep_record("fbcache", 0.05, "sdpa", 10.1);
  fb005.cache = cache("fbcache", 0.05, 0, 10);
  fb005.quality = quality(std::nullopt, 0, 1, 1);
  records.push_back(fb005);
  ResultRecord fb01 = sweep_record("fbcache", 0.1, "sdpa", 6.0);
  fb01.cache = cache("fbcache", 0.1, 4, 10);
  fb01.cache->per_step = {{0, std::nullopt, false, std::nullopt, std::nullopt},
                          {1, 0.05, true, std::nullopt, std::nullopt},
                          {2, 0.2, false, std::nullopt, std::nullopt},
                          {3, 0.08, true, std::nullopt, std::nullopt}};
  fb01.quality = quality(35.0, 33.0, 0.98, 0.97);
  records.push_back(fb01);
  ResultRecord fb03 = sweep_record("fbcache", 0.3, "sdpa", 4.5);
  fb03.cache = cache("fbcache", 0.3, 6, 10);
  fb03.quality = quality(27.0, 24.0, 0.94, 0.9);
  records.push_back(fb03);
  ResultRecord tea01 = sweep_record("teacache", 0.1, "sdpa", 5.0);
  tea01.cache = cache("teacache", 0.1, 5, 10);
  tea01.quality = quality(36.0, 34.0, 0.985, 0.975);
  records.push_back(tea01);
  ResultRecord tea02 = sweep_record("teacache", 0.2, "sdpa", 0);
  tea02.timings.reset();
  tea02.status = RunStatus::kFailed;
  tea02.reason = "out of memory";
  records.push_back(tea02);
  // Another attention backend: a group of its own, without an uncached config.
  ResultRecord math = sweep_record("fbcache", 0.1, "math", 12.5);
  math.cache = cache("fbcache", 0.1, 4, 10);
  math.quality = quality(35.0, 33.0, 0.98, 0.97);
  records.push_back(math);
  return records;
}

TEST(SweepReportTest, GoldenTables) {
  // Speedups against the baseline's 10 s: 0.2 -> 2.50x, 0 -> 0.98x, 0.05 -> 0.99x, 0.1 -> 1.67x,
  // 0.3 -> 2.22x, teacache 0.1 -> 2.00x, math 0.1 -> 0.80x.
  // Front of the sdpa group (speedup, PSNR): baseline (1, inf), fbcache 0.2 (2.5, 28), teacache
  // 0.1 (2, 36). fbcache 0 and 0.05 are identical but slower than the baseline; fbcache 0.1
  // (1.67, 35) loses to teacache 0.1, fbcache 0.3 (2.22, 27) to fbcache 0.2.
  const std::string expected =
      "\n## Cache threshold sweep\n\n"
      "Speedup is against the suite's baseline (e2e medians); PSNR and SSIM are mean / min over "
      "frames against the baseline's frames. ★ marks the Pareto front of speedup vs mean PSNR over "
      "the group's configs, the uncached one included. Signal: the policy's per-step signal "
      "(median [min, max]) that the threshold is compared against (TeaCache: before rescaling and "
      "accumulation).\n"
      "\n### `hunyuan-video` preset `hunyuan-video-tiny`, weights `random`, "
      "`attn=sdpa/quant=none/gpus=1`\n\n"
      "Uncached `cache=none/attn=sdpa/quant=none/gpus=1` (baseline): e2e 10.000 s, 1.00x, "
      "PSNR identical, SSIM 1.0000 / 1.0000, ★ Pareto front.\n"
      "\n**fbcache**\n\n"
      "| threshold | reused/total steps | e2e median (s) | speedup | PSNR mean/min (dB) | "
      "SSIM mean/min | signal median [min, max] | Pareto | note |\n"
      "|--:|--:|--:|--:|--:|--:|--:|:-:|---|\n"
      "| 0 | 0/10 | 10.200 | 0.98x | identical | 1.0000 / 1.0000 | — |  | reuse off (threshold 0) "
      "|\n"
      "| 0.05 | 0/10 | 10.100 | 0.99x | identical | 1.0000 / 1.0000 | — |  | **0 reused: "
      "threshold never fired, only adds cost** |\n"
      "| 0.1 | 4/10 | 6.000 | 1.67x | 35.00 / 33.00 | 0.9800 / 0.9700 | 0.08 [0.05, 0.2] |  |  |\n"
      "| 0.2 | 6/10 | 4.000 | 2.50x | 28.00 / 25.00 | 0.9500 / 0.9000 | — | ★ |  |\n"
      "| 0.3 | 6/10 | 4.500 | 2.22x | 27.00 / 24.00 | 0.9400 / 0.9000 | — |  |  |\n"
      "\n**teacache**\n\n"
      "| threshold | reused/total steps | e2e median (s) | speedup | PSNR mean/min (dB) | "
      "SSIM mean/min | signal median [min, max] | Pareto | note |\n"
      "|--:|--:|--:|--:|--:|--:|--:|:-:|---|\n"
      "| 0.1 | 5/10 | 5.000 | 2.00x | 36.00 / 34.00 | 0.9850 / 0.9750 | — | ★ |  |\n"
      "| 0.2 | — | — | — | — | — | — | — | failed: out of memory |\n"
      "\n### `hunyuan-video` preset `hunyuan-video-tiny`, weights `random`, "
      "`attn=math/quant=none/gpus=1`\n"
      "\n**fbcache**\n\n"
      "| threshold | reused/total steps | e2e median (s) | speedup | PSNR mean/min (dB) | "
      "SSIM mean/min | signal median [min, max] | Pareto | note |\n"
      "|--:|--:|--:|--:|--:|--:|--:|:-:|---|\n"
      "| 0.1 | 4/10 | 12.500 | 0.80x | 35.00 / 33.00 | 0.9800 / 0.9700 | — | ★ |  |\n";
  EXPECT_EQ(sweep_report(sweep_records()), expected);
}

TEST(SweepReportTest, OnlyForSuitesWithThresholds) {
  auto records = sweep_records();
  records.resize(1);  // the uncached baseline alone
  EXPECT_EQ(sweep_report(records), "");
  EXPECT_EQ(markdown_report(records).find("Cache threshold sweep"), std::string::npos);
  // The full report carries the section after the speedup table.
  const std::string full = markdown_report(sweep_records());
  const auto sweep = full.find("\n## Cache threshold sweep\n");
  ASSERT_NE(sweep, std::string::npos);
  EXPECT_LT(full.find("| config | status |"), sweep);
  EXPECT_NE(full.find("**0 reused: threshold never fired, only adds cost**"), std::string::npos);
}

TEST(SweepReportTest, WithoutBaselineNoSpeedupsAndNoFront) {
  auto records = sweep_records();
  records.erase(records.begin());
  const std::string report = sweep_report(records);
  EXPECT_NE(
      report.find("| 0.2 | 6/10 | 4.000 | — | 28.00 / 25.00 | 0.9500 / 0.9000 | — | — |  |\n"),
      std::string::npos)
      << report;
  EXPECT_EQ(report.find("★ |"), std::string::npos) << report;
}

}  // namespace
}  // namespace ditbench
