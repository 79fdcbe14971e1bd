#include "optimizations/parallel/context_parallel.h"

#include <array>
#include <cstdlib>
#include <string>

#include "models/common/error.h"
#include "optimizations/kernels/attention_merge.h"
#include "optimizations/kernels/strided_copy.h"

namespace ditbench {

namespace {

std::string not_divisible(int64_t degree, int64_t heads) {
  return "ulysses degree " + std::to_string(degree) + " does not divide " + std::to_string(heads) +
         " heads";
}

// A fully masked block's output is meaningless (NaN from the math path, 0 from flash): what it
// contributes is decided by its lse alone.
at::Tensor zero_where_masked(const at::Tensor& out, const at::Tensor& lse) {
  return at::where(at::isneginf(lse).unsqueeze(-1), at::zeros({}, out.options()), out);
}

// Ulysses' send buffer for head group c of C: [P, B, S/P, 3, Hc, D] with Hc = H/(P·C); chunk p
// holds rank p's heads of the group (head p·H/P + c·Hc + j) of every local token, q, k and v
// token-major, each read once in 16-byte pieces. q, k, v: [B, H, S/P, D].
at::Tensor pack_head_group(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t P,
                           int64_t C, int64_t c) {
  const int64_t B = q.size(0), H = q.size(1), S_local = q.size(2), D = q.size(3);
  const int64_t Hc = H / (P * C);
  auto send = at::empty({P, B, S_local, 3, Hc, D}, q.options());
  for (int64_t i = 0; i < 3; ++i) {
    const at::Tensor& x = i == 0 ? q : i == 1 ? k : v;
    // [B, S/P, H, D] -> [B, S/P, P, C, Hc, D] -> group c: [P, B, S/P, Hc, D]
    at::Tensor slot = send.select(3, i);
    copy_strided(slot,
                 x.transpose(1, 2).unflatten(2, {P, C, Hc}).select(3, c).permute({2, 0, 1, 3, 4}));
  }
  return send;
}

// What the exchange delivered, [P (source shard), B, S/P, 3, Hc, D], as q, k, v [B, Hc, S, D]
// over the whole sequence, shards in rank order. With B = 1 they are views (token stride
// 3·Hc·D, the layout of a packed projection) and attention reads them in place.
std::array<at::Tensor, 3> whole_sequence(const at::Tensor& received) {
  const int64_t P = received.size(0), B = received.size(1), S_local = received.size(2);
  auto whole = received.transpose(0, 1).reshape(
      {B, P * S_local, 3, received.size(4), received.size(5)});  // [B, S, 3, Hc, D]
  auto part = [&](int64_t i) { return whole.select(2, i).transpose(1, 2); };
  return {part(0), part(1), part(2)};
}

// An attention output [B, Hc, S, D] cut back into sequence shards, [P, B, S/P, Hc, D] with chunk
// p for rank p: no copy with B = 1, since the backends write it token-major.
at::Tensor to_sequence_shards(const at::Tensor& out, int64_t P) {
  return dense(out.transpose(1, 2).unflatten(1, {P, out.size(2) / P}).transpose(0, 1));
}

}  // namespace

LocalAttentionResult merge_attention(const LocalAttentionResult& a, const LocalAttentionResult& b) {
  // lse_*: [B, H, Sq]; out_*: [B, H, Sq, D]
  auto lse_a = a.lse.to(at::kFloat), lse_b = b.lse.to(at::kFloat);
  auto out_a = zero_where_masked(a.out.to(at::kFloat), lse_a);
  auto out_b = zero_where_masked(b.out.to(at::kFloat), lse_b);
  // Shift by the larger lse so the weights are at most 1; where both are -inf shift by 0 so the
  // weights come out 0 instead of exp(-inf + inf) = NaN.
  auto top = at::maximum(lse_a, lse_b);
  top = at::where(at::isneginf(top), at::zeros({}, top.options()), top);
  auto weight_a = at::exp(lse_a - top), weight_b = at::exp(lse_b - top);  // [B, H, Sq]
  auto total = weight_a + weight_b;
  auto safe_total = at::where(total > 0, total, at::ones({}, total.options()));
  auto out =
      (out_a * weight_a.unsqueeze(-1) + out_b * weight_b.unsqueeze(-1)) / safe_total.unsqueeze(-1);
  return {out, top + at::log(total)};  // log(0) = -inf: still fully masked
}

LocalAttentionResult merge_attention_parts(const std::vector<LocalAttentionResult>& parts,
                                           at::ScalarType dtype) {
  if (parts.empty()) throw CommError("merge_attention_parts: no parts");
  std::vector<at::Tensor> outs, lses;
  for (const auto& part : parts) {
    outs.push_back(part.out);
    lses.push_back(part.lse);
  }
  if (parts[0].out.scalar_type() == dtype) {
    auto [out, lse] = try_merge_attention_parts(outs, lses);
    if (out.defined()) return {out, lse};
  }
  auto lse = parts[0].lse.to(at::kFloat);
  LocalAttentionResult merged{zero_where_masked(parts[0].out.to(at::kFloat), lse), lse};
  for (size_t i = 1; i < parts.size(); ++i) merged = merge_attention(merged, parts[i]);
  return {merged.out.to(dtype), merged.lse};
}

at::Tensor UlyssesAttention::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& key_mask, const LocalAttentionFn& local) {
  const int64_t P = comm_.size();
  if (P == 1) return local(q, k, v, key_mask, false).out;
  const int64_t B = q.size(0), H = q.size(1), S_local = q.size(2), D = q.size(3);
  if (H % P != 0) throw Unsupported(not_divisible(P, H));
  if (k.sizes() != q.sizes() || v.sizes() != q.sizes()) {
    throw CommError("ulysses attention: q, k and v shards must have one shape [B, H, S/P, D]");
  }

  at::Tensor full_mask;  // [B, S], in the same shard order as the gathered keys
  if (key_mask.defined()) {
    auto gathered =
        comm_.all_gather(key_mask.to(at::kBool).unsqueeze(0).contiguous());  // [P, B, S/P]
    full_mask = gathered.permute({1, 0, 2}).reshape({B, P * S_local});
  }
  if (chunks_ > 1) return attend_in_chunks(q, k, v, full_mask, local);

  // One all-to-all for q, k and v in token-major order (all heads as one group), attention over
  // the whole sequence for this rank's H/P heads, and its output back to the sequence shards.
  auto [q_all, k_all, v_all] = whole_sequence(comm_.all_to_all(pack_head_group(q, k, v, P, 1, 0)));
  auto out = local(q_all, k_all, v_all, full_mask, false).out;  // [B, H/P, S, D]
  auto back = comm_.all_to_all(to_sequence_shards(out, P));
  // back: [P (source head group), B, S/P, H/P, D] -> [B, S/P, H, D], returned as a [B, H, S/P, D]
  // view: the caller's [B, S/P, H·D] for the output projection is then a view too.
  return dense(back.permute({1, 2, 0, 3, 4})).view({B, S_local, H, D}).transpose(1, 2);
}

