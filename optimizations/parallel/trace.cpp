#include "optimizations/parallel/trace.h"

#include <dirent.h>
#include <execinfo.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
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

// ---- call stacks of every thread on SIGQUIT (tracing on) ----

constexpr int kStackSignal = SIGUSR2;  // sent to each thread in turn by the SIGQUIT handler
std::atomic<bool> g_stack_written{false};

void write_str(const char* s) {
  ssize_t ignored = write(STDERR_FILENO, s, __builtin_strlen(s));
  (void)ignored;
}

void write_number(long v) {
  char buf[24];
  int i = sizeof buf;
  buf[--i] = 0;
  do {
    buf[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v > 0 && i > 0);
  write_str(buf + i);
}

// On one thread: its stack, symbolized as far as the dynamic symbol tables allow.
void on_stack_signal(int) {
  void* frames[48];
  const int n = backtrace(frames, 48);
  write_str("[stack thread ");
  write_number(static_cast<long>(syscall(SYS_gettid)));
  write_str("]\n");
  backtrace_symbols_fd(frames, n, STDERR_FILENO);
  g_stack_written.store(true);
}

// Asks every other thread of the process for its stack, one at a time, then writes its own.
void on_quit(int) {
  const pid_t pid = getpid();
  const long self = syscall(SYS_gettid);
  write_str("[stack] call stacks of every thread\n");
  if (DIR* dir = opendir("/proc/self/task")) {
    while (dirent* entry = readdir(dir)) {
      const long tid = std::strtol(entry->d_name, nullptr, 10);
      if (tid <= 0 || tid == self) continue;
      g_stack_written.store(false);
      if (syscall(SYS_tgkill, pid, tid, kStackSignal) != 0) continue;
      for (int i = 0; i < 200 && !g_stack_written.load(); ++i) usleep(1000);
    }
    closedir(dir);
  }
  on_stack_signal(0);
}

// A fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT): the stack of the thread it hit, then
// the default action (the handler is reset on entry, so the re-raise ends the process as before).
void on_fatal(int sig) {
  write_str("[stack] fatal signal ");
  write_number(sig);
  write_str(" on this thread\n");
  on_stack_signal(0);
  raise(sig);
}

// Installed at load time when DITBENCH_TRACE is set; backtrace() runs once first so that its
// library is loaded outside a signal handler.
[[maybe_unused]] const bool kStacksInstalled = [] {
  if (!trace_enabled()) return false;
  void* warm[1];
  backtrace(warm, 1);
  struct sigaction sa {};
  sa.sa_handler = on_stack_signal;
  sa.sa_flags = SA_RESTART;
  sigaction(kStackSignal, &sa, nullptr);
  sa.sa_handler = on_quit;
  sigaction(SIGQUIT, &sa, nullptr);
  sa.sa_handler = on_fatal;
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &sa, nullptr);
  return true;
}();

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
