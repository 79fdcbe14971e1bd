#include "harness/cli.h"

#include <CLI/CLI.hpp>
#include <iostream>

#include "build_info.h"

namespace ditbench {
int cli_main(int argc, char** argv) {
  CLI::App app{"ditbench: benchmark and evaluation harness for diffusion transformers"};
  app.set_version_flag("--version", std::string("ditbench ") + build::kVersion + " (" + build::kGitCommit + ")");
  CLI11_PARSE(app, argc, argv);
  return 0;
}
}  // namespace ditbench
