// The fused row quantizer (fp8_rows.cu) against quantize_rows_fp8's ATen form, which defines the
// numbers: bit for bit on random rows and on the edge cases (all-zero rows, values near the
// largest finite input, denormal inputs, rows whose maximum sits in one element), for every
// input dtype and every kernel the launcher picks (rows held in registers at 4 or 8 vectors per
// thread, strided rows, and the two-pass kernel for unaligned or very long rows).
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <sstream>
#include <string>

#include "optimizations/quant/quant.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>

#include "optimizations/quant/fp8_rows_cuda.h"
#endif

namespace ditbench {
namespace {

// "" when a and b are equal bit for bit; otherwise where they first differ: the row's scales, or
// the element with its input value and both e4m3 values, and how many elements differ.
std::string first_difference(const Fp8Rows& a, const Fp8Rows& b, const at::Tensor& input) {
  if (a.values.sizes() != b.values.sizes() || a.scale.sizes() != b.scale.sizes()) {
    return "shapes differ";
  }
  auto sa = a.scale.cpu().reshape({-1}), sb = b.scale.cpu().reshape({-1});
  auto scale_diff = sa.view(at::kInt).ne(sb.view(at::kInt)).nonzero();
  std::ostringstream os;
  os.precision(9);
  if (scale_diff.size(0) > 0) {
    const int64_t r = scale_diff[0][0].item<int64_t>();
    os << scale_diff.size(0) << " scales differ, first row " << r << ": " << sa[r].item<float>()
       << " vs " << sb[r].item<float>() << "; ";
  }
  auto va = a.values.cpu(), vb = b.values.cpu();
  // e4m3fn has one NaN per sign (0x7f, 0xff); which sign a NaN gets (an infinite input makes
  // the scale infinite) is unspecified, so any two NaNs are equal here.
  auto ba = va.view(at::kByte), bb = vb.view(at::kByte);
  auto both_nan = ba.bitwise_and(0x7f).eq(0x7f).logical_and(bb.bitwise_and(0x7f).eq(0x7f));
  auto diff = ba.ne(bb).logical_and(both_nan.logical_not()).nonzero();  // [n, 2]
  if (diff.size(0) > 0) {
    const int64_t r = diff[0][0].item<int64_t>(), c = diff[0][1].item<int64_t>();
    os << diff.size(0) << " values differ, first [" << r << ", " << c << "]: input "
       << input.cpu()[r][c].item<float>() << ", scale " << sa[r].item<float>() << ", "
       << va[r][c].to(at::kFloat).item<float>() << " vs " << vb[r][c].to(at::kFloat).item<float>();
  }
  return os.str();
}

// Rows exercising the rounding: random magnitudes over many binades, one all-zero row, one row
// whose maximum is a single huge element, one near the dtype's largest finite value, one of
// denormals (where the dtype has them below float32's normal range, both dtypes' denormals).
at::Tensor edge_rows(int64_t cols, at::ScalarType dtype) {
  at::manual_seed(cols);
  auto rows = at::randn({8, cols}) * at::exp(at::randn({8, 1}) * 4);  // [8, C] float32
  rows[1].zero_();
  rows[2] = at::randn({cols}) * 1e-3;
  rows[2][cols / 2] = 1e4;
  const double big = dtype == at::kHalf ? 60000.0 : 3e38;
  rows[3] = (at::rand({cols}) * 2 - 1) * big;
  if (dtype == at::kHalf) {
    rows[4] = at::randn({cols}) * 3e-6;  // float16 denormals (below 6.1e-5), normal in float32
  } else {
    rows[4] = at::randn({cols}) * 1e-39;  // float32/bfloat16 denormals (below 1.18e-38)
  }
  rows[5] = at::randn({cols});
  rows[5][0] = 1e-40;  // a denormal that quantizes to zero beside normal values
  rows[6] = at::full({cols}, -7.0);
  rows[6][cols - 1] = 7.0;  // the maximum magnitude twice, with both signs
  return rows.to(dtype);
}

class Fp8RowsCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device";
  }

  // The kernel's quantization of `rows` (on the GPU) against the ATen form on the GPU and on
  // the CPU.
  static void expect_matches_aten(const at::Tensor& rows, const std::string& what) {
    SCOPED_TRACE(what);
    auto kernel = quantize_rows_fp8(rows);
    EXPECT_EQ(first_difference(kernel, quantize_rows_fp8_aten(rows), rows), "")
        << "vs ATen on the GPU";
    EXPECT_EQ(first_difference(kernel, quantize_rows_fp8_aten(rows.cpu()), rows), "")
        << "vs ATen on the CPU";
  }
};

TEST_F(Fp8RowsCuda, MatchesAtenBitForBitOnEdgeRows) {
  for (auto dtype : {at::kBFloat16, at::kHalf, at::kFloat}) {
    // 16: one vector a row; 3072, 12288, 15360: HunyuanVideo's inputs (4 vectors a thread);
    // 40000: 8 vectors a thread; 80000: too long to hold (two-pass kernel); 1001: not whole
    // vectors (two-pass kernel).
    for (int64_t cols : {16, 3072, 12288, 15360, 40000, 80000, 1001}) {
      expect_matches_aten(edge_rows(cols, dtype).cuda(),
                          std::string(c10::toString(dtype)) + " cols " + std::to_string(cols));
    }
  }
}

