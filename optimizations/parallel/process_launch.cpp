#include "optimizations/parallel/process_launch.h"

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "models/common/error.h"
#include "optimizations/parallel/nccl_communicator.h"
#include "optimizations/parallel/store_communicator.h"

#ifdef DITBENCH_HAS_NCCL
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace ditbench {

namespace {

const char* env_or_null(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, const char* text) {
  try {
    size_t used = 0;
    const int value = std::stoi(text, &used);
    if (used == std::strlen(text)) return value;
  } catch (const std::exception&) {
  }
  throw InputError(std::string("environment variable ") + name + "=" + text + " is not an integer");
}

}  // namespace

std::optional<LaunchEnvironment> launch_environment() {
  LaunchEnvironment env;
  const char *rank = nullptr, *world = nullptr, *local = nullptr;
  const char *rank_name = "RANK", *world_name = "WORLD_SIZE", *local_name = "LOCAL_RANK";
  if ((world = env_or_null("WORLD_SIZE"))) {
    env.launcher = "torchrun";
    rank = env_or_null("RANK");
    local = env_or_null("LOCAL_RANK");
  } else if ((world = env_or_null("SLURM_NTASKS")) && env_or_null("SLURM_PROCID")) {
    env.launcher = "srun";
    rank_name = "SLURM_PROCID";
    world_name = "SLURM_NTASKS";
    local_name = "SLURM_LOCALID";
    rank = env_or_null(rank_name);
    local = env_or_null(local_name);
  } else {
    return std::nullopt;
  }
  env.world_size = env_int(world_name, world);
  if (env.world_size <= 1) return std::nullopt;
  const std::string hint = " (" + env.launcher + " sets " + world_name + "=" + world +
                           "; a launch of several processes needs RANK, WORLD_SIZE, MASTER_ADDR "
                           "and MASTER_PORT, or SLURM_PROCID, SLURM_NTASKS, MASTER_ADDR and "
                           "MASTER_PORT)";
  if (!rank)
    throw InputError(std::string("environment variable ") + rank_name + " is not set" + hint);
  env.rank = env_int(rank_name, rank);
  env.local_rank = local ? env_int(local_name, local) : 0;
  const char* addr = env_or_null("MASTER_ADDR");
  const char* port = env_or_null("MASTER_PORT");
  if (!addr) throw InputError("environment variable MASTER_ADDR is not set" + hint);
  if (!port) throw InputError("environment variable MASTER_PORT is not set" + hint);
  env.master_addr = addr;
  env.master_port = env_int("MASTER_PORT", port);
  if (env.rank < 0 || env.rank >= env.world_size) {
    throw InputError(std::string("environment: ") + rank_name + "=" + rank + " is outside " +
                     world_name + "=" + world);
  }
  if (env.master_port <= 0 || env.master_port > 65535) {
    throw InputError(std::string("environment variable MASTER_PORT=") + port +
                     " is not a TCP port");
  }
  if (env.local_rank < 0) {
    throw InputError(std::string("environment variable ") + local_name + "=" + local +
                     " is negative");
  }
  const char* agent = env_or_null("TORCHELASTIC_USE_AGENT_STORE");
  env.agent_store = agent && std::string(agent) == "True";
  if (const char* restart = env_or_null("TORCHELASTIC_RESTART_COUNT")) env.run_tag = restart;
  return env;
}

struct ProcessLaunch::State {
  LaunchEnvironment env;
  CommOptions options;
  c10::intrusive_ptr<c10d::Store> store;
  std::shared_ptr<LaunchStore> keys;
  std::string prefix;
  uint64_t barriers = 0;
  bool aborted = false;
  bool completed = false;
  std::map<int, std::unique_ptr<Communicator>> groups;  // by size
#ifdef DITBENCH_HAS_NCCL
  // Links this process's NCCL communicators to the launch: the monitor turns a failure that
  // another rank published into an abort of every one of them (their watchdogs poll it).
  std::shared_ptr<NcclAbortSignal> nccl_signal = std::make_shared<NcclAbortSignal>();
  std::vector<NcclCommunicator*> nccl;
  std::thread monitor;
  std::atomic<bool> stop_monitor{false};
  void start_monitor();
#endif
};

#ifdef DITBENCH_HAS_NCCL
void ProcessLaunch::State::start_monitor() {
  if (monitor.joinable()) return;
  // Its own connection: the main thread's store calls never wait behind the monitor's.
  auto own = std::make_shared<LaunchStore>(store->clone(), prefix, env.rank);
  monitor = std::thread([this, own] {
    while (!stop_monitor.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      try {
        auto failure = own->failure("monitor");
        std::lock_guard<std::mutex> lock(nccl_signal->mutex);
        if (failure && nccl_signal->failed_rank < 0) {
          nccl_signal->failed_rank = failure->first;
          nccl_signal->reason = failure->second;
        } else if (!failure && nccl_signal->failed_rank >= 0) {
          // A communicator of this rank failed by itself (NCCL error, timeout): tell the others.
          own->publish_failure(nccl_signal->failed_rank, nccl_signal->reason);
        }
      } catch (const std::exception&) {
        return;  // the store is gone: the main thread finds out at its next operation
      }
    }
  });
}
#endif

ProcessLaunch::ProcessLaunch(const LaunchEnvironment& env, CommOptions options)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.env = env;
  s.options = options;
  s.prefix = "ditbench/" + (env.run_tag.empty() ? std::string() : env.run_tag + "/");
  const bool serve = env.rank == 0 && !env.agent_store;
  c10d::TCPStoreOptions store_options;
  store_options.port = static_cast<std::uint16_t>(env.master_port);
  store_options.isServer = serve;
  store_options.numWorkers = env.world_size;
  store_options.waitWorkers = false;
  store_options.timeout = options.timeout;
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  try {
    s.store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, store_options);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    throw CommError("rank " + std::to_string(env.rank) + ": cannot " + (serve ? "serve" : "reach") +
                    " the launch's store at " + where + ": " + what.substr(0, what.find('\n')));
  }
  s.keys = std::make_shared<LaunchStore>(s.store, s.prefix, env.rank);
  const std::string op = "joining the launch at " + where;
  std::vector<std::string> joined;
  for (int r = 0; r < env.world_size; ++r) joined.push_back("joined/" + std::to_string(r));
  s.keys->set(joined[static_cast<size_t>(env.rank)], {1}, op);
  s.keys->wait_until(
      op, [&] { return s.keys->exists(joined, op); },
      [&] {
        std::vector<int> missing;
        for (int r = 0; r < env.world_size; ++r)
          if (!s.keys->exists({joined[static_cast<size_t>(r)]}, op)) missing.push_back(r);
        return missing;
      },
      options.timeout);
}

