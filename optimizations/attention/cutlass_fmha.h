#pragma once
// Attention through CUTLASS's Hopper FMHA kernels (optimizations/kernels/fmha_sm90_cuda.h):
// bf16, head dim 128, compute capability 9.0. Registered as the attention backend
// "cutlass_fmha". q, k and v are read in place through their strides (the column ranges of a
// packed projection included); the output is written token-major, as the models read it back. A
// key mask is served by running the kernel on the valid keys (attend_by_key_selection). The
// backend runs fmha_default_variant for the keys; DITBENCH_FMHA_KERNEL=<name> (a name of
// fmha_variants) picks another, an unknown name is an InputError naming the known ones.
//
// The kernels walk 128-query tiles (one per query block and head) with one block per SM; where the
// last round of tiles would leave many SMs idle, the last query tiles run split over equal key
// chunks instead (plan_fmha_tail_split), their partial results merged by their log-sum-exps
// (try_merge_attention_parts). DITBENCH_FMHA_SPLIT_TAIL=0 runs every problem in one launch.
#include <cstdint>
#include <memory>
#include <optional>

#include "optimizations/attention/backends.h"
#include "optimizations/kernels/fmha_sm90_cuda.h"

namespace ditbench {

// How a problem's queries are launched: [0, main_queries) against every key in one launch, the
// rest (when parts > 1) in a second launch whose batch is `parts` equal chunks of the keys.
struct FmhaTailSplit {
  int64_t main_queries = 0;
  int64_t parts = 1;
};

// The split that finishes the tiles soonest on `sms` blocks at once, in a model of tile rounds: a
// launch of n tiles takes ceil(n / sms) rounds of its tile time; a tile over a key chunk costs its
// share of the keys plus 2 key blocks of fixed work, and splitting costs 16 key blocks more (the
// copy of the tail's queries, the second launch, the merge). The main launch takes the most whole
// query tiles that fill its rounds, a multiple of `cluster` a head (a kernel whose clusters take
// that many neighbouring tiles; the second launch runs its one-block form); the chunks divide the
// keys evenly, at least 1024 keys each, 2 to 16 of them. Batch 1 only (the chunks are the second
// launch's batch); parts = 1 where splitting gains nothing: fewer than 4 rounds, no idle SMs in the
// last round, or no cheaper split.
FmhaTailSplit plan_fmha_tail_split(int64_t batch, int64_t heads, int64_t queries, int64_t keys,
                                   int64_t sms, int64_t cluster = 1);

// The backend for the registry.
std::unique_ptr<AttentionBackend> make_cutlass_fmha_backend();

// Unmasked attention by one FMHA variant (none: fmha_default_variant for the keys): q [B, H, Sq,
// D], k, v [B, H, Sk, D] bf16 on a CUDA device. Operands whose layout the kernel cannot read
// (strides not multiples of 8 elements, unaligned bases) are copied token-major first; a query
// count that is not a multiple of 8 is padded with zero queries whose rows are dropped. Throws
// Unsupported with the kernel's reason when it cannot run at all (device, dtype, head dim).
// `split` overrides the plan (plan_fmha_tail_split for the variant's launch shape, unless
// DITBENCH_FMHA_SPLIT_TAIL=0 or the merge kernel is switched off); one that does not fit the
// problem (batch > 1, main_queries not a multiple of 128 below the query count, keys not divisible
// by parts) runs in one launch.
LocalAttentionResult cutlass_fmha_attention(const at::Tensor& q, const at::Tensor& k,
                                            const at::Tensor& v, bool need_lse,
                                            std::optional<FmhaVariant> variant = std::nullopt,
                                            std::optional<FmhaTailSplit> split = std::nullopt);

}  // namespace ditbench
