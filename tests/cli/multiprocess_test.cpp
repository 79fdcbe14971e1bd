// `ditbench run` under a multi-process launch, as torchrun starts it: real processes with RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1 and MASTER_PORT on the CPU, whose context
// parallelism runs over the store transport. The ranks meet, only rank 0 writes, and what it
// writes equals one process running the same ranks as threads (--gpus 2); a rank that throws in
// the middle of a generation stops every rank within seconds, processes and threads alike, with
// an error naming the rank that failed and the operation; a rank left alone times out naming the
// rank it waited for.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "cli/child_process.h"
#include "harness/record.h"
#include "metrics/frames.h"
#include "parallel/free_port.h"
#include "parallel/tiny_cp_suite.h"
#include "test_util.h"

namespace ditbench {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ditbench::testing::ChildProcess;
using ditbench::testing::free_tcp_port;
using ditbench::testing::TempDir;

class MultiProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    // 3 steps with FBCache, whose decisions every rank must share.
    nlohmann::json suite = testing::tiny_cp_suite(
        "launch", {{"gpus", {1, 2, 4}}, {"cp_mode", {"none", "ulysses", "ring"}}}, 3);
    suite["axes"]["cache"] = {"fbcache"};
    suite["axes"]["cache_threshold"] = 0.3;
    std::ofstream(dir_.file("suite.json")) << suite.dump(1);
  }

  // The environment torchrun gives rank `rank` of `world` processes.
  static std::vector<std::string> launch_env(int rank, int world, int port) {
    return {"RANK=" + std::to_string(rank), "WORLD_SIZE=" + std::to_string(world),
            "LOCAL_RANK=" + std::to_string(rank), "MASTER_ADDR=127.0.0.1",
            "MASTER_PORT=" + std::to_string(port)};
  }
  // A working folder for one process.
  fs::path cwd(const std::string& name) {
    fs::create_directories(dir_.path() / name);
    return dir_.path() / name;
  }
  std::vector<std::string> run_args(const std::string& out) {
    return {"run", dir_.file("suite.json"), "--out", dir_.file(out), "--no-progress"};
  }

  TempDir dir_{"ditbench_multiprocess"};
};

std::map<std::string, ResultRecord> by_id(const std::vector<ResultRecord>& records) {
  std::map<std::string, ResultRecord> out;
  for (const auto& r : records) out[r.config_id] = r;
  return out;
}

