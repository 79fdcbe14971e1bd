#pragma once
// Runs the CLI in-process, as `ditbench ARGS...`, and captures what it prints on stdout.
#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

#include "harness/cli.h"

namespace ditbench::testing {

inline int run_cli(std::vector<std::string> args, std::string* out = nullptr) {
  args.insert(args.begin(), "ditbench");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  ::testing::internal::CaptureStdout();
  const int rc = cli_main(static_cast<int>(argv.size()), argv.data());
  std::cout.flush();
  const std::string text = ::testing::internal::GetCapturedStdout();
  if (out) *out = text;
  return rc;
}

}  // namespace ditbench::testing
