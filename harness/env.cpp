#include "harness/env.h"

#include <torch/version.h>
#include <unistd.h>

#include <cctype>
#include <fstream>
#include <sstream>
#include <string>

#include "build_info.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <cuda_runtime_api.h>
#endif
#ifdef DITBENCH_HAS_NCCL
#include <nccl.h>
#endif

namespace ditbench {
using nlohmann::json;

namespace {

// "Model name" of the first processor in /proc/cpuinfo (Linux); null elsewhere.
json cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) break;
    auto start = line.find_first_not_of(" \t", colon + 1);
    return start == std::string::npos ? "" : line.substr(start);
  }
  return nullptr;
}

json host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return nullptr;
  return std::string(buf);
}

#ifdef DITBENCH_HAS_CUDA
std::string cuda_version_text(int version) {  // 12080 -> "12.8"
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

// The kernel driver's version ("580.159.04") from /proc, whose first line reads e.g. "NVRM version:
// NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ..."; the first token after
// "Kernel Module" that starts with a digit and has a dot is the version. Otherwise the CUDA driver
// API level.
std::string driver_version() {
  std::ifstream in("/proc/driver/nvidia/version");
  std::string line;
  if (std::getline(in, line)) {
    auto pos = line.find("Kernel Module");
    if (pos != std::string::npos) {
      std::istringstream tokens(line.substr(pos + 13));
      std::string token;
      while (tokens >> token)
        if (std::isdigit(static_cast<unsigned char>(token[0])) &&
            token.find('.') != std::string::npos)
          return token;
    }
  }
  int version = 0;
  if (cudaDriverGetVersion(&version) == cudaSuccess && version > 0)
    return "cuda-driver-api " + cuda_version_text(version);
  return "unknown";
}
#endif

}  // namespace

json capture_environment(at::Device device) {
  json env = {{"gpu", nullptr},
              {"gpu_memory_bytes", nullptr},
              {"compute_capability", nullptr},
              {"driver", nullptr},
              {"cuda", nullptr},
              {"torch", TORCH_VERSION},
              {"nccl", nullptr},
              {"git", build::kGitCommit},
              {"version", build::kVersion},
              {"host", host_name()},
              {"cpu", cpu_model()},
              {"threads", at::get_num_threads()},
              {"deterministic", at::globalContext().deterministicAlgorithms()},
              {"device", device.str()},
              {"build",
               {{"cuda", build::kHasCuda},
                {"nccl", build::kHasNccl},
                {"cupti", build::kHasCupti},
                {"nvtx", build::kHasNvtx},
                {"opencv", build::kHasOpenCV},
                {"ffmpeg", build::kHasFFmpeg}}}};
#ifdef DITBENCH_HAS_CUDA
  int runtime = 0;
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) env["cuda"] = cuda_version_text(runtime);
  if (device.is_cuda() && at::cuda::is_available()) {
    int index = device.has_index() ? device.index() : at::cuda::current_device();
    const cudaDeviceProp* prop = at::cuda::getDeviceProperties(index);
    env["gpu"] = prop->name;
    env["gpu_memory_bytes"] = static_cast<int64_t>(prop->totalGlobalMem);
    env["compute_capability"] = std::to_string(prop->major) + "." + std::to_string(prop->minor);
    env["driver"] = driver_version();
  }
#endif
#ifdef DITBENCH_HAS_NCCL
  int nccl = 0;
  if (ncclGetVersion(&nccl) == ncclSuccess)  // e.g. 22703 -> 2.27.3
    env["nccl"] = std::to_string(nccl / 10000) + "." + std::to_string((nccl % 10000) / 100) + "." +
                  std::to_string(nccl % 100);
#endif
  return env;
}

}  // namespace ditbench
