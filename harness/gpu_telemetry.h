#pragma once
// Clock, power and temperature of the GPUs a config runs on, sampled while its timed repeats run
// (the record's "telemetry"). A full-size step keeps a GPU at its power limit, where the driver
// lowers the SM clock: the same kernels then take longer than in a short benchmark, and two
// machines' numbers differ by their clocks. The samples come from NVML, loaded at run time from
// the driver's libnvidia-ml.so.1, so neither the build nor a machine without a GPU needs it.
#include <chrono>
#include <memory>

#include "harness/record.h"

namespace ditbench {

// One reading of one GPU.
// power_w is NVML's power usage: on GPUs newer than the A100 (the H100 among them) an average over
// the last second, so a run of a fraction of a second reads low; the clock is instantaneous.
struct TelemetrySample {
  double sm_clock_mhz = 0, power_w = 0, temperature_c = 0;
  // NVML's clock event reasons (nvmlDeviceGetCurrentClocksEventReasons): why the driver holds the
  // clocks below their maximum at this moment, as bits.
  uint64_t clock_event_reasons = 0;
};

// NVML's clock event reason bits the summary counts.
inline constexpr uint64_t kClockEventSwPowerCap = 0x4;
inline constexpr uint64_t kClockEventSwThermal = 0x20;
inline constexpr uint64_t kClockEventHwThermal = 0x40;
inline constexpr uint64_t kClockEventHwPowerBrake = 0x80;

// The summary of one device's samples (at least one): SM clock median/min/max, power mean/max,
// the hottest reading, and the fractions of samples held down for power (software power cap or
// hardware power brake) and for temperature (software or hardware thermal slowdown).
GpuTelemetryEntry summarize_telemetry(int device, const std::vector<TelemetrySample>& samples,
                                      std::optional<double> power_limit_w = std::nullopt,
                                      std::optional<double> max_sm_clock_mhz = std::nullopt);

// Samples `cuda_devices` (CUDA indices in this process) every `period` on a thread of its own
// from construction until finish(), and once more in finish(), so that a run shorter than one
// period still has two samples. A sampler that cannot read a device (no NVML library, a build
// without CUDA, a device NVML does not know) samples nothing and finish()'s note says why.
class TelemetrySampler {
 public:
  explicit TelemetrySampler(std::vector<int> cuda_devices,
                            std::chrono::milliseconds period = std::chrono::milliseconds(100),
                            const std::string& library = "libnvidia-ml.so.1");
  ~TelemetrySampler();
  TelemetrySampler(const TelemetrySampler&) = delete;
  TelemetrySampler& operator=(const TelemetrySampler&) = delete;

  // Stops sampling and summarizes each device (once; later calls return the same record).
  TelemetryRecord finish();

 private:
  struct State;  // the devices, their samples and the sampling thread
  std::unique_ptr<State> state_;
};

}  // namespace ditbench