ProcessLaunch::~ProcessLaunch() {
  State& s = *state_;
  try {
    if (!s.completed && !s.aborted) {
      s.keys->publish_failure(
          s.env.rank, "rank " + std::to_string(s.env.rank) + " left the launch before its end");
    }
    s.aborted = s.aborted || !s.completed || s.keys->failure("leaving");
  } catch (const std::exception&) {
  }
#ifdef DITBENCH_HAS_NCCL
  s.stop_monitor = true;
  if (s.monitor.joinable()) s.monitor.join();
#endif
  s.groups.clear();
  if (!s.env.agent_store && s.env.rank == 0) {
    // The store lives in this process: wait until every other rank has left, so that a rank
    // still reading the abort flag or the last barrier finds the store there.
    const auto limit = s.aborted ? std::chrono::milliseconds(10000) : s.options.timeout;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    try {
      while (s.keys->add("left", 0, "leaving") < s.env.world_size - 1 &&
             std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    } catch (const std::exception&) {
    }
  } else {
    try {
      s.keys->add("left", 1, "leaving");
    } catch (const std::exception&) {
    }
  }
}

void ProcessLaunch::completed() { state_->completed = true; }

int ProcessLaunch::rank() const { return state_->env.rank; }
int ProcessLaunch::size() const { return state_->env.world_size; }
const LaunchEnvironment& ProcessLaunch::environment() const { return state_->env; }
const CommOptions& ProcessLaunch::options() const { return state_->options; }

Communicator& ProcessLaunch::group(int n, const at::Device& device) {
  State& s = *state_;
  if (n < 1 || n > s.env.world_size || s.env.rank >= n) {
    throw CommError("rank " + std::to_string(s.env.rank) + " is not among the " +
                    std::to_string(n) + " ranks of this group (launch of " +
                    std::to_string(s.env.world_size) + ")");
  }
  auto& slot = s.groups[n];
  if (slot) return *slot;
  const std::string name = "g" + std::to_string(n);
  if (!device.is_cuda()) {
    std::vector<int> members;
    for (int r = 0; r < n; ++r) members.push_back(r);
    slot = std::make_unique<StoreCommunicator>(s.keys, name, members, s.env.rank, s.options);
    return *slot;
  }
#ifdef DITBENCH_HAS_NCCL
  // Rank 0 of the group makes the NCCL id; its members read it from the store.
  const std::string op = "creating the NCCL communicator of ranks 0-" + std::to_string(n - 1);
  ncclUniqueId id;
  const std::string key = name + "/nccl_id";
  if (s.env.rank == 0) {
    id = NcclCommunicator::new_unique_id();
    const auto* bytes = reinterpret_cast<const uint8_t*>(&id);
    s.keys->set(key, std::vector<uint8_t>(bytes, bytes + sizeof(id)), op);
  } else {
    s.keys->wait_until(
        op, [&] { return s.keys->exists({key}, op); }, [] { return std::vector<int>{0}; },
        s.options.timeout);
    const auto bytes = s.keys->get(key, op);
    if (bytes.size() != sizeof(id)) {
      throw CommError("rank " + std::to_string(s.env.rank) + ": the store's NCCL id has " +
                      std::to_string(bytes.size()) + " bytes, expected " +
                      std::to_string(sizeof(id)));
    }
    std::memcpy(&id, bytes.data(), sizeof(id));
  }
  s.start_monitor();
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device.index()));
  auto comm = std::make_unique<NcclCommunicator>(id, n, s.env.rank, s.options, s.nccl_signal);
  s.nccl.push_back(comm.get());
  slot = std::move(comm);
  return *slot;
