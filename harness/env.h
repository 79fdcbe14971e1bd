#pragma once
// The environment block of every result record: enough to tell two machines' numbers apart
// (GPU, driver, CUDA, LibTorch, NCCL, git commit, host, CPU, threads, determinism, build options).
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

namespace ditbench {

// Keys always present: gpu, gpu_memory_bytes, compute_capability, driver, cuda, torch, nccl, git,
// version, host, cpu, threads, deterministic, build{cuda, nccl, cupti, nvtx, opencv, ffmpeg}.
// Values that do not apply (no GPU, no NCCL in this build) are null. GPU queries run only when
// the build has CUDA and `device` is a CUDA device that is present.
nlohmann::json capture_environment(at::Device device);

}  // namespace ditbench