TEST_F(Fp8RowsCuda, StridedAndMisalignedRowsMatchAten) {
  for (auto dtype : {at::kBFloat16, at::kFloat}) {
    auto wide = edge_rows(3200, dtype).cuda();
    // Row stride 3200 (whole vectors): the register kernel reads the strided rows in place.
    expect_matches_aten(wide.narrow(1, 0, 3072), "strided");
    // Starting one element in: not 16-byte aligned, the two-pass kernel.
    expect_matches_aten(wide.narrow(1, 1, 3072), "misaligned");
  }
}

TEST_F(Fp8RowsCuda, ManyRowsMatchAten) {
  // More rows than blocks resident at once, so each block walks several, loading the next while
  // it quantizes one: 3072 columns (96 threads a row), 15,360 (480 threads, two blocks an SM),
  // 40,000 (8 vectors a thread, loaded in turn).
  at::manual_seed(11);
  for (auto [count, cols] :
       {std::pair<int64_t, int64_t>{4099, 3072}, {1100, 15360}, {600, 40000}}) {
    auto rows = (at::randn({count, cols}) * at::rand({count, 1}) * 20).to(at::kBFloat16).cuda();
    expect_matches_aten(rows, std::to_string(count) + " x " + std::to_string(cols));
  }
}

#ifdef DITBENCH_HAS_CUDA
// The quantizer that runs beside a GEMM (fp8_linear_overlapped): the same numbers, and every
// counter ends at the number of rows it covers, for each dtype, short and long rows, and a grid
// of 4 blocks walking 301 rows in blocks of 64 (the last partial).
TEST_F(Fp8RowsCuda, SignalledQuantizerMatchesAtenAndCountsEveryRow) {
  constexpr int64_t kRows = 301;
  constexpr int kPerFlag = 64;
  auto stream = at::cuda::getCurrentCUDAStream();
  for (auto dtype : {at::kBFloat16, at::kHalf, at::kFloat}) {
    for (int64_t cols : {16, 3072, 15360}) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + " cols " + std::to_string(cols));
      auto rows = at::cat({edge_rows(cols, dtype), (at::randn({kRows - 8, cols}) * 3).to(dtype)})
                      .cuda();  // [301, C]
      Fp8Rows out{at::empty({kRows, cols}, rows.options().dtype(at::kFloat8_e4m3fn)),
                  at::empty({kRows, 1}, rows.options().dtype(at::kFloat))};
      auto ready = at::zeros({(kRows + kPerFlag - 1) / kPerFlag}, rows.options().dtype(at::kInt));
      const auto input = dtype == at::kFloat  ? Fp8RowsInput::float32
                         : dtype == at::kHalf ? Fp8RowsInput::float16
                                              : Fp8RowsInput::bfloat16;
      ASSERT_TRUE(quantize_rows_fp8_signalled_cuda(
          rows.data_ptr(), input, kRows, cols, cols, out.values.data_ptr(),
          out.scale.data_ptr<float>(), ready.data_ptr<int>(), kPerFlag, 4, stream));
      EXPECT_EQ(first_difference(out, quantize_rows_fp8_aten(rows), rows), "");
      auto counts = ready.cpu();
      for (int64_t f = 0; f < counts.size(0); ++f) {
        EXPECT_EQ(counts[f].item<int>(), std::min<int64_t>(kPerFlag, kRows - f * kPerFlag))
            << "counter " << f;
      }
    }
  }
  // Refused, launching nothing: an odd grid, and rows of 4097 vectors (too long to hold).
  auto rows = at::randn({4, 32776}, at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16));
  auto values = at::empty({4, 32776}, rows.options().dtype(at::kFloat8_e4m3fn));
  auto scale = at::empty({4}, rows.options().dtype(at::kFloat));
  auto ready = at::zeros({1}, rows.options().dtype(at::kInt));
  EXPECT_FALSE(quantize_rows_fp8_signalled_cuda(rows.data_ptr(), Fp8RowsInput::bfloat16, 4, 3072,
                                                32776, values.data_ptr(), scale.data_ptr<float>(),
                                                ready.data_ptr<int>(), 128, 3, stream));
  EXPECT_FALSE(quantize_rows_fp8_signalled_cuda(rows.data_ptr(), Fp8RowsInput::bfloat16, 4, 32776,
                                                32776, values.data_ptr(), scale.data_ptr<float>(),
                                                ready.data_ptr<int>(), 128, 4, stream));
  EXPECT_EQ(ready.item<int>(), 0);
}
#endif

TEST_F(Fp8RowsCuda, EmptyRowsAreFine) {
  auto q = quantize_rows_fp8(at::empty({0, 64}, at::TensorOptions().device(at::kCUDA)));
  EXPECT_EQ(q.values.size(0), 0);
}

}  // namespace
}  // namespace ditbench