at::Tensor UlyssesAttention::attend_in_chunks(const at::Tensor& q, const at::Tensor& k,
                                              const at::Tensor& v, const at::Tensor& full_mask,
                                              const LocalAttentionFn& local) {
  const int64_t P = comm_.size(), C = chunks_;
  const int64_t B = q.size(0), H = q.size(1), S_local = q.size(2), D = q.size(3);
  const int64_t H_local = H / P;
  if (H_local % C != 0) {
    throw Unsupported(std::to_string(C) + " Ulysses head groups do not divide the " +
                      std::to_string(H_local) + " heads of a rank");
  }
  const int64_t Hc = H_local / C;  // heads of one group on one rank
  std::vector<at::Tensor> sends(C), received(C), outs(C), backs(C);
  std::vector<std::unique_ptr<CommWork>> arriving(C), leaving(C);
  auto start = [&](int64_t c) {
    sends[c] = pack_head_group(q, k, v, P, C, c);
    received[c] = at::empty_like(sends[c]);
    arriving[c] = comm_.all_to_all_into(sends[c], received[c]);
  };
  start(0);
  for (int64_t c = 0; c < C; ++c) {
    if (c + 1 < C) start(c + 1);  // moves while group c computes
    arriving[c]->wait();
    auto [q_all, k_all, v_all] = whole_sequence(received[c]);
    auto out = local(q_all, k_all, v_all, full_mask, false).out;  // [B, Hc, S, D]
    outs[c] = to_sequence_shards(out, P);
    backs[c] = at::empty_like(outs[c]);
    leaving[c] = comm_.all_to_all_into(outs[c], backs[c]);
  }
  // [B, S/P, P, C, Hc, D] = [B, S/P, H, D]: group c of head group p from backs[c][p].
  auto result = at::empty({B, S_local, P, C, Hc, D}, q.options());
  for (int64_t c = 0; c < C; ++c) {
    leaving[c]->wait();
    at::Tensor group = result.select(3, c);
    copy_strided(group, backs[c].permute({1, 2, 0, 3, 4}));
  }
  return result.view({B, S_local, H, D}).transpose(1, 2);  // [B, H, S/P, D] view
}

