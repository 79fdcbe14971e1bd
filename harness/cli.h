#pragma once

namespace ditbench {
// Parses the command line and runs the subcommand; returns the process exit status
// (0 ok, 1 a check failed, 2 bad input).
int cli_main(int argc, char** argv);
}  // namespace ditbench
