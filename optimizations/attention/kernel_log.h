#pragma once
// Names of the GPU kernels a thread launches, read from CUPTI's launch callbacks (the callback
// runs on the launching thread, so each rank thread sees only its own launches). Builds without
// CUPTI get a collector that collects nothing and says why.
#include <string>
#include <vector>

namespace ditbench {

class KernelNameCollector {
 public:
  // True in a CUPTI build (DITBENCH_HAS_CUPTI).
  static bool available();
  // Why names are missing in this build: "kernel names need a CUPTI build"; empty when available.
  static std::string unavailable_reason();

  // Starts collecting this thread's launches; collectors nest (each sees every launch made while
  // it lives). Throws Unsupported if CUPTI refuses to subscribe (another profiler holds it).
  KernelNameCollector();
  ~KernelNameCollector();
  KernelNameCollector(const KernelNameCollector&) = delete;
  KernelNameCollector& operator=(const KernelNameCollector&) = delete;

  // Distinct demangled kernel names launched since construction (or the last take), in
  // first-seen order.
  std::vector<std::string> take();

 private:
  std::vector<std::string> names_;
};

}  // namespace ditbench