LocalAttentionResult RingAttention::attend_with_lse(const at::Tensor& q, const at::Tensor& k,
                                                    const at::Tensor& v, const at::Tensor& key_mask,
                                                    const LocalAttentionFn& local) {
  const int P = comm_.size();
  const int next = (comm_.rank() + 1) % P, prev = (comm_.rank() + P - 1) % P;
  // The block in hand: K and V [B, S/P, H, D] (token-major; the first is the caller's k and v as
  // they are, views of the projections, which a transport copies into a message itself: NCCL
  // contiguous first, peer copies row by row), and its key-mask shard.
  std::array<at::Tensor, 2> kv{k.transpose(1, 2), v.transpose(1, 2)};
  at::Tensor mask = key_mask.defined() ? key_mask.to(at::kBool).contiguous() : at::Tensor();
  std::vector<LocalAttentionResult> parts;  // out: [B, H, Sq, D], lse: [B, H, Sq], one per block
  for (int step = 0; step < P; ++step) {
    // Start passing the block in hand to the next rank before computing on it.
    std::vector<std::unique_ptr<CommWork>> transfers;
    std::array<at::Tensor, 2> kv_incoming;
    at::Tensor mask_incoming;
    if (step + 1 < P) {
      for (size_t i = 0; i < 2; ++i) {
        kv_incoming[i] = at::empty(kv[i].sizes(), kv[i].options());
        transfers.push_back(comm_.send_recv(kv[i], next, kv_incoming[i], prev));
      }
      if (mask.defined()) {
        mask_incoming = at::empty_like(mask);
        transfers.push_back(comm_.send_recv(mask, next, mask_incoming, prev));
      }
    }
    parts.push_back(local(q, kv[0].transpose(1, 2), kv[1].transpose(1, 2), mask, true));
    if (!transfers.empty()) {
      for (auto& transfer : transfers) transfer->wait();
      kv = kv_incoming;
      mask = mask_incoming;
    }
  }
  return merge_attention_parts(parts, q.scalar_type());
}

at::Tensor RingAttention::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& key_mask, const LocalAttentionFn& local) {
  if (comm_.size() == 1) return local(q, k, v, key_mask, false).out;
  return attend_with_lse(q, k, v, key_mask, local).out;
}

at::Tensor UspAttention::attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                const at::Tensor& key_mask, const LocalAttentionFn& local) {
  // Inside the Ulysses group the sequence is whole for H/U heads; across groups it is still
  // split, so the "local" attention Ulysses runs is a ring over the groups.
  LocalAttentionFn ring_over_groups = [&](const at::Tensor& gq, const at::Tensor& gk,
                                          const at::Tensor& gv, const at::Tensor& gmask,
                                          bool need_lse) {
    auto result = ring_.attend_with_lse(gq, gk, gv, gmask, local);
    if (!need_lse) result.lse = at::Tensor();
    return result;
  };
  return ulysses_.attend(q, k, v, key_mask, ring_over_groups);
}

