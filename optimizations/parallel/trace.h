#pragma once
// DITBENCH_TRACE=1: one line on stderr per event of the multi-rank machinery (communicator set-up,
// every collective as it is enqueued and as it is waited for, the runner's stages per rank, each
// denoising step), with the seconds since the process started and the thread, so that a launch
// that stops making progress shows where every rank stands. With tracing on, SIGQUIT (as
// scripts/device.sh sends to a run past its time limit) writes every thread's call stack to
// stderr and the process goes on.
#include <string>

namespace ditbench {

bool trace_enabled();
void trace(const std::string& event);

}  // namespace ditbench