TEST_F(MultiProcess, TwoProcessesMeetAndRank0WritesWhatTwoRankThreadsWrite) {
  const int port = free_tcp_port();
  // Rank 1 is given its own output folder: that it stays absent shows that rank 1 writes nothing.
  ChildProcess rank0(run_args("launch"), cwd("rank0"), launch_env(0, 2, port));
  ChildProcess rank1(run_args("launch_rank1"), cwd("rank1"), launch_env(1, 2, port));
  ASSERT_TRUE(rank0.wait(300s));
  ASSERT_TRUE(rank1.wait(60s));
  ASSERT_EQ(rank0.exit_code(), 0) << rank0.stderr_text();
  ASSERT_EQ(rank1.exit_code(), 0) << rank1.stderr_text();
  EXPECT_NE(rank1.stderr_text().find("rank 0 writes the results"), std::string::npos)
      << rank1.stderr_text();
  EXPECT_FALSE(fs::exists(dir_.path() / "launch_rank1"));
  EXPECT_TRUE(fs::exists(dir_.path() / "launch" / "report.md"));

  auto args = run_args("threads");
  args.insert(args.end(), {"--gpus", "2"});
  ChildProcess threads(args, cwd("threads"));
  ASSERT_TRUE(threads.wait(300s));
  ASSERT_EQ(threads.exit_code(), 0) << threads.stderr_text();

  const auto launched = by_id(read_results(dir_.path() / "launch" / "results.jsonl"));
  const auto threaded = by_id(read_results(dir_.path() / "threads" / "results.jsonl"));
  int compared_parallel = 0;
  for (const auto& [id, one] : threaded) {
    ASSERT_TRUE(launched.count(id)) << id;
    const ResultRecord& two = launched.at(id);
    ASSERT_EQ(two.status, one.status) << id << ": " << two.reason;
    EXPECT_EQ(two.reason, one.reason) << id;
    if (one.status != RunStatus::kOk) continue;
    // The same frames, bit for bit: the store transport sums in rank order as threads do.
    const at::Tensor a = load_frames((dir_.path() / "launch" / *two.artifacts->frames).string());
    const at::Tensor b = load_frames((dir_.path() / "threads" / *one.artifacts->frames).string());
    EXPECT_TRUE(at::equal(a, b)) << id << ": relative error " << testing::rel_error(a, b);
    ASSERT_TRUE(one.cache && two.cache);
    ASSERT_EQ(two.cache->per_step.size(), one.cache->per_step.size()) << id;
    for (size_t i = 0; i < one.cache->per_step.size(); ++i)
      EXPECT_EQ(two.cache->per_step[i].reused, one.cache->per_step[i].reused) << id << " " << i;
    ASSERT_TRUE(one.quality && two.quality) << id;
    EXPECT_EQ(two.quality->identical, one.quality->identical) << id;
    EXPECT_EQ(two.quality->ssim_mean, one.quality->ssim_mean) << id;
    if (one.config["axes"]["gpus"] == 2) {
      ++compared_parallel;
      EXPECT_EQ(one.extra["parallel"]["backend"], "in_process") << id;
      EXPECT_EQ(two.extra["parallel"]["backend"], "store") << id;
      EXPECT_EQ(two.extra["parallel"]["processes"], true) << id;
      EXPECT_EQ(one.extra["parallel"]["send_recv"], "in_process") << id;
      EXPECT_EQ(two.extra["parallel"]["send_recv"], "store") << id;
      ASSERT_TRUE(two.timings && two.timings->stages.count("comm")) << id;
      EXPECT_GT(two.timings->stages.at("comm").median_s, 0) << id;
      ASSERT_EQ(two.timings->comm_steps_s.size(), 1u) << id;
      EXPECT_EQ(two.timings->comm_steps_s[0].size(), 3u) << id;
    }
  }
  EXPECT_EQ(compared_parallel, 2);  // ulysses and ring on 2 ranks
  // The configs of 4 ranks are skips in a launch of 2, with the reason.
  int skipped_for_ranks = 0;
  for (const auto& [id, r] : launched) {
    if (r.config["axes"]["gpus"] != 4 || r.config["axes"]["cp_mode"] == "none") continue;
    EXPECT_EQ(r.status, RunStatus::kSkipped) << id;
    EXPECT_EQ(r.reason, "needs 4 ranks, the torchrun launch has 2") << id;
    ++skipped_for_ranks;
  }
  EXPECT_EQ(skipped_for_ranks, 2);
}

TEST_F(MultiProcess, ARankThatThrowsMidGenerationStopsEveryProcess) {
  const int port = free_tcp_port();
  auto env0 = launch_env(0, 2, port), env1 = launch_env(1, 2, port);
  env0.push_back("DITBENCH_INJECT_FAULT=1:1");
  env1.push_back("DITBENCH_INJECT_FAULT=1:1");
  const auto started = std::chrono::steady_clock::now();
  ChildProcess rank0(run_args("launch"), cwd("rank0"), env0);
  ChildProcess rank1(run_args("launch"), cwd("rank1"), env1);
  ASSERT_TRUE(rank0.wait(300s));
  ASSERT_TRUE(rank1.wait(60s));
  // Well inside the default 600 s communication timeout: the abort flag ended the wait.
  EXPECT_LT(std::chrono::steady_clock::now() - started, 120s);
  EXPECT_EQ(rank0.exit_code(), 1) << rank0.stderr_text();
  EXPECT_EQ(rank1.exit_code(), 1) << rank1.stderr_text();
  const std::string cause = "injected fault at denoising step 1 (DITBENCH_INJECT_FAULT)";
  EXPECT_NE(rank1.stderr_text().find("ditbench: failed: rank 1: " + cause), std::string::npos)
      << rank1.stderr_text();
  // Rank 0 was inside a collective of step 1 (which one depends on the layout) when it stopped.
  const std::string err0 = rank0.stderr_text();
  EXPECT_NE(err0.find("ditbench: failed: rank 0: "), std::string::npos) << err0;
  EXPECT_NE(err0.find(" aborted because rank 1 failed: " + cause), std::string::npos) << err0;

  // Rank 0 recorded the config in flight as failed, with the same message, and its report.
  const auto records = read_results(dir_.path() / "launch" / "results.jsonl");
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.back().status, RunStatus::kFailed);
  EXPECT_EQ(records.back().config["axes"]["gpus"], 2);
  EXPECT_NE(records.back().reason.find("because rank 1 failed: " + cause), std::string::npos)
      << records.back().reason;
  EXPECT_TRUE(fs::exists(dir_.path() / "launch" / "report.md"));
}

