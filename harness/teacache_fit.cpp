#include "harness/teacache_fit.h"

#include <cmath>
#include <cstdio>

#include "models/common/error.h"
#include "optimizations/cache/cache_policy.h"

namespace ditbench {

TeacacheFitPoints teacache_fit_points(const std::vector<ResultRecord>& records) {
  TeacacheFitPoints points;
  for (const auto& r : records) {
    if (r.status != RunStatus::kOk || !r.cache || r.cache->policy != "teacache") continue;
    bool used = false;
    for (const auto& step : r.cache->per_step) {
      // output_change exists only when this step and the one before it computed, so both
      // changes span the same single step.
      if (!step.signal || !step.output_change) continue;
      points.rel_input.push_back(*step.signal);
      points.rel_output.push_back(*step.output_change);
      used = true;
    }
    points.records_used += used;
  }
  return points;
}

TeacacheFit fit_teacache_from_records(const std::vector<ResultRecord>& records) {
  const TeacacheFitPoints points = teacache_fit_points(records);
  if (points.rel_input.empty()) {
    throw InputError(
        "fit-teacache: the results hold no TeaCache steps with both a signal and an "
        "output_change; record them by running the suite with cache \"teacache\" at threshold 0 "
        "(every step computes)");
  }
  TeacacheFit fit;
  fit.coefficients = fit_teacache_coefficients(points.rel_input, points.rel_output);
  fit.points = points.rel_input.size();
  fit.records_used = points.records_used;
  for (size_t i = 0; i < fit.points; ++i) {
    double predicted = 0;
    for (double c : fit.coefficients) predicted = predicted * points.rel_input[i] + c;
    const double error = predicted - points.rel_output[i];
    fit.residual += error * error;
  }
  fit.rms_residual = std::sqrt(fit.residual / static_cast<double>(fit.points));
  return fit;
}

std::string format_teacache_coefficients(const std::array<double, 5>& coefficients) {
  std::string out;
  for (double c : coefficients) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", c);
    out += (out.empty() ? "" : ",") + std::string(buf);
  }
  return out;
}

}  // namespace ditbench
