#include "optimizations/parallel/sequence_shard.h"

#include "models/common/error.h"

namespace ditbench {

SequenceShard shard_sequence(const at::Tensor& x, int64_t dim, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) {
    throw CommError("shard_sequence: rank " + std::to_string(rank) + " is outside a group of " +
                    std::to_string(world));
  }
  dim = at::maybe_wrap_dim(dim, x.dim());
  SequenceShard shard;
  shard.full_length = x.size(dim);
  const int64_t per_rank = (shard.full_length + world - 1) / world;
  shard.padding = per_rank * world - shard.full_length;
  at::Tensor padded = x;
  if (shard.padding > 0) {
    auto pad_sizes = x.sizes().vec();
    pad_sizes[static_cast<size_t>(dim)] = shard.padding;
    padded = at::cat({x, at::zeros(pad_sizes, x.options())}, dim);
  }
  shard.local = padded.narrow(dim, rank * per_rank, per_rank).contiguous();
  return shard;
}

at::Tensor shard_key_mask(const at::Tensor& key_mask, int64_t batch, int64_t length, int rank,
                          int world, const at::Device& device) {
  const int64_t per_rank = (length + world - 1) / world;
  const bool padded = per_rank * world != length;
  if (!key_mask.defined() && !padded) return {};
  at::Tensor full =
      key_mask.defined()
          ? key_mask.to(device, at::kBool)
          : at::ones({batch, length}, at::TensorOptions().dtype(at::kBool).device(device));
  if (full.dim() != 2 || full.size(0) != batch || full.size(1) != length) {
    throw CommError("shard_key_mask: key mask must be [" + std::to_string(batch) + ", " +
                    std::to_string(length) + "]");
  }
  // Padding rows are zeros, i.e. false: masked out.
  return shard_sequence(full, 1, rank, world).local;
}

at::Tensor concat_key_masks(const at::Tensor& first, int64_t len_first, const at::Tensor& second,
                            int64_t len_second, int64_t batch, const at::Device& device) {
  if (!first.defined() && !second.defined()) return {};
  auto options = at::TensorOptions().dtype(at::kBool).device(device);
  auto a = first.defined() ? first.to(device, at::kBool) : at::ones({batch, len_first}, options);
  auto b = second.defined() ? second.to(device, at::kBool) : at::ones({batch, len_second}, options);
  return at::cat({a, b}, 1);
}

at::Tensor gather_sequence(const at::Tensor& local, int64_t dim, int64_t full_length,
                           Communicator& comm) {
  dim = at::maybe_wrap_dim(dim, local.dim());
  // all_gather concatenates along dim 0, so bring the sequence dim to the front and back.
  auto gathered = comm.all_gather(local.movedim(dim, 0).contiguous()).movedim(0, dim);
  if (full_length > gathered.size(dim)) {
    throw CommError("gather_sequence: full length " + std::to_string(full_length) +
                    " exceeds the " + std::to_string(gathered.size(dim)) + " gathered rows");
  }
  return gathered.narrow(dim, 0, full_length).contiguous();
}

namespace {

void check_cfg_degree(const Communicator& cfg_comm) {
  if (cfg_comm.size() != 2) {
    throw Unsupported("cfg parallel needs exactly 2 ranks per pair, got " +
                      std::to_string(cfg_comm.size()));
  }
}

}  // namespace

at::Tensor cfg_split(const at::Tensor& batch, const Communicator& cfg_comm) {
  check_cfg_degree(cfg_comm);
  if (!batch.defined()) return batch;
  if (batch.dim() == 0 || batch.size(0) % 2 != 0) {
    throw Unsupported("cfg parallel needs an even batch [uncond; cond], got a tensor of batch " +
                      (batch.dim() ? std::to_string(batch.size(0)) : std::string("(0-d)")));
  }
  return batch.chunk(2, 0)[cfg_comm.rank()].contiguous();
}

TransformerInputs cfg_split(const TransformerInputs& inputs, const Communicator& cfg_comm) {
  TransformerInputs half = inputs;
  half.latents = cfg_split(inputs.latents, cfg_comm);
  half.timestep = cfg_split(inputs.timestep, cfg_comm);
  half.guidance = cfg_split(inputs.guidance, cfg_comm);
  half.prompt.embeds = cfg_split(inputs.prompt.embeds, cfg_comm);
  half.prompt.attention_mask = cfg_split(inputs.prompt.attention_mask, cfg_comm);
  half.prompt.pooled = cfg_split(inputs.prompt.pooled, cfg_comm);
  return half;
}

at::Tensor cfg_gather(const at::Tensor& branch, Communicator& cfg_comm) {
  check_cfg_degree(cfg_comm);
  return cfg_comm.all_gather(branch.contiguous());
}

}  // namespace ditbench
