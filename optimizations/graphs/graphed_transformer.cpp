#include "optimizations/graphs/graphed_transformer.h"

#include <stdexcept>

#include "models/common/flop_count.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "optimizations/parallel/captured_graph.h"
#endif

namespace ditbench {

namespace {

// What a captured graph assumes of one input tensor.
struct Layout {
  bool defined = false;
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::kCPU;
  std::vector<int64_t> sizes, strides;

  bool operator==(const Layout& o) const {
    return defined == o.defined && (!defined || (dtype == o.dtype && device == o.device &&
                                                 sizes == o.sizes && strides == o.strides));
  }
};

std::vector<Layout> layouts_of(const std::vector<at::Tensor>& tensors) {
  std::vector<Layout> out;
  for (const auto& t : tensors) {
    Layout l;
    l.defined = t.defined();
    if (l.defined) {
      l.dtype = t.scalar_type();
      l.device = t.device();
      l.sizes = t.sizes().vec();
      l.strides = t.strides().vec();
    }
    out.push_back(std::move(l));
  }
  return out;
}

std::string segment_name(int64_t first, int64_t last) {
  return "blocks " + std::to_string(first) + ".." + std::to_string(last - 1);
}

}  // namespace

struct GraphedTransformer::Segment {
#ifdef DITBENCH_HAS_CUDA
  std::unique_ptr<CapturedGraph> graph;
#endif
  BlockState input, output;  // the captured graph's input and output tensors
  std::vector<Layout> layouts;
  int64_t valid_rows = -1;
  // The arithmetic of the captured blocks (FlopCount): a replay runs it without calling them.
  double gemm_flops = 0, attention_flops = 0;
};

struct GraphedTransformer::Pool {
#ifdef DITBENCH_HAS_CUDA
  at::cuda::MempoolId_t id = at::cuda::graph_pool_handle();
#endif
};

GraphedTransformer::GraphedTransformer(BlockTransformer& inner, Replay replay)
    : inner_(inner), mode_(replay) {}

GraphedTransformer::~GraphedTransformer() = default;

GraphCheck check_graphs(const at::Device& device) {
#ifdef DITBENCH_HAS_CUDA
  if (device.is_cuda()) return {true, ""};
  return {false,
          "graphs: CUDA graph capture needs a CUDA device (the run is on " + device.str() + ")"};
#else
  (void)device;
  return {false, "graphs: this build has no CUDA"};
#endif
}

std::unique_ptr<GraphedTransformer::Segment> GraphedTransformer::capture(int64_t first,
                                                                         int64_t last,
                                                                         const BlockState& s) {
  if (mode_ == Replay::emulated) {
    auto seg = std::make_unique<Segment>();
    seg->layouts = layouts_of(inner_.state_tensors(s));
    seg->valid_rows = s.hidden_valid_rows;
    seg->input = inner_.fork_state(s);
    seg->output = inner_.fork_state(s);
    inner_.run_blocks(first, last, seg->output);  // allocates the "captured" outputs
    ++captures_;
    return seg;
  }
#ifndef DITBENCH_HAS_CUDA
  (void)first;
  (void)last;
  (void)s;
  throw Unsupported("graphs: this build has no CUDA");
#else
  auto seg = std::make_unique<Segment>();
  seg->layouts = layouts_of(inner_.state_tensors(s));
  seg->valid_rows = s.hidden_valid_rows;
  {
    // One eager run first: cuBLAS workspaces, cuDNN plans and kernel images are set up outside
    // the capture.
    BlockState warm = inner_.fork_state(s);
    inner_.run_blocks(first, last, warm);
  }
  seg->input = inner_.fork_state(s);
  BlockState work = inner_.fork_state(s);
  if (!pool_) pool_ = std::make_unique<Pool>();

  // Captured on a side stream (never the legacy default stream) that first waits for the work
  // enqueued so far; the current stream then waits for the side stream.
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream();
  const c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool(false, current.device_index());
  at::cuda::CUDAEvent ready;
  ready.record(current);
  ready.block(side);
  seg->graph = std::make_unique<CapturedGraph>();
  {
    c10::cuda::CUDAStreamGuard guard(side);
    // Thread-local capture mode (CapturedGraph): the other rank threads' CUDA calls do not
    // invalidate this capture. Under context parallelism every rank captures the same segment at
    // the same step, so the collectives recorded into the graphs match across ranks.
    seg->graph->begin(pool_->id);
    try {
      FlopCount captured(FlopCount::Scope::isolated);  // recorded, not run: counted at replay
      inner_.run_blocks(first, last, work);
      seg->gemm_flops = captured.gemm();
      seg->attention_flops = captured.attention();
      seg->graph->end();
    } catch (const Unsupported& e) {
      seg->graph->abandon();  // the error that ended the capture is what gets reported
      throw Unsupported("graphs: capturing " + segment_name(first, last) + ": " + e.what());
    } catch (const std::exception& e) {
      seg->graph->abandon();
      throw std::runtime_error("graphs: capturing " + segment_name(first, last) +
                               " failed: " + e.what());
    }
  }
  at::cuda::CUDAEvent captured;
  captured.record(side);
  captured.block(current);
  seg->output = work;
  ++captures_;
  return seg;
#endif
}

void GraphedTransformer::replay(Segment& seg, int64_t first, int64_t last) {
  if (mode_ == Replay::emulated) {
    BlockState rerun = inner_.fork_state(seg.input);
    inner_.run_blocks(first, last, rerun);
    const std::vector<at::Tensor> results = inner_.state_tensors(rerun);
    const std::vector<at::Tensor> outputs = inner_.state_tensors(seg.output);
    for (size_t k = 0; k < outputs.size(); ++k) {
      if (outputs[k].defined() && !outputs[k].is_same(results[k])) outputs[k].copy_(results[k]);
    }
    return;
  }
#ifdef DITBENCH_HAS_CUDA
  // The communicators with collectives inside watch the launch; the communication timer times
  // the spans inside it into the current step.
  seg.graph->launch("graph replay of " + segment_name(first, last));
  FlopCount::add(seg.gemm_flops, seg.attention_flops);
#endif
}

void GraphedTransformer::run_blocks(int64_t first, int64_t last, BlockState& s) {
  if (first >= last) return;
  if (mode_ == Replay::cuda_graph) {
#ifndef DITBENCH_HAS_CUDA
    throw Unsupported("graphs: this build has no CUDA");
#else
    if (!s.hidden.is_cuda()) {
      throw Unsupported("graphs: CUDA graph capture needs CUDA tensors (the state is on " +
                        s.hidden.device().str() + ")");
    }
#endif
  }
  auto& seg = segments_[{first, last}];
  const std::vector<at::Tensor> tensors = inner_.state_tensors(s);
  if (!seg || seg->layouts != layouts_of(tensors) || seg->valid_rows != s.hidden_valid_rows) {
    seg = capture(first, last, s);  // its inputs are s's own tensors
  } else {
    const std::vector<at::Tensor> inputs = inner_.state_tensors(seg->input);
    for (size_t k = 0; k < tensors.size(); ++k) {
      if (tensors[k].defined() && !tensors[k].is_same(inputs[k])) inputs[k].copy_(tensors[k]);
    }
  }
  replay(*seg, first, last);
  ++replays_;
  s = inner_.fork_state(seg->output);
}

}  // namespace ditbench
