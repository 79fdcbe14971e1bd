#include "optimizations/parallel/trace.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace ditbench {

namespace {

const auto kStart = std::chrono::steady_clock::now();

}  // namespace

bool trace_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("DITBENCH_TRACE");
    return v && *v && std::string(v) != "0";
  }();
  return enabled;
}

void trace(const std::string& event) {
  if (!trace_enabled()) return;
  static std::mutex mutex;
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - kStart).count();
  const size_t thread = std::hash<std::thread::id>()(std::this_thread::get_id()) % 100000;
  std::lock_guard<std::mutex> lock(mutex);
  std::fprintf(stderr, "[trace %9.3f t%05zu] %s\n", t, thread, event.c_str());
  std::fflush(stderr);
}

}  // namespace ditbench
