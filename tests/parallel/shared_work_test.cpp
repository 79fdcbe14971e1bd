// Work shared over in-process ranks (shared_work.h), and the tiled VAE decode that uses it under
// context parallelism: every rank gets every item, each item computed once, bit for bit what one
// rank computes; the tiny-shapes VAE's tiled frames on 2 and 3 ranks equal the single-rank ones.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <vector>

#include "models/hunyuan_video/vae.h"
#include "optimizations/parallel/communicator.h"
#include "optimizations/parallel/context_parallel.h"
#include "optimizations/parallel/parallel_context.h"
#include "optimizations/parallel/shared_work.h"
#include "test_util.h"

namespace ditbench {
namespace {

// Item k: a shape and dtype of its own (1-D to 3-D; float32, bfloat16, int64) and values of k
// (no random generator: the ranks compute items on several threads at once).
at::Tensor item_of(int64_t k) {
  std::vector<int64_t> shape = {k % 3 + 1, 2 + k};
  if (k % 2 == 1) shape.push_back(3);
  if (k == 4) shape = {7};
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  at::Tensor t = (at::arange(numel, at::kFloat) * (0.37 * (k + 1))).sin().mul_(k + 1).view(shape);
  if (k % 3 == 1) return t.to(at::kBFloat16);
  if (k % 3 == 2) return (t * 1000).to(at::kLong);
  return t;
}

TEST(ComputeShared, EveryRankGetsEveryItemComputedOnce) {
  for (int world : {1, 2, 3, 4}) {
    for (int64_t n : {0, 1, 2, 5, 8}) {
      SCOPED_TRACE("world " + std::to_string(world) + ", n " + std::to_string(n));
      std::vector<std::atomic<int>> computed(static_cast<size_t>(n));
      std::mutex mutex;
      std::vector<std::vector<at::Tensor>> got(static_cast<size_t>(world));
      launch_ranks(world, [&](int rank, Communicator& comm) {
        auto items = compute_shared(comm, n, at::kCPU, [&](int64_t k) {
          computed[static_cast<size_t>(k)]++;
          return item_of(k);
        });
        std::lock_guard<std::mutex> lock(mutex);
        got[static_cast<size_t>(rank)] = std::move(items);
      });
      for (int64_t k = 0; k < n; ++k) EXPECT_EQ(computed[static_cast<size_t>(k)], 1) << k;
      for (int rank = 0; rank < world; ++rank) {
        const auto& items = got[static_cast<size_t>(rank)];
        ASSERT_EQ(static_cast<int64_t>(items.size()), n) << "rank " << rank;
        for (int64_t k = 0; k < n; ++k) {
          const at::Tensor expected = item_of(k);
          const at::Tensor& t = items[static_cast<size_t>(k)];
          ASSERT_EQ(t.scalar_type(), expected.scalar_type()) << "rank " << rank << " item " << k;
          ASSERT_EQ(t.sizes(), expected.sizes()) << "rank " << rank << " item " << k;
          EXPECT_TRUE(at::equal(t, expected)) << "rank " << rank << " item " << k;
        }
      }
    }
  }
}

TEST(ComputeShared, RejectsZeroDimItems) {
  launch_ranks(1, [](int, Communicator& comm) {
    EXPECT_THROW(compute_shared(comm, 1, at::kCPU, [](int64_t) { return at::ones({}); }),
                 std::invalid_argument);
  });
}

// The tiny-shapes VAE with 32-pixel tiles (3 x 3 tiles on 16 x 16 latents): the frames decoded
// by 2 and 3 context-parallel ranks, each decoding its share of the tiles, are the single-rank
// frames bit for bit.
TEST(ParallelTiledDecode, FramesEqualTheSingleRankDecode) {
  auto vae = load_hunyuan_video_vae_decoder(testing::source_dir() + "/assets/tiny-shapes/vae",
                                            at::TensorOptions().dtype(at::kFloat));
  HunyuanVideoVAETiling tiling;
  tiling.spatial = true;
  tiling.min_height = tiling.min_width = 32;
  tiling.stride_height = tiling.stride_width = 24;
  vae->set_tiling(tiling);
  at::manual_seed(5);
  const at::Tensor latents = at::randn({1, 8, 2, 16, 16});  // [B, C, F', H', W']
  at::NoGradGuard no_grad;
  const at::Tensor expected = vae->decode(latents);  // [1, 3, 5, 128, 128]
  for (auto [ulysses, ring] : {std::pair{2, 1}, std::pair{1, 3}}) {
    const int world = ulysses * ring;
    SCOPED_TRACE("ulysses " + std::to_string(ulysses) + " x ring " + std::to_string(ring));
    std::vector<at::Tensor> frames(static_cast<size_t>(world));
    launch_ranks(world, [&](int rank, Communicator& comm) {
      at::NoGradGuard guard;
      ParallelGroups groups = make_parallel_groups(comm, 1, ulysses, ring);
      ParallelScope scope(&groups);
      frames[static_cast<size_t>(rank)] = vae->decode(latents);
    });
    for (int rank = 0; rank < world; ++rank) {
      ASSERT_EQ(frames[static_cast<size_t>(rank)].sizes(), expected.sizes());
      EXPECT_TRUE(at::equal(frames[static_cast<size_t>(rank)], expected)) << "rank " << rank;
    }
  }
}

}  // namespace
}  // namespace ditbench
