#pragma once
// The block-structured transformer interface. Caches, context parallelism and graph capture are
// written once against it; every model family implements it.
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "models/common/error.h"

namespace ditbench {

// Text conditioning as the pipelines hand it to the transformer.
struct PromptEmbeds {
  at::Tensor embeds;  // [B, L, text_dim]
  at::Tensor
      attention_mask;  // [B, L] bool (true = valid token), right-padded; undefined = all valid
  at::Tensor pooled;   // [B, pooled_dim] (undefined for models without pooled text)
  std::string source;  // "file:<path>" or "synthetic:seed=<n>"
};

// One denoising call's inputs, in the layout and dtypes the pipeline feeds the model.
struct TransformerInputs {
  at::Tensor latents;   // model-specific layout, e.g. [B, C, F, H, W]
  at::Tensor timestep;  // [B]
  at::Tensor guidance;  // [B] embedded guidance (undefined when the model has none)
  PromptEmbeds prompt;
  // Token position ids where the pipeline computes them (FLUX: img_ids [N, 3] of the packed
  // latents, txt_ids [L, 3]); shared by the batch. Undefined for models that derive positions.
  at::Tensor image_ids, text_ids;
};

// Everything the blocks read and write during one forward pass. `hidden` is the image stream and
// `context` the text stream; single-stream stages may keep both as views of one joint tensor.
struct BlockState {
  at::Tensor hidden;   // [B, N, D]
  at::Tensor context;  // [B, L, D] (undefined for models without a text stream in the blocks)
  at::Tensor temb;     // [B, D] conditioning vector
  // Under context parallelism the last ranks' shards end in padding rows (the sequence rounded up
  // to a multiple of the ranks): hidden rows [0, hidden_valid_rows) are real tokens, and caches
  // leave the rest out of their signals. -1: every row is real.
  int64_t hidden_valid_rows = -1;
  // Model-private data (RoPE tables, masks, modulation, joint buffers).
  std::shared_ptr<void> extra;
};

class BlockTransformer {
 public:
  virtual ~BlockTransformer() = default;

  // Embeddings, RoPE tables, masks, conditioning vector.
  virtual BlockState prepare(const TransformerInputs& in) = 0;
  virtual int64_t num_blocks() const = 0;
  // Runs block i in place on the state.
  virtual void run_block(int64_t i, BlockState& s) = 0;
  // Final norm, projection and unpatchify: the model output in the latents' layout.
  virtual at::Tensor finish(BlockState& s) = 0;

  // TeaCache's per-model signal, computed from the prepared state before block 0.
  virtual at::Tensor teacache_signal(const BlockState& s) = 0;

  // Runs blocks [first, last) in order on the state: the unit the caches run and graph capture
  // records (optimizations/graphs).
  virtual void run_blocks(int64_t first, int64_t last, BlockState& s) {
    for (int64_t i = first; i < last; ++i) run_block(i, s);
  }

  // For graph capture. fork_state: a state holding the same tensors whose model-private part is
  // a copy of s's, so that blocks run on the fork leave s's own fields as they were.
  // state_tensors: every tensor the blocks read from a state, in a fixed order (undefined ones
  // included), so that a captured graph's inputs can be refilled from another step's state. A
  // model whose private state cannot be listed says so (Unsupported) and cannot be captured.
  virtual BlockState fork_state(const BlockState& s) const {
    if (s.extra) throw Unsupported("graph capture: this model cannot copy its block state");
    return s;
  }
  virtual std::vector<at::Tensor> state_tensors(const BlockState& s) const {
    if (s.extra) throw Unsupported("graph capture: this model cannot list its block state");
    return {s.hidden, s.context, s.temb};
  }

  // The whole forward pass: prepare, every block, finish.
  at::Tensor forward(const TransformerInputs& in) {
    BlockState s = prepare(in);
    run_blocks(0, num_blocks(), s);
    return finish(s);
  }
};

}  // namespace ditbench
