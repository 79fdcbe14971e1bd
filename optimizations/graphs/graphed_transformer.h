#pragma once
// CUDA graph capture of the transformer's block segments (the suite axis `graphs`). The block
// segments the caches run (run_blocks: every block, or blocks 1..N after FBCache's first) are
// captured once per shape and replayed at every later step, so a step costs one graph launch per
// segment instead of a few thousand kernel launches; prepare, single blocks, finish and the
// TeaCache signal stay eager, so the caches decide on the host as before.
//
// Under context parallelism (a sequence group installed by ParallelScope) the segments hold the
// attention's collectives: NCCL kernels are captured like any other, the ring's side stream joins
// the capture through the events it forks and joins by, and every rank captures the same segment
// at the same step (the caches decide alike on every rank), so the graphs' collectives match. The
// capture is thread-local (other rank threads keep calling CUDA meanwhile); a launch is watched by
// each communicator with collectives inside and timed by the communication counter
// (optimizations/parallel/captured_graph.h). FBCache's and TeaCache's all-reduced decisions, which
// the host waits for, run between segments, never inside one.
#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/model.h"

namespace ditbench {

// Wraps a model (which must outlive it). A segment [first, last) is captured on its first call,
// after one eager warm-up run of it (lazy initialisation must not happen under capture), into a
// graph whose inputs are that call's state tensors; a later call whose state has the same tensor
// layouts (shape, dtype, strides, device; BlockTransformer::state_tensors) copies its tensors
// into those inputs and replays, and a call with other layouts captures again. After a replay the
// state holds the graph's output tensors, which the next replay of the same segment overwrites:
// what a caller keeps across steps must be computed from them (the caches' residuals are).
// Models that cannot list their state (fork_state / state_tensors) throw Unsupported.
//
// Replay::emulated keeps every rule but the graph: a "replay" reruns the segment eagerly on the
// captured inputs and copies its results into the captured output tensors, so the copying,
// recapture and output-ownership logic runs (and is tested) on the CPU.
enum class Replay { cuda_graph, emulated };

class GraphedTransformer : public BlockTransformer {
 public:
  explicit GraphedTransformer(BlockTransformer& inner, Replay replay = Replay::cuda_graph);
  ~GraphedTransformer() override;

  BlockState prepare(const TransformerInputs& in) override { return inner_.prepare(in); }
  int64_t num_blocks() const override { return inner_.num_blocks(); }
  void run_block(int64_t i, BlockState& s) override { inner_.run_block(i, s); }
  at::Tensor finish(BlockState& s) override { return inner_.finish(s); }
  at::Tensor teacache_signal(const BlockState& s) override { return inner_.teacache_signal(s); }
  BlockState fork_state(const BlockState& s) const override { return inner_.fork_state(s); }
  std::vector<at::Tensor> state_tensors(const BlockState& s) const override {
    return inner_.state_tensors(s);
  }
  void run_blocks(int64_t first, int64_t last, BlockState& s) override;

  // Graphs captured so far (one per segment and state layout) and replays run.
  int captures() const { return captures_; }
  int replays() const { return replays_; }

 private:
  struct Segment;
  std::unique_ptr<Segment> capture(int64_t first, int64_t last, const BlockState& s);

  void replay(Segment& seg, int64_t first, int64_t last);

  BlockTransformer& inner_;
  Replay mode_;
  std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Segment>> segments_;
  struct Pool;
  std::unique_ptr<Pool> pool_;  // one memory pool for every graph of this wrapper
  int captures_ = 0, replays_ = 0;
};

// Whether graph capture can serve a run on `device`: a build with CUDA and a CUDA device. The
// reason when not.
struct GraphCheck {
  bool ok = false;
  std::string reason;
};
GraphCheck check_graphs(const at::Device& device);

}  // namespace ditbench
