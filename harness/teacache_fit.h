#pragma once
// `ditbench fit-teacache`: calibrates TeaCache's rescaling polynomial for a user's own checkpoint
// from recorded runs, as ali-vilab/TeaCache does (np.polyfit(rel_input, rel_output, 4)): per step,
// the relative change of the TeaCache signal (input) against the relative change of the model
// output, over every pair of consecutive computed steps of the runs given.
#include <array>
#include <string>
#include <vector>

#include "harness/record.h"

namespace ditbench {

// The (rel_input, rel_output) points of TeaCache records (status ok): every step that carries both
// a signal and an output_change. Records of other policies are not used (their signal is another
// quantity).
struct TeacacheFitPoints {
  std::vector<double> rel_input, rel_output;
  int records_used = 0;  // TeaCache records that gave at least one point
};
TeacacheFitPoints teacache_fit_points(const std::vector<ResultRecord>& records);

struct TeacacheFit {
  std::array<double, 5> coefficients{};  // c0..c4, highest power first
  double residual = 0;  // sum of squared residuals at the points (np.polyfit's `residuals`)
  double rms_residual = 0;
  size_t points = 0;
  int records_used = 0;
};
// InputError when the records hold no usable points (saying how to record them) or too few
// distinct signals for a 4th-order fit.
TeacacheFit fit_teacache_from_records(const std::vector<ResultRecord>& records);

// "c0,c1,c2,c3,c4" with round-trip precision: what a suite's `teacache_coefficients` accepts.
std::string format_teacache_coefficients(const std::array<double, 5>& coefficients);

}  // namespace ditbench
