#include "optimizations/attention/kernel_log.h"

#include <algorithm>

#ifdef DITBENCH_HAS_CUPTI
#include <cupti.h>
#include <cxxabi.h>

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "models/common/error.h"
#endif

namespace ditbench {

#ifdef DITBENCH_HAS_CUPTI
namespace {

// The name lists of this thread's live collectors; the callback runs on the launching thread.
thread_local std::vector<std::vector<std::string>*> live_collectors;

std::mutex subscriber_mutex;
CUpti_SubscriberHandle subscriber = nullptr;
int live_collectors_total = 0;  // across threads: the domains are enabled while any collects

// "void at::native::foo_kernel<float, 4>(at::Params)" -> "at::native::foo_kernel": records name
// the kernel, not its template instance.
std::string short_kernel_name(const char* symbol) {
  int status = 0;
  char* demangled = abi::__cxa_demangle(symbol, nullptr, nullptr, &status);
  std::string name = status == 0 && demangled ? demangled : symbol;
  std::free(demangled);
  if (name.rfind("void ", 0) == 0) name = name.substr(5);
  const auto cut = name.find_first_of("<(");
  return cut == std::string::npos ? name : name.substr(0, cut);
}

void CUPTIAPI on_api_call(void*, CUpti_CallbackDomain, CUpti_CallbackId, const void* data) {
  if (live_collectors.empty()) return;
  const auto* info = static_cast<const CUpti_CallbackData*>(data);
  if (info->callbackSite != CUPTI_API_ENTER || !info->functionName || !info->symbolName) return;
  // symbolName is only meaningful on kernel launches (runtime and driver, Ex and cooperative).
  if (!std::strstr(info->functionName, "aunchKernel") &&
      !std::strstr(info->functionName, "aunchCooperativeKernel")) {
    return;
  }
  const std::string name = short_kernel_name(info->symbolName);
  for (auto* names : live_collectors) {
    if (std::find(names->begin(), names->end(), name) == names->end()) names->push_back(name);
  }
}

void check_cupti(CUptiResult result, const char* what) {
  if (result == CUPTI_SUCCESS) return;
  const char* message = nullptr;
  cuptiGetResultString(result, &message);
  throw Unsupported(std::string("kernel names: ") + what +
                    " failed: " + (message ? message : "unknown CUPTI error"));
}

}  // namespace

bool KernelNameCollector::available() { return true; }
std::string KernelNameCollector::unavailable_reason() { return {}; }

KernelNameCollector::KernelNameCollector() {
  {
    std::lock_guard<std::mutex> lock(subscriber_mutex);
    if (!subscriber) {
      check_cupti(cuptiSubscribe(&subscriber, on_api_call, nullptr), "cuptiSubscribe");
    }
    if (live_collectors_total == 0) {
      check_cupti(cuptiEnableDomain(1, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API),
                  "cuptiEnableDomain(runtime)");
      check_cupti(cuptiEnableDomain(1, subscriber, CUPTI_CB_DOMAIN_DRIVER_API),
                  "cuptiEnableDomain(driver)");
    }
    ++live_collectors_total;
  }
  live_collectors.push_back(&names_);
}

KernelNameCollector::~KernelNameCollector() {
  live_collectors.erase(std::find(live_collectors.begin(), live_collectors.end(), &names_));
  std::lock_guard<std::mutex> lock(subscriber_mutex);
  if (--live_collectors_total == 0) {
    // Idle subscribers would still cost a call per API entry; switch the domains off.
    cuptiEnableDomain(0, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API);
    cuptiEnableDomain(0, subscriber, CUPTI_CB_DOMAIN_DRIVER_API);
  }
}

#else

bool KernelNameCollector::available() { return false; }
std::string KernelNameCollector::unavailable_reason() { return "kernel names need a CUPTI build"; }
KernelNameCollector::KernelNameCollector() = default;
KernelNameCollector::~KernelNameCollector() = default;

#endif

std::vector<std::string> KernelNameCollector::take() {
  std::vector<std::string> names;
  names.swap(names_);
  return names;
}

}  // namespace ditbench
