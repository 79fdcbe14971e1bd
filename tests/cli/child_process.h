#pragma once
// Runs the real ditbench binary as a child process, as a user or CI script would: its own working
// folder, stdout and stderr captured in files, exit status or terminating signal reported. Tests of
// the command-line contract and of interrupted sweeps share it.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace ditbench::testing {

inline std::string ditbench_binary() { return std::string(DITBENCH_BINARY_DIR) + "/ditbench"; }

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Non-empty lines of `text`.
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

class ChildProcess {
 public:
  // Starts `ditbench args...` in `work_dir`, stdout to work_dir/stdout.txt, stderr to
  // work_dir/stderr.txt; `env` ("NAME=value") adds to or replaces this process's environment.
  ChildProcess(const std::vector<std::string>& args, const std::filesystem::path& work_dir,
               const std::vector<std::string>& env = {})
      : work_dir_(work_dir) {
    std::vector<std::string> argv_strings = {ditbench_binary()};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    // Everything the child touches is prepared before fork: between fork and exec a child of a
    // multithreaded process may only make async-signal-safe calls.
    std::vector<char*> argv;
    for (auto& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings = env;
    for (char** e = environ; *e; ++e) {
      const std::string entry = *e;
      const std::string name = entry.substr(0, entry.find('=') + 1);
      bool replaced = false;
      for (const auto& mine : env) replaced |= mine.rfind(name, 0) == 0;
      if (!replaced) env_strings.push_back(entry);
    }
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string dir = work_dir.string(), out = (work_dir / "stdout.txt").string(),
                      err = (work_dir / "stderr.txt").string();
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      const int out_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int err_fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (out_fd < 0 || err_fd < 0 || ::dup2(out_fd, 1) < 0 || ::dup2(err_fd, 2) < 0 ||
          ::chdir(dir.c_str()) != 0)
        ::_exit(127);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
  }
  ~ChildProcess() {
    if (running()) {
      ::kill(pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // True until the child has exited and been reaped.
  bool running() {
    if (finished_) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      finished_ = true;
      status_ = status;
    }
    return !finished_;
  }
  // Waits for the child; false when it is still running after `limit` (it is then killed).
  bool wait(std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (running()) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        while (running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }
  void signal(int sig) { ::kill(pid_, sig); }

  // After wait(): the exit status, or -1 when a signal ended the child.
  int exit_code() const { return WIFEXITED(status_) ? WEXITSTATUS(status_) : -1; }
  // After wait(): the signal that ended the child, or 0.
  int term_signal() const { return WIFSIGNALED(status_) ? WTERMSIG(status_) : 0; }
  std::string stdout_text() const { return read_text(work_dir_ / "stdout.txt"); }
  std::string stderr_text() const { return read_text(work_dir_ / "stderr.txt"); }

 private:
  std::filesystem::path work_dir_;
  pid_t pid_ = -1;
  bool finished_ = false;
  int status_ = 0;
};

}  // namespace ditbench::testing
