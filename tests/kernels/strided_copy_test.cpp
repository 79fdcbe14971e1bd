// The 16-byte strided copy of the context-parallel layout changes (optimizations/kernels/
// strided_copy.h): the collapsed layouts by hand, and on a GPU the copies of Ulysses' packing,
// its unpacking and the ring's dense K against ATen's copy, bit for bit. Without CUDA it declines.
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "optimizations/kernels/strided_copy.h"

namespace ditbench {
namespace {

// A collapsed layout as {inner, then size, source stride, destination stride of each outer
// dimension, outermost first}; {} when there is none.
std::vector<int64_t> summary(const std::optional<CopyLayout>& layout) {
  if (!layout) return {};
  std::vector<int64_t> out{layout->inner};
  for (int d = 0; d < layout->outer; ++d) {
    out.insert(out.end(), {layout->sizes[d], layout->src_strides[d], layout->dst_strides[d]});
  }
  return out;
}

TEST(StridedCopy, LayoutsCollapseToTheSharedContiguousRunAndMergedOuterDimensions) {
  using Summary = std::vector<int64_t>;
  // Ulysses' packing of q: [P=4, B=1, S=10, H/P=6, D=8] from a packed [B, S, 3, H=24, D]
  // projection (token stride 3·24·8 = 576) into its send buffer [P, B, S, 3, 6, 8]: runs of the
  // head group's 6·8 elements, then P and S.
  EXPECT_EQ(summary(copy_layout({4, 1, 10, 6, 8}, {48, 5760, 576, 8, 1}, {1440, 1440, 144, 8, 1})),
            (Summary{48, 4, 48, 1440, 10, 576, 144}));
  // Fully contiguous on both sides: one run, no outer dimension.
  EXPECT_EQ(summary(copy_layout({3, 4, 5}, {20, 5, 1}, {20, 5, 1})), (Summary{60}));
  // Outer dimensions that step over each other on both sides merge: rows of a narrowed matrix.
  EXPECT_EQ(summary(copy_layout({2, 3, 4}, {24, 8, 1}, {12, 4, 1})), (Summary{4, 6, 8, 4}));
  // A broadcast source (stride 0): the split FMHA tail's queries copied once per key chunk,
  // [P=5, R=3, H=2, D=8] from one [R, H, D] block.
  EXPECT_EQ(summary(copy_layout({5, 3, 2, 8}, {0, 16, 8, 1}, {48, 16, 8, 1})),
            (Summary{48, 5, 0, 48}));
  // A transpose of the innermost dimension has no shared run.
  EXPECT_FALSE(copy_layout({4, 5}, {1, 4}, {5, 1}));
  // Five outer dimensions that cannot merge are more than the kernel takes.
  EXPECT_FALSE(copy_layout({2, 2, 2, 2, 2, 4}, {320, 80, 20, 5, 1000, 1}, {64, 32, 16, 8, 4, 1}));
}

TEST(StridedCopy, DeclinesCpuTensorsAndCopyStridedStillCopies) {
  auto src = at::arange(2 * 3 * 8, at::kFloat).view({2, 3, 8}).transpose(0, 1);
  auto dst = at::empty(src.sizes());
  EXPECT_FALSE(try_copy_strided(dst, src));
  copy_strided(dst, src);
  EXPECT_TRUE(at::equal(dst, src));
  auto packed = dense(src);
  EXPECT_TRUE(packed.is_contiguous());
  EXPECT_TRUE(at::equal(packed, src));
}

TEST(StridedCopyCuda, UlyssesPackingUnpackingAndTheRingsDenseKMatchAtenBitForBit) {
  if (!at::hasCUDA()) GTEST_SKIP() << "needs a CUDA device";
  auto opts = at::TensorOptions().device(at::kCUDA).dtype(at::kBFloat16);
  const int64_t P = 4, S = 333, H = 24, D = 128, Hl = H / P;
  auto packed = at::randn({1, S, 3, H, D}, opts);  // the projection's [B, S, 3, H, D]
  auto q = packed.select(2, 0);                    // [B, S, H, D], token stride 3·H·D
  // Packing: [B, S, H, D] -> [P, B, S, H/P, D] into one slot of the send buffer.
  auto send = at::zeros({P, 1, S, 3, Hl, D}, opts);
  auto slot = send.select(3, 0);
  auto from = q.unflatten(2, {P, Hl}).permute({2, 0, 1, 3, 4});
  ASSERT_TRUE(try_copy_strided(slot, from));
  EXPECT_TRUE(at::equal(slot, from));
  EXPECT_TRUE(at::equal(send.select(3, 1), at::zeros_like(send.select(3, 1))));  // untouched
  // Unpacking: [P, B, S, H/P, D] -> [B, S, P, H/P, D] dense.
  auto back = at::randn({P, 1, S, Hl, D}, opts);
  auto unpacked = dense(back.permute({1, 2, 0, 3, 4}));
  EXPECT_TRUE(unpacked.is_contiguous());
  EXPECT_TRUE(at::equal(unpacked, back.permute({1, 2, 0, 3, 4}).contiguous()));
  // The ring's dense K: the view's rows packed together; float32 too.
  EXPECT_TRUE(at::equal(dense(packed.select(2, 1)), packed.select(2, 1).contiguous()));
  auto wide = at::randn({1, S, 3, H, D}, opts.dtype(at::kFloat)).select(2, 2);
  EXPECT_TRUE(at::equal(dense(wide), wide.contiguous()));
  // A broadcast over key chunks: one [S, H, D] block of queries repeated P times.
  auto tail = q.narrow(1, S - 37, 37);  // [B, 37, H, D]
  auto repeated = at::empty({P, 37, H, D}, opts);
  auto broadcast = tail.expand({P, -1, -1, -1});
  ASSERT_TRUE(try_copy_strided(repeated, broadcast));
  EXPECT_TRUE(at::equal(repeated, broadcast));
  // A run of 7 bf16 (14 bytes) is not a whole 16-byte piece: declined, copied by ATen.
  auto odd = at::randn({5, 9}, opts).narrow(1, 0, 7);
  auto odd_dst = at::empty(odd.sizes(), opts);
  EXPECT_FALSE(try_copy_strided(odd_dst, odd));
  EXPECT_TRUE(at::equal(dense(odd), odd.contiguous()));
}

}  // namespace
}  // namespace ditbench
