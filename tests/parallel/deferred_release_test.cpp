// DeferredRelease (optimizations/parallel/deferred_release.h): what the NCCL rank threads use to
// free the communicators a failure stopped only once every rank thread has ended.
#include "optimizations/parallel/deferred_release.h"

#include <gtest/gtest.h>

#include <optional>
#include <thread>
#include <vector>

namespace ditbench {
namespace {

TEST(DeferredRelease, WithoutAScopeNothingIsKept) {
  std::vector<int> released;
  DeferredRelease<int> deferred([&](const int& h) { released.push_back(h); });
  EXPECT_FALSE(deferred.defer(1));
  EXPECT_TRUE(released.empty());  // the caller releases it itself
}

TEST(DeferredRelease, TheLastScopeToEndReleasesEverythingInOrder) {
  std::vector<int> released;
  DeferredRelease<int> deferred([&](const int& h) { released.push_back(h); });
  {
    DeferredRelease<int>::Scope outer(deferred);
    EXPECT_TRUE(deferred.defer(1));
    {
      DeferredRelease<int>::Scope inner(deferred);
      EXPECT_TRUE(deferred.defer(2));
    }
    EXPECT_TRUE(released.empty());  // the outer scope is still open
    EXPECT_TRUE(deferred.defer(3));
  }
  EXPECT_EQ(released, (std::vector<int>{1, 2, 3}));
  // Released once: a later scope starts empty.
  { DeferredRelease<int>::Scope again(deferred); }
  EXPECT_EQ(released.size(), 3u);
  EXPECT_FALSE(deferred.defer(4));
}

TEST(DeferredRelease, HandlesDeferredByThreadsAreReleasedAfterTheyEnd) {
  std::vector<int> released;
  DeferredRelease<int> deferred([&](const int& h) { released.push_back(h); });
  std::optional<DeferredRelease<int>::Scope> scope(std::in_place, deferred);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) EXPECT_TRUE(deferred.defer(t * 100 + i));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(released.empty());
  scope.reset();
  ASSERT_EQ(released.size(), 400u);
  std::vector<bool> seen(400, false);
  for (int h : released) {
    ASSERT_GE(h, 0);
    ASSERT_LT(h, 400);
    EXPECT_FALSE(seen[static_cast<size_t>(h)]) << h;
    seen[static_cast<size_t>(h)] = true;
  }
}

}  // namespace
}  // namespace ditbench
