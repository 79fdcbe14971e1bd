#pragma once
// The HTML report (`ditbench report ... --format html`): one self-contained file, no scripts, with
// SVG charts drawn here from the result records: stacked stage bars per config, speedup against
// PSNR with the Pareto front, scaling against GPU count with the ideal line (when several GPU
// counts ran), and each cache config's per-step decisions as a strip.
#include <string>
#include <vector>

#include "harness/record.h"

namespace ditbench {

// Charts with nothing to draw (no quality scores, one GPU count, no cache decisions) are left out
// with a sentence saying why. When a config has several records the last one counts.
// Every element carries a class the tests and style sheet key on: "chart" on each <svg>,
// "bar" on each config's group of stage segments, "point" (and "front") on scatter points,
// "scaling-point" on scaling points, "strip" on a cache config's row and "step" on its steps.
std::string html_report(const std::vector<ResultRecord>& records);

}  // namespace ditbench
