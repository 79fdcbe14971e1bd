// The HTML report on constructed records: a well-formed document with one <svg> per chart and the
// number of bars, points and step cells the records call for (counted by hand below).
#include "reports/html.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <regex>

namespace ditbench {
namespace {
using nlohmann::json;

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// Checks that every element is closed in order (void and self-closed elements aside), so the file
// parses as XML-ish markup. Returns an empty string when well formed, else what broke.
std::string tag_balance_error(const std::string& html) {
  static const std::regex tag(R"(<(/?)([a-zA-Z][a-zA-Z0-9]*)([^<>]*?)(/?)>)");
  static const std::set<std::string> kVoid = {"meta", "br", "hr", "img", "link", "input"};
  std::vector<std::string> open;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), tag); it != std::sregex_iterator();
       ++it) {
    const std::string name = (*it)[2];
    const bool closing = (*it)[1].length() > 0, self_closed = (*it)[4].length() > 0;
    if (self_closed || kVoid.count(name)) continue;
    if (!closing) {
      open.push_back(name);
    } else if (open.empty() || open.back() != name) {
      return "</" + name + "> closes " + (open.empty() ? std::string("nothing") : open.back());
    } else {
      open.pop_back();
    }
  }
  if (!open.empty()) return "<" + open.back() + "> never closed";
  // Text may not hold a bare '<' or '&' that is no entity.
  if (std::regex_search(html, std::regex(R"(&(?![a-z]+;|#[0-9]+;))"))) return "unescaped &";
  return "";
}

ResultRecord record(const std::string& id, json axes, double e2e, double text_embed, double denoise,
                    double vae) {
  ResultRecord r;
  r.suite = "html-test";
  r.config_id = id;
  r.config = {{"model", "hunyuan-video"}, {"axes", axes}};
  TimingsRecord t;
  t.e2e = summarize({e2e});
  t.stages["text_embed"] = summarize({text_embed});
  t.stages["denoise"] = summarize({denoise});
  t.stages["step"] = summarize({denoise / 4});  // inside denoise: never stacked
  t.stages["vae_decode"] = summarize({vae});
  r.timings = t;
  return r;
}

json axes(const std::string& cache, int gpus = 1, const std::string& cp = "none") {
  return {
      {"cache", cache}, {"attention", "sdpa"}, {"quant", "none"}, {"gpus", gpus}, {"cp_mode", cp}};
}

QualityRecord quality(std::optional<double> psnr) {
  QualityRecord q;
  q.psnr_mean = psnr;
  q.psnr_min = psnr;
  q.identical = !psnr;
  q.ssim_mean = psnr ? 0.95 : 1.0;
  q.ssim_min = q.ssim_mean;
  return q;
}

CacheRecord cache(const std::string& policy, std::vector<bool> reused) {
  CacheRecord c;
  c.policy = policy;
  c.threshold = 0.1;
  for (size_t i = 0; i < reused.size(); ++i) {
    c.per_step.push_back({static_cast<int>(i), i ? std::optional<double>(0.05) : std::nullopt,
                          static_cast<bool>(reused[i]), std::nullopt});
    (reused[i] ? c.reused_steps : c.computed_steps)++;
  }
  return c;
}

std::vector<ResultRecord> sweep_records() {
  std::vector<ResultRecord> records;
  ResultRecord base = record("cache=none/gpus=1", axes("none"), 10.0, 0.5, 8.0, 1.5);
  base.baseline = true;
  base.quality = quality(std::nullopt);  // the baseline against itself: identical
  base.env = {{"gpu", "NVIDIA H100"}, {"torch", "2.11.0"}, {"git", "a&b"}};
  records.push_back(base);
  // Speedups 10/6 = 1.67 (35 dB), 10/7 = 1.43 (38 dB), 10/7.5 = 1.33 (30 dB, dominated by the
  // teacache point); with the identical baseline at 1.0 the front holds 3 of the 4 points.
  ResultRecord fb1 = record("cache=fbcache/thr=0.1", axes("fbcache"), 6.0, 0.5, 4.0, 1.5);
  fb1.quality = quality(35.0);
  fb1.cache = cache("fbcache", {false, true, true, false, false});
  records.push_back(fb1);
  ResultRecord tea = record("cache=teacache/thr=0.1", axes("teacache"), 7.0, 0.5, 5.0, 1.5);
  tea.quality = quality(38.0);
  tea.cache = cache("teacache", {false, false, true, false, false});
  records.push_back(tea);
  ResultRecord fb2 = record("cache=fbcache/thr=<0.2&>", axes("fbcache"), 7.5, 0.5, 5.5, 1.5);
  fb2.quality = quality(30.0);
  fb2.cache = cache("fbcache", {false, true, false, true, true, false});
  records.push_back(fb2);
  // Two multi-GPU configs of the baseline's kind: scaling 10/5.5 and 10/3.
  records.push_back(
      record("cache=none/gpus=2/cp=ulysses", axes("none", 2, "ulysses"), 5.5, 0.5, 3.5, 1.5));
  records.push_back(
      record("cache=none/gpus=4/cp=ulysses", axes("none", 4, "ulysses"), 3.0, 0.5, 1.0, 1.5));
  ResultRecord skipped;
  skipped.suite = "html-test";
  skipped.config_id = "cache=none/gpus=8";
  skipped.status = RunStatus::kSkipped;
  skipped.reason = "needs 8 GPUs";
  records.push_back(skipped);
  return records;
}

