#pragma once
// The cache threshold sweep section of the Markdown report: per model and setting of the other
// axes, one table per cache policy of threshold vs reuse vs speedup vs quality, with the Pareto
// front (speedup vs PSNR) marked and configs whose threshold never fired flagged loudly.
#include <string>
#include <vector>

#include "harness/record.h"

namespace ditbench {

// The "## Cache threshold sweep" section, or an empty string when no config ran a cache with a
// threshold. Speedups are against the baseline of each record's suite; the last record of a
// config counts.
std::string sweep_report(const std::vector<ResultRecord>& records);

}  // namespace ditbench
