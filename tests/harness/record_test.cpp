// Result records: JSON layout of DESIGN.md, round trip, the JSONL writer, a crash-truncated last
// line, bad lines named by file and line, and the ids --resume skips.
#include "harness/record.h"

#include <gtest/gtest.h>

#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "models/common/error.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

ResultRecord full_record() {
  ResultRecord r;
  r.suite = "speedup";
  r.config_id = "cache=fbcache/thr=0.06/attn=sdpa/quant=none/gpus=1";
  r.config = {{"model", "hunyuan-video"},
              {"weights", "random"},
              {"axes", {{"cache", "fbcache"}, {"gpus", 1}}}};
  r.env = {{"gpu", "NVIDIA H100"}, {"torch", "2.11.0"}, {"git", "abc"}};
  TimingsRecord t;
  t.e2e = summarize({2.0, 1.0, 3.0});
  t.stages["denoise"] = summarize({1.5, 0.5, 2.5});
  t.steps_s = {{0.1, 0.2}, {0.3, 0.4}, {0.5, 0.6}};
  r.timings = t;
  r.peak_bytes = int64_t{5} << 32;  // beyond 32 bits on purpose
  CacheRecord c;
  c.policy = "fbcache";
  c.threshold = 0.06;
  c.computed_steps = 1;
  c.reused_steps = 1;
  c.per_step = {{0, std::nullopt, false, std::nullopt}, {1, 0.01, true, 0.02}};
  r.cache = c;
  QualityRecord q;
  q.psnr_mean = 35.5;
  q.psnr_min = 30.25;
  q.ssim_mean = 0.97;
  q.ssim_min = 0.9;
  r.quality = q;
  r.artifacts = ArtifactsRecord{"frames/x", std::nullopt, "trace.json"};
  r.weights_note = "random weights: timings exact, quality meaningless for caches";
  r.prompt_source = "synthetic:256/256";
  r.attention = AttentionRecord{"sdpa", {"flash", "math"}};
  return r;
}

// A new empty folder under /tmp (mkdtemp: test processes may run side by side).
fs::path fresh_dir(const std::string& name) {
  std::string pattern =
      (fs::temp_directory_path() / ("ditbench_record_" + name + "_XXXXXX")).string();
  if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  return pattern;
}

// Flat folders only. Not fs::remove_all: libtorch.so exports an incompatible copy that crashes.
void remove_dir(const fs::path& dir) {
  for (const auto& entry : fs::directory_iterator(dir)) fs::remove(entry.path());
  fs::remove(dir);
}

TEST(RecordTest, JsonFollowsTheDesignSchema) {
  json j = to_json(full_record());
  EXPECT_EQ(j["schema"], "ditbench.result/1");
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["reason"], "");
  EXPECT_EQ(j["baseline"], false);
  EXPECT_EQ(j["timings"]["e2e"]["samples_s"], (json{2.0, 1.0, 3.0}));
  EXPECT_EQ(j["timings"]["e2e"]["median_s"], 2.0);
  EXPECT_EQ(j["timings"]["e2e"]["min_s"], 1.0);
  EXPECT_EQ(j["timings"]["e2e"]["max_s"], 3.0);
  EXPECT_EQ(j["timings"]["e2e"]["stdev_s"], 1.0);
  EXPECT_EQ(j["timings"]["stages"]["denoise"]["median_s"], 1.5);
  EXPECT_EQ(j["timings"]["steps_s"][2][1], 0.6);
  EXPECT_EQ(j["memory"]["peak_bytes"], int64_t{5} << 32);
  EXPECT_TRUE(j["cache"]["per_step"][0]["signal"].is_null());
  EXPECT_FALSE(j["cache"]["per_step"][0].contains("accumulated"));
  EXPECT_EQ(j["cache"]["per_step"][1]["reused"], true);
  EXPECT_EQ(j["cache"]["reused_steps"], 1);
  EXPECT_EQ(j["quality"]["reference"], "baseline");
  EXPECT_EQ(j["quality"]["psnr_min"], 30.25);
  EXPECT_EQ(j["quality"]["identical"], false);
  EXPECT_EQ(j["artifacts"], (json{{"frames", "frames/x"}, {"trace", "trace.json"}}));
  EXPECT_EQ(j["attention"]["kernels"], (json{"flash", "math"}));
  EXPECT_EQ(j["prompt_source"], "synthetic:256/256");
}