void ParallelGroups::synchronize(const std::string& op) const {
  for (const auto* group : {&sequence, &cfg, &ulysses, &ring}) {
    if (*group && (*group)->size() > 1) return (*group)->synchronize(op);
  }
}

ParallelGroups make_parallel_groups(Communicator& world, int cfg_degree, int ulysses_degree,
                                    int ring_degree) {
  if (cfg_degree != 1 && cfg_degree != 2) {
    throw Unsupported("cfg parallel degree must be 1 or 2, got " + std::to_string(cfg_degree));
  }
  if (ulysses_degree < 1 || ring_degree < 1) {
    throw Unsupported("ulysses and ring degrees must be at least 1");
  }
  if (cfg_degree * ulysses_degree * ring_degree != world.size()) {
    throw Unsupported("cfg " + std::to_string(cfg_degree) + " x ulysses " +
                      std::to_string(ulysses_degree) + " x ring " + std::to_string(ring_degree) +
                      " needs " + std::to_string(cfg_degree * ulysses_degree * ring_degree) +
                      " ranks, but the launch has " + std::to_string(world.size()));
  }
  const int per_branch = ulysses_degree * ring_degree;
  const int cfg_index = world.rank() / per_branch;
  const int shard = world.rank() % per_branch;
  const int ring_index = shard / ulysses_degree, ulysses_index = shard % ulysses_degree;
  ParallelGroups groups;
  groups.cfg_degree = cfg_degree;
  groups.ulysses_degree = ulysses_degree;
  groups.ring_degree = ring_degree;
  // Every rank calls the same splits in the same order (each is collective over its parent).
  groups.sequence = world.subgroup(cfg_index, shard);
  groups.cfg = world.subgroup(shard, cfg_index);
  groups.ulysses = groups.sequence->subgroup(ring_index, ulysses_index);
  groups.ring = groups.sequence->subgroup(ulysses_index, ring_index);
  return groups;
}

void check_context_parallel_layout(int ulysses_degree, int ring_degree, int64_t num_heads) {
  if (ulysses_degree < 1 || ring_degree < 1) {
    throw Unsupported("ulysses and ring degrees must be at least 1");
  }
  if (num_heads % ulysses_degree != 0) throw Unsupported(not_divisible(ulysses_degree, num_heads));
  const int chunks = ulysses_chunks();
  if (ulysses_degree > 1 && ring_degree == 1 && (num_heads / ulysses_degree) % chunks != 0) {
    throw Unsupported("DITBENCH_ULYSSES_CHUNKS=" + std::to_string(chunks) +
                      " does not divide the " + std::to_string(num_heads / ulysses_degree) +
                      " heads of a rank (ulysses degree " + std::to_string(ulysses_degree) + ")");
  }
}

int ulysses_chunks() {
  const char* env = std::getenv("DITBENCH_ULYSSES_CHUNKS");
  if (!env || !*env) return 1;
  char* end = nullptr;
  const long value = std::strtol(env, &end, 10);
  if (*end != '\0' || value < 1 || value > 1024) {
    throw InputError("DITBENCH_ULYSSES_CHUNKS: expected a positive integer, got '" +
                     std::string(env) + "'");
  }
  return static_cast<int>(value);
}

std::unique_ptr<ContextParallelAttention> make_context_parallel_attention(
    const ParallelGroups& groups, int64_t num_heads) {
  if (groups.ulysses_degree * groups.ring_degree == 1) return nullptr;
  check_context_parallel_layout(groups.ulysses_degree, groups.ring_degree, num_heads);
  if (groups.ring_degree == 1) {
    return std::make_unique<UlyssesAttention>(*groups.ulysses, ulysses_chunks());
  }
  if (groups.ulysses_degree == 1) return std::make_unique<RingAttention>(*groups.ring);
  return std::make_unique<UspAttention>(*groups.ulysses, *groups.ring);
}

}  // namespace ditbench
