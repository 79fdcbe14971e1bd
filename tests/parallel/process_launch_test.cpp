// Joining a multi-process launch: the launcher's environment read into a LaunchEnvironment (and
// bad values named), and ProcessLaunch's rendezvous, shared decisions, groups, barrier and abort
// flag, here with one thread per rank (each with its own store connection, as processes have).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>

#include "models/common/error.h"
#include "optimizations/parallel/process_launch.h"
#include "parallel/free_port.h"

namespace ditbench {
namespace {

using namespace std::chrono_literals;

const char* const kLaunchVariables[] = {"RANK",
                                        "WORLD_SIZE",
                                        "LOCAL_RANK",
                                        "SLURM_PROCID",
                                        "SLURM_NTASKS",
                                        "SLURM_LOCALID",
                                        "MASTER_ADDR",
                                        "MASTER_PORT",
                                        "TORCHELASTIC_USE_AGENT_STORE",
                                        "TORCHELASTIC_RESTART_COUNT"};

// Clears the launch variables for one test and puts the process's own values back after it.
class LaunchEnvironmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kLaunchVariables) {
      if (const char* v = std::getenv(name)) saved_[name] = v;
      ::unsetenv(name);
    }
  }
  void TearDown() override {
    for (const char* name : kLaunchVariables) ::unsetenv(name);
    for (const auto& [name, value] : saved_) ::setenv(name.c_str(), value.c_str(), 1);
  }
  void set(const std::map<std::string, std::string>& vars) {
    for (const auto& [name, value] : vars) ::setenv(name.c_str(), value.c_str(), 1);
  }
  std::string error() {
    try {
      launch_environment();
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  }

 private:
  std::map<std::string, std::string> saved_;
};

TEST_F(LaunchEnvironmentTest, AProcessStartedAloneIsNoLaunch) {
  EXPECT_FALSE(launch_environment());
  set({{"WORLD_SIZE", "1"}, {"RANK", "0"}});
  EXPECT_FALSE(launch_environment());
  set({{"WORLD_SIZE", ""}, {"SLURM_NTASKS", "4"}});  // an allocation, but no srun task of it
  EXPECT_FALSE(launch_environment());
}

TEST_F(LaunchEnvironmentTest, ReadsTorchrunsVariables) {
  set({{"RANK", "3"},
       {"WORLD_SIZE", "4"},
       {"LOCAL_RANK", "1"},
       {"MASTER_ADDR", "10.0.0.7"},
       {"MASTER_PORT", "29511"},
       {"TORCHELASTIC_USE_AGENT_STORE", "True"},
       {"TORCHELASTIC_RESTART_COUNT", "2"}});
  auto env = launch_environment();
  ASSERT_TRUE(env);
  EXPECT_EQ(env->rank, 3);
  EXPECT_EQ(env->world_size, 4);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->master_addr, "10.0.0.7");
  EXPECT_EQ(env->master_port, 29511);
  EXPECT_EQ(env->launcher, "torchrun");
  EXPECT_TRUE(env->agent_store);
  EXPECT_EQ(env->run_tag, "2");
}

TEST_F(LaunchEnvironmentTest, ReadsSrunsVariables) {
  set({{"SLURM_PROCID", "5"},
       {"SLURM_NTASKS", "8"},
       {"SLURM_LOCALID", "1"},
       {"MASTER_ADDR", "node12"},
       {"MASTER_PORT", "29500"}});
  auto env = launch_environment();
  ASSERT_TRUE(env);
  EXPECT_EQ(env->rank, 5);
  EXPECT_EQ(env->world_size, 8);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->launcher, "srun");
  EXPECT_FALSE(env->agent_store);
}

TEST_F(LaunchEnvironmentTest, NamesTheVariableThatIsMissingOrBad) {
  set({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "29500"}});
  EXPECT_NE(error().find("MASTER_ADDR is not set"), std::string::npos) << error();
  set({{"MASTER_ADDR", "127.0.0.1"}, {"RANK", "one"}});
  EXPECT_NE(error().find("RANK=one is not an integer"), std::string::npos) << error();
  set({{"RANK", "2"}});
  EXPECT_NE(error().find("RANK=2 is outside WORLD_SIZE=2"), std::string::npos) << error();
  set({{"RANK", "1"}, {"MASTER_PORT", "70000"}});
  EXPECT_NE(error().find("MASTER_PORT=70000 is not a TCP port"), std::string::npos) << error();
}

