// tensor_rows: the layouts a pitched copy moves as they are (hand-derived rows and pitches), and
// the ones it must refuse; the rows read at their pitch give the tensor's own values.
#include <gtest/gtest.h>

#include "optimizations/parallel/tensor_rows.h"

namespace ditbench {
namespace {

TEST(TensorRows, TokenMajorViewsOfAPackedProjectionAreRowsAtItsPitch) {
  auto packed = at::arange(5 * 3 * 4 * 8, at::kFloat).view({1, 5, 3, 4, 8});  // [B, S, 3, H, D]
  auto k = packed.select(2, 1);  // [1, 5, 4, 8], token stride 3·4·8
  auto rows = tensor_rows(k);
  ASSERT_TRUE(rows);
  EXPECT_EQ(rows->rows, 5);
  EXPECT_EQ(rows->row_elements, 32);
  EXPECT_EQ(rows->pitch, 96);
  // Reading the rows at the pitch from k's first element gives k.
  auto flat = packed.flatten();
  auto gathered = at::empty({rows->rows, rows->row_elements});
  for (int64_t r = 0; r < rows->rows; ++r) {
    gathered[r] = flat.narrow(0, k.storage_offset() + r * rows->pitch, rows->row_elements);
  }
  EXPECT_TRUE(at::equal(gathered.view_as(k), k));
  // The same with a second sample whose stride continues the pitch: 2 x 5 rows.
  auto two = at::zeros({2, 5, 3, 4, 8}).select(2, 0);
  rows = tensor_rows(two);
  ASSERT_TRUE(rows);
  EXPECT_EQ(rows->rows, 10);
  EXPECT_EQ(rows->pitch, 96);
}

TEST(TensorRows, ContiguousIsOneRowAndOtherLayoutsAreRefused) {
  auto x = at::zeros({3, 4, 5});
  auto one = tensor_rows(x);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->rows, 1);
  EXPECT_EQ(one->row_elements, 60);
  EXPECT_FALSE(tensor_rows(x.transpose(1, 2)));                  // the inner block is not dense
  EXPECT_FALSE(tensor_rows(x.narrow(2, 0, 2).narrow(1, 0, 2)));  // rows of rows: two pitches
  auto strided = tensor_rows(x.narrow(2, 0, 2));                 // 12 rows of 2 at pitch 5
  ASSERT_TRUE(strided);
  EXPECT_EQ(strided->rows, 12);
  EXPECT_EQ(strided->row_elements, 2);
  EXPECT_EQ(strided->pitch, 5);
  EXPECT_FALSE(tensor_rows(at::zeros({4}).expand({3, 4})));  // overlapping rows (pitch 0)
}

}  // namespace
}  // namespace ditbench