TEST_F(MultiProcess, ARankThreadThatThrowsMidGenerationFailsItsConfig) {
  auto args = run_args("threads");
  args.insert(args.end(), {"--gpus", "2"});
  const auto started = std::chrono::steady_clock::now();
  ChildProcess run(args, cwd("threads"), {"DITBENCH_INJECT_FAULT=1:1"});
  ASSERT_TRUE(run.wait(300s));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 120s);
  EXPECT_EQ(run.exit_code(), 1) << run.stderr_text();
  int failed = 0;
  for (const auto& r : read_results(dir_.path() / "threads" / "results.jsonl")) {
    if (r.status != RunStatus::kFailed) continue;
    ++failed;
    EXPECT_EQ(r.config["axes"]["gpus"], 2) << r.config_id;
    EXPECT_EQ(r.reason, "rank 1: injected fault at denoising step 1 (DITBENCH_INJECT_FAULT)");
  }
  EXPECT_EQ(failed, 2);  // ulysses and ring: each config fails, the sweep goes on
}

TEST_F(MultiProcess, KernelProfileOfAMultiRankConfigNeedsAProcessPerRank) {
  // CUPTI's activities are process-wide: rank threads are not profiled, a process per rank is (on
  // the CPU every rank then gets the profiler's own note instead of a breakdown).
  nlohmann::json suite =
      testing::tiny_cp_suite("profile", {{"gpus", {1, 2}}, {"cp_mode", {"none", "ulysses"}}}, 1);
  suite["profile"] = true;
  std::ofstream(dir_.file("profile.json")) << suite.dump(1);
  auto args = [&](const std::string& out) {
    return std::vector<std::string>{"run", dir_.file("profile.json"), "--out", dir_.file(out),
                                    "--no-progress"};
  };
  const int port = free_tcp_port();
  ChildProcess rank0(args("launch"), cwd("rank0"), launch_env(0, 2, port));
  ChildProcess rank1(args("launch"), cwd("rank1"), launch_env(1, 2, port));
  auto threads_args = args("threads");
  threads_args.insert(threads_args.end(), {"--gpus", "2"});
  ChildProcess threads(threads_args, cwd("threads"));
  ASSERT_TRUE(rank0.wait(300s));
  ASSERT_TRUE(rank1.wait(60s));
  ASSERT_TRUE(threads.wait(300s));
  ASSERT_EQ(rank0.exit_code(), 0) << rank0.stderr_text();
  ASSERT_EQ(rank1.exit_code(), 0) << rank1.stderr_text();
  ASSERT_EQ(threads.exit_code(), 0) << threads.stderr_text();
  const std::string refusal = "needs a process per rank";
  int multi_rank = 0;
  for (const std::string run : {"launch", "threads"}) {
    for (const auto& r : read_results(dir_.path() / run / "results.jsonl")) {
      if (r.status != RunStatus::kOk) continue;
      ASSERT_TRUE(r.profile && r.profile->note) << run << " " << r.config_id;
      const bool refused = r.profile->note->find(refusal) != std::string::npos;
      const bool threads_of_one_process = run == "threads" && r.config["axes"]["gpus"] == 2;
      EXPECT_EQ(refused, threads_of_one_process)
          << run << " " << r.config_id << ": " << *r.profile->note;
      multi_rank += r.config["axes"]["gpus"] == 2;
    }
  }
  EXPECT_EQ(multi_rank, 2);
}

TEST_F(MultiProcess, ARankLeftAloneTimesOutNamingTheRankItWaitedFor) {
  const int port = free_tcp_port();
  auto args = run_args("launch");
  args.insert(args.end(), {"--comm-timeout", "1"});
  ChildProcess rank0(args, cwd("rank0"), launch_env(0, 2, port));
  ASSERT_TRUE(rank0.wait(60s));
  EXPECT_EQ(rank0.exit_code(), 1);
  EXPECT_NE(rank0.stderr_text().find("rank 0 timed out in joining the launch at 127.0.0.1:" +
                                     std::to_string(port) + " after 1s (waiting for rank 1)"),
            std::string::npos)
      << rank0.stderr_text();
}

TEST_F(MultiProcess, ALaunchWithoutItsMasterAddressIsBadInput) {
  ChildProcess rank0(run_args("launch"), cwd("rank0"),
                     {"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=", "MASTER_PORT=29500"});
  ASSERT_TRUE(rank0.wait(60s));
  EXPECT_EQ(rank0.exit_code(), 2);
  EXPECT_NE(rank0.stderr_text().find("MASTER_ADDR is not set"), std::string::npos)
      << rank0.stderr_text();
}

}  // namespace
}  // namespace ditbench
