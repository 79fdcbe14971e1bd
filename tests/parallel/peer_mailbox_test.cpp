// PeerMailbox, the host-side messages of peer copies between rank threads: one FIFO queue per
// (group, from, to, kind), a take that waits for a post from another thread, and a bounded wait.
#include <gtest/gtest.h>

#include <thread>

#include "optimizations/parallel/peer_mailbox.h"

namespace ditbench {
namespace {

using namespace std::chrono_literals;
using Kind = PeerMailbox::Kind;

PeerMailbox::Message message(size_t bytes) {
  PeerMailbox::Message m;
  m.bytes = bytes;
  return m;
}

TEST(PeerMailbox, EachQueueIsFirstInFirstOutAndKeyedByGroupRanksAndKind) {
  PeerMailbox box;
  box.post("world", 0, 1, Kind::kDestination, message(10));
  box.post("world", 0, 1, Kind::kDestination, message(11));
  box.post("world", 0, 1, Kind::kDelivered, message(20));
  box.post("world/0:1", 0, 1, Kind::kDestination, message(30));
  box.post("world", 1, 0, Kind::kDestination, message(40));
  EXPECT_EQ(box.pending(), 5u);
  PeerMailbox::Message got;
  ASSERT_TRUE(box.take("world", 0, 1, Kind::kDestination, got, 0ms));
  EXPECT_EQ(got.bytes, 10u);
  ASSERT_TRUE(box.take("world", 0, 1, Kind::kDestination, got, 0ms));
  EXPECT_EQ(got.bytes, 11u);
  EXPECT_FALSE(box.take("world", 0, 1, Kind::kDestination, got, 0ms));  // drained
  ASSERT_TRUE(box.take("world", 1, 0, Kind::kDestination, got, 0ms));   // the other direction
  EXPECT_EQ(got.bytes, 40u);
  ASSERT_TRUE(box.take("world/0:1", 0, 1, Kind::kDestination, got, 0ms));  // the subgroup's
  EXPECT_EQ(got.bytes, 30u);
  ASSERT_TRUE(box.take("world", 0, 1, Kind::kDelivered, got, 0ms));
  EXPECT_EQ(got.bytes, 20u);
  EXPECT_EQ(box.pending(), 0u);
}

TEST(PeerMailbox, TakeWaitsForAPostFromAnotherThreadAndGivesUpAfterItsWait) {
  PeerMailbox box;
  PeerMailbox::Message got;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(box.take("world", 2, 3, Kind::kDelivered, got, 30ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  std::thread poster([&] {
    std::this_thread::sleep_for(20ms);
    box.post("world", 2, 3, Kind::kDelivered, message(7));
  });
  EXPECT_TRUE(box.take("world", 2, 3, Kind::kDelivered, got, 10s));
  EXPECT_EQ(got.bytes, 7u);
  poster.join();
}

// Peer copies by default, NCCL with DITBENCH_PEER_COPIES=0 (without asking about access), and
// NCCL for the whole launch when one pair of devices cannot reach the other.
TEST(UsePeerCopies, DefaultOnOffWithZeroAndOnlyWhereEveryPairReachesTheOther) {
  int asked = 0;
  auto all = [&](int, int) { return ++asked, true; };
  EXPECT_TRUE(use_peer_copies(nullptr, 4, all));
  EXPECT_EQ(asked, 12);  // every ordered pair of 4 devices
  EXPECT_TRUE(use_peer_copies("1", 2, all));
  asked = 0;
  EXPECT_FALSE(use_peer_copies("0", 4, all));
  EXPECT_EQ(asked, 0);
  auto one_way_missing = [](int a, int b) { return !(a == 2 && b == 1); };
  EXPECT_FALSE(use_peer_copies(nullptr, 4, one_way_missing));
  EXPECT_TRUE(use_peer_copies(nullptr, 2, one_way_missing));  // devices 0 and 1 only
  EXPECT_TRUE(use_peer_copies(nullptr, 1, one_way_missing));
}

}  // namespace
}  // namespace ditbench