// n ranks, one thread each, each joining the launch on 127.0.0.1:port.
template <typename Fn>
void run_launch(int n, Fn fn, std::chrono::milliseconds timeout = 20s) {
  const int port = testing::free_tcp_port();
  std::vector<std::thread> threads;
  for (int rank = 0; rank < n; ++rank) {
    threads.emplace_back([=] {
      LaunchEnvironment env;
      env.rank = rank;
      env.world_size = n;
      env.master_addr = "127.0.0.1";
      env.master_port = port;
      env.launcher = "torchrun";
      CommOptions options;
      options.timeout = timeout;
      fn(rank, env, options);
    });
  }
  for (auto& t : threads) t.join();
}

TEST(ProcessLaunch, RanksShareRank0sDecisionsRunGroupsAndMeetAtTheBarrier) {
  std::mutex mutex;
  std::map<int, std::string> shared;
  std::map<int, at::Tensor> sums;
  run_launch(3, [&](int rank, const LaunchEnvironment& env, CommOptions options) {
    ProcessLaunch launch(env, options);
    EXPECT_EQ(launch.rank(), rank);
    EXPECT_EQ(launch.size(), 3);
    const std::string value = launch.from_rank0("plan", "decided by rank " + std::to_string(rank));
    // A config of 2 ranks: ranks 0 and 1 sum over their group, rank 2 goes to the barrier.
    at::Tensor sum = at::full({2}, rank + 1.0);
    if (rank < 2) launch.group(2, at::kCPU).all_reduce_sum(sum);
    launch.barrier();
    // A config of all 3 ranks, then the barrier again.
    at::Tensor all = launch.group(3, at::kCPU).all_gather(at::full({1}, rank, at::kLong));
    EXPECT_TRUE(at::equal(all, at::tensor({0, 1, 2}, at::kLong))) << all;
    launch.barrier();
    launch.completed();
    std::lock_guard<std::mutex> lock(mutex);
    shared[rank] = value;
    sums[rank] = sum;
  });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(shared[r], "decided by rank 0") << "rank " << r;
  EXPECT_TRUE(at::equal(sums[0], at::full({2}, 3.0)));  // 1 + 2
  EXPECT_TRUE(at::equal(sums[1], at::full({2}, 3.0)));
  EXPECT_TRUE(at::equal(sums[2], at::full({2}, 3.0)));  // its own, untouched
}

TEST(ProcessLaunch, AnAbortEndsEveryOtherRanksWaitNamingTheRank) {
  std::mutex mutex;
  std::map<int, std::string> errors;
  const auto started = std::chrono::steady_clock::now();
  run_launch(3, [&](int rank, const LaunchEnvironment& env, CommOptions options) {
    ProcessLaunch launch(env, options);
    try {
      if (rank == 2) {
        std::this_thread::sleep_for(100ms);
        launch.abort("out of memory in step 3");
        return;
      }
      if (rank == 1) launch.group(2, at::kCPU).all_to_all(at::zeros({2}));
      launch.barrier();  // rank 0 reaches it; rank 1 never gets past its all_to_all
      ADD_FAILURE() << "rank " << rank << " passed the barrier";
    } catch (const CommAborted& e) {
      EXPECT_EQ(e.failed_rank(), 2);
      std::lock_guard<std::mutex> lock(mutex);
      errors[rank] = e.what();
    }
  });
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0],
            "rank 0: the barrier after a config aborted because rank 2 failed: out of memory in "
            "step 3");
  // Rank 1's all_to_all waited for rank 0, which went to the barrier: the abort ends it too.
  EXPECT_EQ(errors[1], "rank 1: all_to_all aborted because rank 2 failed: out of memory in step 3");
}

TEST(ProcessLaunch, ARankThatLeavesEarlyStopsTheOthers) {
  std::string error;
  run_launch(2, [&](int rank, const LaunchEnvironment& env, CommOptions options) {
    ProcessLaunch launch(env, options);
    if (rank == 1) return;  // an exception would leave the same way: without completed()
    try {
      launch.barrier();
    } catch (const CommAborted& e) {
      error = e.what();
    }
  });
  EXPECT_NE(error.find("rank 1 left the launch before its end"), std::string::npos) << error;
}

TEST(ProcessLaunch, JoiningTimesOutNamingTheRanksThatNeverCame) {
  LaunchEnvironment env;
  env.world_size = 3;
  env.master_addr = "127.0.0.1";
  env.master_port = testing::free_tcp_port();
  CommOptions options;
  options.timeout = 300ms;
  try {
    ProcessLaunch launch(env, options);
    FAIL() << "joined a launch of 3 alone";
  } catch (const CommError& e) {
    EXPECT_EQ(std::string(e.what()), "rank 0 timed out in joining the launch at 127.0.0.1:" +
                                         std::to_string(env.master_port) +
                                         " after 0.3s (waiting for rank 1, 2)");
  }
}

}  // namespace
}  // namespace ditbench
