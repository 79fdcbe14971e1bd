#include "harness/gpu_telemetry.h"

#include <dlfcn.h>

#include <algorithm>
#include <condition_variable>
#include <list>
#include <mutex>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "harness/stats.h"

#ifdef DITBENCH_HAS_CUDA
#include <cuda_runtime_api.h>
#endif

namespace ditbench {
namespace {

// The few entry points of NVML's C API the sampler calls, with the signatures of nvml.h (a
// stable ABI: the _v2 names are those nvml.h maps nvmlInit and the PCI lookup to). Loaded with
// dlopen so that the binary has no link-time dependency on the driver's library.
using NvmlDevice = struct NvmlDeviceOpaque*;
using NvmlReturn = int;                 // NVML_SUCCESS = 0
constexpr int kNvmlClockSm = 1;         // NVML_CLOCK_SM
constexpr int kNvmlTemperatureGpu = 0;  // NVML_TEMPERATURE_GPU

struct Nvml {
  NvmlReturn (*init)() = nullptr;
  NvmlReturn (*handle_by_pci_bus_id)(const char*, NvmlDevice*) = nullptr;
  NvmlReturn (*clock_info)(NvmlDevice, int, unsigned int*) = nullptr;
  NvmlReturn (*max_clock_info)(NvmlDevice, int, unsigned int*) = nullptr;
  NvmlReturn (*power_usage)(NvmlDevice, unsigned int*) = nullptr;  // milliwatts
  NvmlReturn (*enforced_power_limit)(NvmlDevice, unsigned int*) = nullptr;
  NvmlReturn (*temperature)(NvmlDevice, int, unsigned int*) = nullptr;
  NvmlReturn (*clock_event_reasons)(NvmlDevice, unsigned long long*) = nullptr;
  std::string error;  // why it cannot be used; empty when it can
};

template <typename F>
bool bind(void* library, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(library, name));
  return out != nullptr;
}

// NVML from `library`, loaded and initialized once per library name for the process.
const Nvml& nvml(const std::string& library) {
  static std::mutex mutex;
  static std::list<std::pair<std::string, Nvml>> loaded;  // stable addresses
  std::lock_guard<std::mutex> lock(mutex);
  for (const auto& [name, api] : loaded)
    if (name == library) return api;
  Nvml api;
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    api.error = "NVML not loaded (" + library + ": " + (why ? why : "not found") + ")";
  } else if (!bind(handle, "nvmlInit_v2", api.init) ||
             !bind(handle, "nvmlDeviceGetHandleByPciBusId_v2", api.handle_by_pci_bus_id) ||
             !bind(handle, "nvmlDeviceGetClockInfo", api.clock_info) ||
             !bind(handle, "nvmlDeviceGetMaxClockInfo", api.max_clock_info) ||
             !bind(handle, "nvmlDeviceGetPowerUsage", api.power_usage) ||
             !bind(handle, "nvmlDeviceGetEnforcedPowerLimit", api.enforced_power_limit) ||
             !bind(handle, "nvmlDeviceGetTemperature", api.temperature)) {
    api.error = library + " lacks an NVML entry point the sampler needs";
  } else if (api.init() != 0) {
    api.error = "nvmlInit failed (" + library + ")";
  } else if (!bind(handle, "nvmlDeviceGetCurrentClocksEventReasons", api.clock_event_reasons)) {
    // Drivers before the rename know the same query by its older name.
    bind(handle, "nvmlDeviceGetCurrentClocksThrottleReasons", api.clock_event_reasons);
  }
  loaded.emplace_back(library, api);
  return loaded.back().second;
}

// The NVML handle of CUDA device `index` of this process (CUDA_VISIBLE_DEVICES renumbers devices,
// NVML does not: they meet at the PCI bus id), or the reason there is none.
std::optional<NvmlDevice> nvml_device(const Nvml& api, int index, std::string& why) {
#ifdef DITBENCH_HAS_CUDA
  char bus_id[32] = {0};
  if (cudaDeviceGetPCIBusId(bus_id, sizeof(bus_id), index) != cudaSuccess) {
    cudaGetLastError();
    why = "CUDA device " + std::to_string(index) + " has no PCI bus id";
    return std::nullopt;
  }
  NvmlDevice device = nullptr;
  if (api.handle_by_pci_bus_id(bus_id, &device) != 0) {
    why = "NVML does not know CUDA device " + std::to_string(index) + " (" + bus_id + ")";
    return std::nullopt;
  }
  return device;
#else
  (void)api;
  (void)index;
  why = "a build without CUDA";
  return std::nullopt;
#endif
}

}  // namespace