TEST(RecordTest, RoundTripKeepsEveryField) {
  ResultRecord r = full_record();
  r.extra = {{"future_key", {1, 2}}};
  json j = to_json(r);
  ResultRecord back = record_from_json(json::parse(j.dump()));
  EXPECT_EQ(to_json(back), j);
  EXPECT_EQ(back.peak_bytes, r.peak_bytes);
  EXPECT_EQ(back.cache->per_step[1].accumulated, 0.02);
  EXPECT_FALSE(back.cache->per_step[0].signal.has_value());
  EXPECT_EQ(back.timings->steps_s, r.timings->steps_s);
  EXPECT_EQ(back.extra, (json{{"future_key", {1, 2}}}));
}

TEST(RecordTest, IdenticalFramesWriteNullPsnr) {
  ResultRecord r = full_record();
  r.quality->identical = true;
  r.quality->psnr_mean = std::numeric_limits<double>::infinity();
  json j = to_json(r);
  EXPECT_TRUE(j["quality"]["psnr_mean"].is_null());
  EXPECT_TRUE(j["quality"]["psnr_min"].is_null());
  EXPECT_EQ(j["quality"]["identical"], true);
  ResultRecord back = record_from_json(j);
  EXPECT_TRUE(back.quality->identical);
  EXPECT_FALSE(back.quality->psnr_mean.has_value());
}

TEST(RecordTest, SkippedRecordNeedsNoSections) {
  json j = {{"schema", "ditbench.result/1"},
            {"suite", "s"},
            {"config_id", "x"},
            {"baseline", false},
            {"status", "skipped"},
            {"reason", "gpus=2 needs a cp_mode"}};
  ResultRecord r = record_from_json(j);
  EXPECT_EQ(r.status, RunStatus::kSkipped);
  EXPECT_EQ(r.reason, "gpus=2 needs a cp_mode");
  EXPECT_FALSE(r.timings.has_value());
  EXPECT_FALSE(r.quality.has_value());
  EXPECT_FALSE(to_json(r).contains("timings"));
}

TEST(RecordTest, CacheObjectAlone) {
  json c = json::parse(R"({"policy": "teacache", "threshold": 0.1, "computed_steps": 3,
      "reused_steps": 1, "per_step": [
        {"step": 0, "signal": null, "accumulated": 0.0, "reused": false},
        {"step": 1, "signal": 0.04, "accumulated": 0.05, "reused": true}]})");
  CacheRecord r = cache_record_from_json(c);
  EXPECT_EQ(r.policy, "teacache");
  EXPECT_EQ(r.threshold, 0.1);
  EXPECT_EQ(r.computed_steps, 3);
  EXPECT_EQ(r.reused_steps, 1);
  ASSERT_EQ(r.per_step.size(), 2u);
  EXPECT_FALSE(r.per_step[0].signal.has_value());
  EXPECT_EQ(r.per_step[0].accumulated, 0.0);
  EXPECT_EQ(r.per_step[1].signal, 0.04);
  EXPECT_TRUE(r.per_step[1].reused);
}