TEST(HtmlReport, ChartsBarsAndPointsForASweep) {
  const std::string html = html_report(sweep_records());
  EXPECT_EQ(tag_balance_error(html), "");
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(count(html, "<script"), 0u) << "self-contained, no scripts";
  EXPECT_EQ(count(html, "<svg"), 4u);  // stages, scatter, scaling, cache strips
  EXPECT_EQ(count(html, "class=\"chart "), 4u);
  EXPECT_EQ(count(html, "<g class=\"bar\""), 6u);  // every timed config, not the skipped one
  // Three stacked stages per bar; "step" is inside denoise and never stacked.
  EXPECT_EQ(count(html, "class=\"segment\""), 18u);
  EXPECT_EQ(count(html, "<title>step:"), 0u);
  EXPECT_EQ(count(html, "class=\"point"), 4u);
  EXPECT_EQ(count(html, "class=\"point front\""), 3u);
  EXPECT_EQ(count(html, "class=\"scaling-point\""), 2u);
  EXPECT_EQ(count(html, "class=\"ideal\""), 1u);
  EXPECT_NE(html.find("1.82x</title>"), std::string::npos);  // 10 / 5.5
  EXPECT_NE(html.find("3.33x</title>"), std::string::npos);  // 10 / 3
  EXPECT_EQ(count(html, "<g class=\"strip\""), 3u);
  EXPECT_EQ(count(html, "class=\"step reused\""), 2u + 1u + 3u);
  EXPECT_EQ(count(html, "class=\"step computed\""), 3u + 4u + 3u);
  // Text from the records is escaped.
  EXPECT_NE(html.find("cache=fbcache/thr=&lt;0.2&amp;&gt;"), std::string::npos);
  EXPECT_EQ(html.find("thr=<0.2"), std::string::npos);
  EXPECT_NE(html.find("git a&amp;b"), std::string::npos);
}

TEST(HtmlReport, LeavesOutChartsWithNothingToDraw) {
  // One GPU count, no quality scores, no cache decisions: only the stage bars are drawn.
  std::vector<ResultRecord> records = {record("cache=none", axes("none"), 10.0, 0.5, 8.0, 1.5),
                                       record("quant=fp8", axes("none"), 8.0, 0.5, 6.0, 1.5)};
  records[0].baseline = true;
  const std::string html = html_report(records);
  EXPECT_EQ(tag_balance_error(html), "");
  EXPECT_EQ(count(html, "<svg"), 1u);
  EXPECT_EQ(count(html, "<g class=\"bar\""), 2u);
  EXPECT_NE(html.find("No config has both a speedup"), std::string::npos);
  EXPECT_NE(html.find("No cache config recorded"), std::string::npos);
  EXPECT_EQ(html.find("Scaling with GPUs"), std::string::npos);
  // No records at all still gives a valid page.
  EXPECT_EQ(tag_balance_error(html_report({})), "");
}

TEST(HtmlReport, LastRecordOfAConfigCounts) {
  std::vector<ResultRecord> records = sweep_records();
  ResultRecord redone = records[1];
  redone.timings->e2e = summarize({5.0});
  records.push_back(redone);
  const std::string html = html_report(records);
  EXPECT_EQ(count(html, "<g class=\"bar\""), 6u);
  EXPECT_NE(html.find("2.00x"), std::string::npos);  // 10 / 5
}

// Optional: renders the page in headless Chromium and checks the screenshot is not blank.
// Skipped where no chromium binary is installed (CI does not install one).
TEST(HtmlReport, RendersInHeadlessChromium) {
  if (std::system("command -v chromium >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "chromium not installed";
  const std::string dir = ::testing::TempDir() + "ditbench_html_render";
  std::system(("mkdir -p '" + dir + "'").c_str());
  std::ofstream(dir + "/report.html") << html_report(sweep_records());
  const std::string png = dir + "/shot.png";
  std::remove(png.c_str());
  const std::string command =
      "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
      "--window-size=1000,1400 --screenshot='" +
      png + "' 'file://" + dir + "/report.html' >/dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0);
  std::ifstream in(png, std::ios::binary);
  ASSERT_TRUE(in) << "no screenshot written";
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 8u);
  EXPECT_EQ(bytes.substr(1, 3), "PNG");
  // A blank white 1000x1400 PNG compresses to a few kB; charts, text and colors do not.
  EXPECT_GT(bytes.size(), 20000u);
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace ditbench