GpuTelemetryEntry summarize_telemetry(int device, const std::vector<TelemetrySample>& samples,
                                      std::optional<double> power_limit_w,
                                      std::optional<double> max_sm_clock_mhz) {
  if (samples.empty()) throw std::invalid_argument("summarize_telemetry: no samples");
  GpuTelemetryEntry e;
  e.device = device;
  e.samples = static_cast<int64_t>(samples.size());
  std::vector<double> clocks, power;
  double hottest = samples.front().temperature_c;
  int64_t power_capped = 0, thermal = 0;
  for (const auto& s : samples) {
    clocks.push_back(s.sm_clock_mhz);
    power.push_back(s.power_w);
    hottest = std::max(hottest, s.temperature_c);
    if (s.clock_event_reasons & (kClockEventSwPowerCap | kClockEventHwPowerBrake)) ++power_capped;
    if (s.clock_event_reasons & (kClockEventSwThermal | kClockEventHwThermal)) ++thermal;
  }
  const SampleStats clock_stats = summarize(clocks);
  e.sm_clock_mhz_median = clock_stats.median_s;
  e.sm_clock_mhz_min = clock_stats.min_s;
  e.sm_clock_mhz_max = clock_stats.max_s;
  e.power_w_mean = std::accumulate(power.begin(), power.end(), 0.0) / power.size();
  e.power_w_max = *std::max_element(power.begin(), power.end());
  e.temperature_c_max = hottest;
  e.power_capped = static_cast<double>(power_capped) / samples.size();
  e.thermal_slowdown = static_cast<double>(thermal) / samples.size();
  e.power_limit_w = power_limit_w;
  e.max_sm_clock_mhz = max_sm_clock_mhz;
  return e;
}

namespace {

// One sampled GPU.
struct SampledDevice {
  int index = 0;
  NvmlDevice handle = nullptr;
  const Nvml* api = nullptr;
  std::vector<TelemetrySample> samples;
  std::optional<double> power_limit_w, max_sm_clock_mhz;

  void sample() {
    unsigned int clock = 0, milliwatts = 0, celsius = 0;
    unsigned long long reasons = 0;
    if (api->clock_info(handle, kNvmlClockSm, &clock) != 0 ||
        api->power_usage(handle, &milliwatts) != 0 ||
        api->temperature(handle, kNvmlTemperatureGpu, &celsius) != 0) {
      return;  // a reading that failed is left out, not recorded as zeros
    }
    if (api->clock_event_reasons) api->clock_event_reasons(handle, &reasons);
    samples.push_back({static_cast<double>(clock), milliwatts / 1000.0,
                       static_cast<double>(celsius), static_cast<uint64_t>(reasons)});
  }
};

}  // namespace

struct TelemetrySampler::State {
  std::vector<SampledDevice> devices;
  std::chrono::milliseconds period{0};
  std::optional<std::string> note;
  std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::thread thread;
  std::optional<TelemetryRecord> result;

  void sample_all() {
    for (auto& d : devices) d.sample();
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    if (thread.joinable()) thread.join();
  }
};

TelemetrySampler::TelemetrySampler(std::vector<int> cuda_devices, std::chrono::milliseconds period,
                                   const std::string& library)
    : state_(std::make_unique<State>()) {
  State& st = *state_;
  st.period = period;
  const Nvml& api = nvml(library);
  if (!api.error.empty()) {
    st.note = api.error;
    return;
  }
  for (int index : cuda_devices) {
    std::string why;
    const auto handle = nvml_device(api, index, why);
    if (!handle) {
      st.note = why;
      st.devices.clear();
      return;
    }
    SampledDevice d;
    d.index = index;
    d.handle = *handle;
    d.api = &api;
    unsigned int value = 0;
    if (api.enforced_power_limit(d.handle, &value) == 0) d.power_limit_w = value / 1000.0;
    if (api.max_clock_info(d.handle, kNvmlClockSm, &value) == 0) d.max_sm_clock_mhz = value;
    st.devices.push_back(std::move(d));
  }
  st.sample_all();
  st.thread = std::thread([&st] {
    std::unique_lock<std::mutex> lock(st.mutex);
    while (!st.wake.wait_for(lock, st.period, [&st] { return st.stopping; })) st.sample_all();
  });
}

TelemetrySampler::~TelemetrySampler() { state_->stop(); }

TelemetryRecord TelemetrySampler::finish() {
  State& st = *state_;
  if (st.result) return *st.result;
  const bool sampling = st.thread.joinable();
  st.stop();
  if (sampling) st.sample_all();
  TelemetryRecord record;
  record.period_s = st.period.count() / 1000.0;
  record.note = st.note;
  for (const auto& d : st.devices) {
    if (d.samples.empty()) {
      record.note = "NVML gave no readings of CUDA device " + std::to_string(d.index);
      continue;
    }
    record.devices.push_back(
        summarize_telemetry(d.index, d.samples, d.power_limit_w, d.max_sm_clock_mhz));
  }
  st.result = record;
  return record;
}

}  // namespace ditbench
