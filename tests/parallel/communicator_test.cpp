// InProcessCommunicator (rank threads), StoreCommunicator (the CPU transport between the
// processes of a launch, here with one store client per thread) and launch_ranks: values of every
// operation derived by hand on small tensors, and the failure paths (a throwing rank, abort,
// timeout, mismatched shapes) ending in errors that name the rank and the operation instead of
// hanging. Both transports run every test of the Communicators suite.
#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "models/common/error.h"
#include "optimizations/parallel/communicator.h"
#include "optimizations/parallel/rank_threads.h"
#include "optimizations/parallel/store_communicator.h"

namespace ditbench {
namespace {

using namespace std::chrono_literals;

LaunchOptions with_timeout(std::chrono::milliseconds timeout) {
  LaunchOptions options;
  options.comm.timeout = timeout;
  return options;
}

using RankFn = std::function<void(int rank, Communicator& comm)>;

// n rank threads on StoreCommunicators: a TCPStore server of their own on a free port, and one
// client connection per rank, as the processes of a launch have.
void launch_store_ranks(int n, const RankFn& fn, CommOptions options) {
  c10d::TCPStoreOptions server_options;
  server_options.port = 0;  // any free port
  server_options.isServer = true;
  server_options.waitWorkers = false;
  auto server = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", server_options);
  const auto port = static_cast<std::uint16_t>(server->getPort());
  std::vector<int> members;
  for (int r = 0; r < n; ++r) members.push_back(r);
  detail::run_rank_threads(
      n,
      [&](int rank) {
        c10d::TCPStoreOptions client_options;
        client_options.port = port;
        auto client = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", client_options);
        auto keys = std::make_shared<LaunchStore>(client, "test/", rank);
        return std::make_unique<StoreCommunicator>(keys, "world", members, rank, options);
      },
      fn, [](Communicator&) {});
}

enum class Transport { kInProcess, kStore };

class Communicators : public ::testing::TestWithParam<Transport> {
 protected:
  void launch(int n, const RankFn& fn, std::chrono::milliseconds timeout = 10s) {
    if (GetParam() == Transport::kInProcess) {
      launch_ranks(n, fn, with_timeout(timeout));
    } else {
      CommOptions options;
      options.timeout = timeout;
      launch_store_ranks(n, fn, options);
    }
  }
  // Runs the launch and returns the message it rethrew ("" when it did not throw).
  std::string launch_error(int n, const RankFn& fn, std::chrono::milliseconds timeout = 10s) {
    try {
      launch(n, fn, timeout);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  }
};

INSTANTIATE_TEST_SUITE_P(Transports, Communicators,
                         ::testing::Values(Transport::kInProcess, Transport::kStore),
                         [](const ::testing::TestParamInfo<Transport>& info) {
                           return info.param == Transport::kInProcess ? "InProcess" : "Store";
                         });

TEST_P(Communicators, AllToAllSendsChunkPToRankP) {
  // Rank r's row p holds 100 r + 10 p + j: rank q must receive, from each p, 100 p + 10 q + j.
  launch(3, [](int rank, Communicator& comm) {
    EXPECT_EQ(comm.rank(), rank);
    EXPECT_EQ(comm.size(), 3);
    auto input = at::zeros({3, 2}, at::kLong);
    for (int p = 0; p < 3; ++p) {
      for (int j = 0; j < 2; ++j) input[p][j] = 100 * rank + 10 * p + j;
    }
    auto out = comm.all_to_all(input);
    ASSERT_EQ(out.sizes(), input.sizes());
    // The started form delivers the same into a buffer of the caller's.
    auto into = at::full_like(input, -1);
    comm.all_to_all_into(input, into)->wait();
    for (int p = 0; p < 3; ++p) {
      for (int j = 0; j < 2; ++j) {
        EXPECT_EQ(out[p][j].item<int64_t>(), 100 * p + 10 * rank + j);
        EXPECT_EQ(into[p][j].item<int64_t>(), 100 * p + 10 * rank + j);
      }
    }
  });
}

TEST_P(Communicators, AllGatherConcatenatesInRankOrder) {
  launch(3, [](int rank, Communicator& comm) {
    auto out = comm.all_gather(at::full({1, 2}, rank, at::kFloat));
    auto expected = at::tensor({0.f, 0.f, 1.f, 1.f, 2.f, 2.f}).view({3, 2});
    EXPECT_TRUE(at::equal(out, expected)) << out;
  });
}

TEST_P(Communicators, AllReduceSumsInPlace) {
  launch(3, [](int rank, Communicator& comm) {
    auto t = at::tensor({rank + 1.0, 2.0 * (rank + 1)});
    comm.all_reduce_sum(t);
    EXPECT_TRUE(at::equal(t, at::tensor({6.0, 12.0}))) << t;  // 1+2+3, 2+4+6
  });
}

TEST_P(Communicators, SendRecvAndAsyncSendRecvShiftRoundTheRing) {
  launch(4, [](int rank, Communicator& comm) {
    const int next = (rank + 1) % 4, prev = (rank + 3) % 4;
    // Blocking pair: even ranks send first, odd ranks receive first.
    auto got = at::zeros({2});
    if (rank % 2 == 0) {
      comm.send(at::full({2}, 7.0f * rank), next);
      comm.recv(got, prev);
    } else {
      comm.recv(got, prev);
      comm.send(at::full({2}, 7.0f * rank), next);
    }
    EXPECT_TRUE(at::equal(got, at::full({2}, 7.0f * prev)));
    // Asynchronous: started, then waited.
    auto incoming = at::zeros({1, 3}, at::kInt);
    auto work = comm.send_recv(at::full({1, 3}, rank, at::kInt), next, incoming, prev);
    work->wait();
    EXPECT_TRUE(at::equal(incoming, at::full({1, 3}, prev, at::kInt)));
    comm.barrier();
  });
}

TEST_P(Communicators, SubgroupOrdersMembersByKey) {
  launch(4, [](int rank, Communicator& comm) {
    // Evens {0, 2} and odds {1, 3}; key -rank puts the higher rank first.
    auto group = comm.subgroup(rank % 2, -rank);
    EXPECT_EQ(group->size(), 2);
    EXPECT_EQ(group->rank(), rank >= 2 ? 0 : 1);
    EXPECT_EQ(group->global_rank(), rank);
    auto members = group->all_gather(at::full({1}, rank, at::kLong));
    auto expected = rank % 2 == 0 ? at::tensor({2, 0}, at::kLong) : at::tensor({3, 1}, at::kLong);
    EXPECT_TRUE(at::equal(members, expected)) << members;
  });
}

TEST_P(Communicators, ThrowingRankAbortsEveryOtherRanksCollective) {
  std::mutex mutex;
  std::vector<std::string> seen;  // what the surviving ranks' all_to_all threw
  std::string error = launch_error(3, [&](int rank, Communicator& comm) {
    if (rank == 1) throw std::runtime_error("boom in the model");
    try {
      comm.all_to_all(at::zeros({3}));
    } catch (const CommAborted& e) {
      EXPECT_EQ(e.failed_rank(), 1);
      std::lock_guard<std::mutex> lock(mutex);
      seen.push_back(e.what());
      throw;
    }
  });
  ASSERT_EQ(seen.size(), 2u);
  for (const auto& message : seen) {
    EXPECT_NE(message.find("all_to_all"), std::string::npos) << message;
    EXPECT_NE(message.find("rank 1 failed"), std::string::npos) << message;
  }
  // The launch reports the cause, not the consequences.
  EXPECT_NE(error.find("rank 1: boom in the model"), std::string::npos) << error;
}

TEST_P(Communicators, AbortMakesTheNextCollectiveThrow) {
  std::string error = launch_error(2, [&](int rank, Communicator& comm) {
    if (rank == 1) {
      comm.abort("out of memory");
      return;
    }
    comm.barrier();  // pending or next: either way it must throw
    ADD_FAILURE() << "barrier completed although rank 1 aborted";
  });
  EXPECT_NE(error.find("barrier"), std::string::npos) << error;
  EXPECT_NE(error.find("rank 1 failed: out of memory"), std::string::npos) << error;
}

TEST_P(Communicators, TimeoutNamesTheRankAndTheOperation) {
  std::string error = launch_error(
      2,
      [&](int rank, Communicator& comm) {
        if (rank == 1) {
          std::this_thread::sleep_for(1500ms);  // never joins, but has not finished either
          return;
        }
        comm.all_gather(at::zeros({1}));
      },
      200ms);
  EXPECT_NE(error.find("rank 0 timed out in all_gather after 0.2s"), std::string::npos) << error;
}

TEST(InProcessCommunicator, PeerThatFinishedFailsTheWaitAtOnce) {
  try {
    launch_ranks(2, [&](int rank, Communicator& comm) {
      if (rank == 0) comm.all_to_all(at::zeros({2}));
    });
    FAIL() << "launch_ranks did not throw";
  } catch (const CommError& e) {
    EXPECT_NE(std::string(e.what()).find("all_to_all cannot complete: rank 1 has finished"),
              std::string::npos)
        << e.what();
  }
}

TEST_P(Communicators, MismatchedShapesThrowOnEveryRank) {
  std::mutex mutex;
  int throws = 0;
  std::string error = launch_error(2, [&](int rank, Communicator& comm) {
    try {
      comm.all_gather(at::zeros({2, 3 + rank}));
    } catch (const CommError& e) {
      EXPECT_NE(std::string(e.what()).find("all_gather: rank 1 passed [2, 4]"), std::string::npos)
          << e.what();
      std::lock_guard<std::mutex> lock(mutex);
      ++throws;
      throw;
    }
  });
  EXPECT_EQ(throws, 2);
  EXPECT_FALSE(error.empty());
}

TEST_P(Communicators, DifferentCollectivesAreAnError) {
  std::string error = launch_error(2, [&](int rank, Communicator& comm) {
    auto t = at::zeros({2});
    if (rank == 0) {
      comm.all_gather(t);
    } else {
      comm.all_reduce_sum(t);
    }
  });
  // Whichever rank arrives second detects it; the message names both operations.
  EXPECT_NE(error.find("all_reduce_sum"), std::string::npos) << error;
  EXPECT_NE(error.find("all_gather"), std::string::npos) << error;
}

TEST(LaunchRanks, KeepsUnsupportedAndNamesTheRank) {
  try {
    launch_ranks(2, [](int rank, Communicator& comm) {
      if (rank == 1) throw Unsupported("no flash kernel");
      comm.barrier();
    });
    FAIL() << "launch_ranks did not throw";
  } catch (const Unsupported& e) {
    EXPECT_STREQ(e.what(), "rank 1: no flash kernel");
  }
}

}  // namespace
}  // namespace ditbench
