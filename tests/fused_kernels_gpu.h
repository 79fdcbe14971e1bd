#pragma once
// The fixture of every GPU test of a fused kernel: skipped without a CUDA device, the fused
// kernels switched on (and the switch restored afterwards), a fixed seed.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "optimizations/kernels/fused.h"

namespace ditbench::testing {

class FusedKernelsGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
    was_enabled_ = fused_kernels_enabled();
    set_fused_kernels_enabled(true);
    at::manual_seed(0);
  }
  void TearDown() override { set_fused_kernels_enabled(was_enabled_); }

 private:
  bool was_enabled_ = true;
};

}  // namespace ditbench::testing
