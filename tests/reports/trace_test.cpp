// Chrome trace of a hand-made TimingResult: events, units, nesting and the GPU track.
#include "reports/trace.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>

namespace ditbench {
namespace {
using nlohmann::json;

StageSpan span(const std::string& name, int depth, double host_s,
               std::optional<double> device_s = std::nullopt) {
  StageSpan s;
  s.name = name;
  s.depth = depth;
  s.host_s = host_s;
  s.device_s = device_s;
  return s;
}

// e2e 1.0 s: text_embed 0.1, denoise 0.6 (two steps of 0.25, each with a transformer part), vae
// 0.2; the spans in the order they began, as the StageTimer records them.
TimingResult sample_run() {
  TimingResult t;
  t.spans = {span("e2e", 0, 1.0),         span("text_embed", 1, 0.1),  span("denoise", 1, 0.6),
             span("step", 2, 0.25),       span("transformer", 3, 0.2), span("step", 2, 0.25),
             span("transformer", 3, 0.2), span("vae_decode", 1, 0.2)};
  return t;
}

std::vector<json> complete_events(const json& trace, int tid) {
  std::vector<json> out;
  for (const auto& e : trace.at("traceEvents"))
    if (e.at("ph") == "X" && e.at("tid") == tid) out.push_back(e);
  return out;
}

TEST(ChromeTrace, CompleteEventsInMicrosecondsNestedByTime) {
  const json trace = chrome_trace(sample_run(), "cache=none");
  auto events = complete_events(trace, 1);
  ASSERT_EQ(events.size(), 8u);
  // Expected (name, ts, dur) in µs, laid out by hand: siblings back to back from the parent start.
  const std::vector<std::tuple<std::string, double, double>> expected = {
      {"e2e", 0, 1e6},
      {"text_embed", 0, 1e5},
      {"denoise", 1e5, 6e5},
      {"step 0", 1e5, 2.5e5},
      {"transformer", 1e5, 2e5},
      {"step 1", 3.5e5, 2.5e5},
      {"transformer", 3.5e5, 2e5},
      {"vae_decode", 7e5, 2e5}};
  for (size_t i = 0; i < events.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(events[i]["name"], std::get<0>(expected[i]));
    EXPECT_NEAR(events[i]["ts"].get<double>(), std::get<1>(expected[i]), 1e-6);
    EXPECT_NEAR(events[i]["dur"].get<double>(), std::get<2>(expected[i]), 1e-6);
    EXPECT_EQ(events[i]["pid"], 1);
  }
  EXPECT_EQ(events[3]["args"]["step"], 0);
  EXPECT_EQ(events[5]["args"]["step"], 1);
  EXPECT_NEAR(events[2]["args"]["host_ms"].get<double>(), 600.0, 1e-9);
  // Every child lies inside its parent: Perfetto nests complete events by time only.
  for (size_t i = 1; i < events.size(); ++i) {
    double start = events[i]["ts"], end = start + events[i]["dur"].get<double>();
    EXPECT_GE(start, 0.0);
    EXPECT_LE(end, 1e6 + 1e-6);
  }
  EXPECT_TRUE(complete_events(trace, 2).empty()) << "no GPU track without device times";
  EXPECT_EQ(trace["otherData"]["config_id"], "cache=none");
  EXPECT_EQ(trace["displayTimeUnit"], "ms");
}

TEST(ChromeTrace, GpuTrackUsesDeviceTimesAndCutsOverhangingChildren) {
  TimingResult t;
  // The GPU step is longer than its denoise parent (work on another stream): cut to the parent.
  t.spans = {span("denoise", 0, 0.5, 0.4), span("step", 1, 0.2, 0.3), span("step", 1, 0.2, 0.3)};
  const json trace = chrome_trace(t, "x");
  auto gpu = complete_events(trace, 2);
  ASSERT_EQ(gpu.size(), 3u);
  EXPECT_NEAR(gpu[0]["dur"].get<double>(), 4e5, 1e-6);
  EXPECT_NEAR(gpu[1]["dur"].get<double>(), 3e5, 1e-6);
  EXPECT_NEAR(gpu[2]["ts"].get<double>(), 3e5, 1e-6);
  EXPECT_NEAR(gpu[2]["dur"].get<double>(), 1e5, 1e-6);  // cut at 0.4 s
  EXPECT_EQ(gpu[2]["args"]["cut_to_parent"], true);
  EXPECT_NEAR(gpu[2]["args"]["device_ms"].get<double>(), 300.0, 1e-9);
  bool named = false;
  for (const auto& e : trace["traceEvents"])
    named |= e["ph"] == "M" && e["tid"] == 2 && e["name"] == "thread_name";
  EXPECT_TRUE(named);
  // Host track keeps host times.
  auto host = complete_events(trace, 1);
  EXPECT_NEAR(host[0]["dur"].get<double>(), 5e5, 1e-6);
}

TEST(ChromeTrace, WritesTracesFolderAndReturnsRelativePath) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    ("ditbench_trace_test_" + std::to_string(::getpid()));
  const std::string relative = write_chrome_trace(dir, "cache_none", sample_run(), "cache=none");
  EXPECT_EQ(relative, "traces/cache_none.json");
  std::ifstream in(dir / relative);
  ASSERT_TRUE(in);
  json back = json::parse(in);
  EXPECT_EQ(complete_events(back, 1).size(), 8u);
  std::system(("rm -rf '" + dir.string() + "'").c_str());
}

}  // namespace
}  // namespace ditbench
