// DITBENCH_TRACE=1 makes SIGQUIT write the call stack of every thread of `ditbench run` to stderr,
// with ditbench's own functions named, and the run goes on: how a multi-rank run that stops making
// progress shows where each rank waits.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <string>
#include <thread>

#include "cli/child_process.h"
#include "parallel/tiny_cp_suite.h"
#include "test_util.h"

namespace ditbench {
namespace {
using namespace std::chrono_literals;
using ditbench::testing::ChildProcess;
using ditbench::testing::TempDir;

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Polls the child's stderr until `done` holds; false if the child exits or `limit` passes first.
template <typename Done>
bool wait_for_stderr(ChildProcess& child, std::chrono::seconds limit, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done(child.stderr_text())) {
    if (!child.running() || std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TEST(TraceStacks, SigquitWritesEveryThreadsStackAndTheRunGoesOn) {
  TempDir dir("ditbench_trace_stacks");
  // Two in-process ranks and far more steps than the test waits for: it stops the run itself.
  auto suite = testing::tiny_cp_suite("stacks", {{"gpus", {2}}, {"cp_mode", {"ulysses"}}}, 5000);
  std::ofstream(dir.file("suite.json")) << suite.dump(1);
  ChildProcess child({"run", dir.file("suite.json"), "--out", dir.file("out"), "--no-progress"},
                     dir.path(), {"DITBENCH_TRACE=1"});

  ASSERT_TRUE(wait_for_stderr(
      child, 120s,
      [](const std::string& err) { return err.find("rank 1: step 2") != std::string::npos; }))
      << "the 2-rank config never reached step 2:\n"
      << child.stderr_text();
  child.signal(SIGQUIT);
  // The main thread, both rank threads and the thread that took the signal at least.
  ASSERT_TRUE(wait_for_stderr(child, 60s, [](const std::string& err) {
    return err.find("[stack] call stacks of every thread") != std::string::npos &&
           count_of(err, "[stack thread ") >= 3;
  })) << child.stderr_text().substr(0, 4000);
  const std::string err = child.stderr_text();
  // Frames of ditbench's own code are named (its symbols are exported), e.g. the rank threads'.
  EXPECT_NE(err.find("_ZN8ditbench"), std::string::npos) << err.substr(0, 4000);

  // SIGQUIT did not end the run: it is still going, and stops as asked by SIGTERM.
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(child.running()) << "SIGQUIT ended the run";
  child.signal(SIGTERM);
  ASSERT_TRUE(child.wait(120s)) << "the run ignored SIGTERM";
  EXPECT_EQ(child.exit_code(), 130) << child.stderr_text().substr(0, 4000);
}

}  // namespace
}  // namespace ditbench