TEST(RecordTest, BadFieldsNameTheirJsonPath) {
  auto message_of = [](json j) {
    try {
      record_from_json(j);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  json good = to_json(full_record());
  json j = good;
  j.erase("config_id");
  EXPECT_EQ(message_of(j), "/config_id: missing");
  j = good;
  j["status"] = "done";
  EXPECT_EQ(message_of(j), "/status: unknown status \"done\" (allowed: ok, failed, skipped)");
  j = good;
  j["timings"]["e2e"]["median_s"] = "fast";
  EXPECT_EQ(message_of(j), "/timings/e2e/median_s: expected a number, got \"fast\"");
  j = good;
  j["cache"]["per_step"][1]["reused"] = 1;
  EXPECT_EQ(message_of(j), "/cache/per_step/1/reused: expected true or false, got 1");
  j = good;
  j["schema"] = "ditbench.result/2";
  EXPECT_NE(message_of(j).find("/schema: \"ditbench.result/2\" is not a schema this build reads"),
            std::string::npos);
}

TEST(ResultsWriterTest, AppendsLinesAndReadsThemBack) {
  fs::path parent = fresh_dir("append");
  fs::path dir = parent / "run";  // the writer creates its folder
  {
    ResultsWriter writer(dir);
    EXPECT_EQ(writer.path(), dir / "results.jsonl");
    ResultRecord a = full_record();
    ResultRecord b = full_record();
    b.config_id = "second";
    writer.append(a);
    writer.append(b);
  }
  {
    ResultsWriter again(dir);  // a second run appends after the first
    ResultRecord c = full_record();
    c.config_id = "third";
    again.append(c);
  }
  auto records = read_results(dir / "results.jsonl");
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].config_id, "second");
  EXPECT_EQ(records[2].config_id, "third");
  std::ifstream in(dir / "results.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) ++lines;
  EXPECT_EQ(lines, 3);
  remove_dir(dir);
  remove_dir(parent);
}

TEST(ResultsWriterTest, TruncatedLastLineIsIgnoredThenCutByTheNextWriter) {
  fs::path dir = fresh_dir("truncated");
  {
    ResultsWriter writer(dir);
    writer.append(full_record());
  }
  {  // a crash in the middle of the second line
    std::ofstream out(dir / "results.jsonl", std::ios::app);
    out << R"({"schema": "ditbench.result/1", "suite": "spe)";
  }
  EXPECT_EQ(read_results(dir / "results.jsonl").size(), 1u);
  {
    ResultsWriter writer(dir);
    ResultRecord r = full_record();
    r.config_id = "after-crash";
    writer.append(r);
  }
  auto records = read_results(dir / "results.jsonl");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].config_id, "after-crash");
  remove_dir(dir);
}

TEST(ResultsWriterTest, BadLineInTheMiddleNamesFileAndLine) {
  fs::path dir = fresh_dir("bad_line");
  fs::path path = dir / "results.jsonl";
  {
    std::ofstream out(path);
    out << to_json(full_record()).dump() << "\n{not json\n"
        << to_json(full_record()).dump() << "\n";
  }
  try {
    read_results(path);
    FAIL() << "bad line accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path.string() + ":2: not valid JSON", 0), 0u) << e.what();
  }
  {  // valid JSON, bad record: also named with its line
    std::ofstream out(path);
    out << to_json(full_record()).dump() << "\n"
        << R"({"schema": "ditbench.result/1"})"
        << "\n";
  }
  try {
    read_results(path);
    FAIL() << "bad record accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), path.string() + ":2: /suite: missing");
  }
  // A complete but bad last line (it ends with a newline) is an error, not a crash remnant.
  {
    std::ofstream out(path);
    out << to_json(full_record()).dump() << "\n{\"schema\": \n";
  }
  EXPECT_THROW(read_results(path), InputError);
  remove_dir(dir);
}

TEST(ResultsWriterTest, FinishedIdsForResume) {
  fs::path dir = fresh_dir("resume");
  EXPECT_TRUE(finished_config_ids(dir / "results.jsonl").empty());  // no file yet
  {
    ResultsWriter writer(dir);
    for (auto [id, status] : {std::pair{"done", RunStatus::kOk},
                              {"skip", RunStatus::kSkipped},
                              {"broke", RunStatus::kFailed}}) {
      ResultRecord r;
      r.suite = "s";
      r.config_id = id;
      r.status = status;
      writer.append(r);
    }
  }
  EXPECT_EQ(finished_config_ids(dir / "results.jsonl"), (std::set<std::string>{"done", "skip"}));
  EXPECT_EQ(finished_config_ids(dir / "results.jsonl", true),
            (std::set<std::string>{"done", "skip", "broke"}));
  remove_dir(dir);
}

}  // namespace
}  // namespace ditbench