#else
  throw Unsupported("this build has no NCCL to connect the GPUs of a multi-process launch");
#endif
}

std::string ProcessLaunch::from_rank0(const std::string& name, const std::string& value) {
  State& s = *state_;
  const std::string op = "reading rank 0's " + name;
  const std::string key = "shared/" + name;
  if (s.env.rank == 0) {
    s.keys->set(key, std::vector<uint8_t>(value.begin(), value.end()), op);
    return value;
  }
  s.keys->wait_until(
      op, [&] { return s.keys->exists({key}, op); }, [] { return std::vector<int>{0}; },
      s.options.timeout);
  const auto bytes = s.keys->get(key, op);
  return std::string(bytes.begin(), bytes.end());
}

void ProcessLaunch::barrier() {
  State& s = *state_;
  const std::string key = "barrier/" + std::to_string(s.barriers++);
  const std::string op = "the barrier after a config";
  s.keys->add(key, 1, op);
  s.keys->wait_until(
      op, [&] { return s.keys->add(key, 0, op) >= s.env.world_size; },
      [] { return std::vector<int>{}; }, std::nullopt);
}

void ProcessLaunch::abort(const std::string& reason) {
  State& s = *state_;
  s.aborted = true;
  s.keys->publish_failure(s.env.rank, reason);
#ifdef DITBENCH_HAS_NCCL
  for (NcclCommunicator* comm : s.nccl) comm->abort(reason);
#endif
}

void ProcessLaunch::check_failure(const std::string& op) {
  if (state_->keys->failure(op)) state_->aborted = true;
  state_->keys->check_failure(op);
}

}  // namespace ditbench
