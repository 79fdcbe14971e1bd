#pragma once
// GEMM arrangements of the one Linear type (optimizations/quant/linear.h) that remove memory passes
// around a DiT block's projections without changing what the block computes:
//  - linear_gelu_tanh: GELU (tanh form) in the cuBLASLt epilogue of the projection's GEMM;
//  - LinearGroup: Linears that read one input, run as one GEMM on their concatenated weights
//    (bfloat16, or FP8 for fp8_dynamic members reading one activation's e4m3 rows);
//  - linear_of_concat: a Linear over a concatenation [a, b], as GEMMs accumulating into one output
//    so that the concatenation is never written.
// Each serves bfloat16 CUDA activations of unquantized Linears (LinearGroup also e4m3 rows on the
// GPU) while the fused-kernel switch is on (optimizations/kernels/fused.h:
// DITBENCH_FUSED_KERNELS=0 turns them off with the kernels); everything else runs the plain chain
// written beside each, which defines the numerics. The results equal the chain's up to the
// bfloat16 rounding of one intermediate (the pre-activation, or the first partial sum) or, for
// the FP8 group, up to the float32 summation order of a wider GEMM.
#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "optimizations/quant/linear.h"

namespace ditbench {

// Whether a GEMM arrangement may replace `linear` on x: the switch is on, x is a bfloat16 CUDA
// tensor of linear's in_features, and the Linear is unquantized (an FP8 Linear quantizes its own
// input), bfloat16 on x's device, with a bias.
bool gemm_fusion_serves(const Linear& linear, const at::Tensor& x);

// gelu(linear(x), approximate="tanh"). x: [..., in] -> [..., out].
// Where gemm_fusion_serves: at::_addmm_activation(bias, x, W^T, use_gelu=true). On CUDA (ATen
// Blas.cpp, LibTorch 2.11) a 1-D contiguous bias with beta = 1, a contiguous 2-D output and more
// than one row and column send it to cuBLASLt with CUBLASLT_EPILOGUE_GELU_BIAS; otherwise it runs
// the GEMM and then at::gelu_(out, "tanh"). Both are the tanh form (PyTorch's own tests check the
// CUDA op against gelu(approximate="tanh")), which is diffusers' GELU(approximate="tanh"). The CPU
// kernel of the op applies the erf form instead, so CPU (and float32) keep the chain.
at::Tensor linear_gelu_tanh(Linear& linear, const at::Tensor& x);

// Linears that read the same input (to_q, to_k, to_v), run as one GEMM: y = x [W_0; W_1; ...]^T
// + [b_0, b_1, ...], member i's output being columns [offset_i, offset_i + out_i) of y. It reads
// x once instead of once per member and fills the GPU with one wide GEMM.
//
// The concatenated weight and bias are built on first use, and the members' parameters become
// views of them, so no weight is held twice and the members keep their checkpoint keys and
// shapes. A loader that copies into the parameters writes the concatenation too; one that
// replaces a parameter (or a move to another device) is noticed and the concatenation rebuilt.
// A member quantized after that gets its own storage back.
//
// Members that all run fp8_dynamic group the same way: their e4m3 weights [out_i, in] and
// per-output-channel scales stack into one [sum of out_i, in] operand (each output channel keeps
// its own scale, so the stacked weight is the members' weights exactly) and one FP8 GEMM reads
// the activation's e4m3 rows once; the members' weight_fp8 become views of the stack.
class LinearGroup {
 public:
  LinearGroup() = default;
  explicit LinearGroup(std::vector<Linear> members);

  // Whether the one GEMM serves x (gemm_fusion_serves for every member, same dtype and device).
  // Returns false, and gives the members their own storage back, once any member is quantized.
  bool serves(const at::Tensor& x);
  // The same for an activation on its way into the members: the bfloat16 GEMM above for its
  // `full` tensor, or the one FP8 GEMM where every member runs fp8_dynamic on the GPU with an
  // unpadded weight (K and out_i multiples of 16), x has e4m3 rows on that GPU and the fused-
  // kernel switch is on. Members in mixed modes are never grouped.
  bool serves(const QuantizedActivation& x);

  // x: [..., in] -> [..., sum of out_i]
  at::Tensor forward(const at::Tensor& x);
  // The same written into out: x [M, in] -> out [M, sum of out_i], rows of out contiguous (a row
  // range of a larger buffer, so two groups can fill one joint [image, text] buffer).
  void forward_into(const at::Tensor& x, const at::Tensor& out);
  // The same from an activation (sample_of for one sample of a batch): with fp8_dynamic members,
  // the one FP8 GEMM on its e4m3 rows (on the CPU the emulation of the stacked weight, as each
  // member's own emulation computes it); otherwise the bfloat16 GEMM on its `full` tensor.
  at::Tensor forward(const QuantizedActivation& x);
  void forward_into(const QuantizedActivation& x, const at::Tensor& out);

  // Member i's columns of a group output y [..., sum of out_i] -> [..., out_i] (a view).
  at::Tensor member_output(const at::Tensor& y, size_t i) const;
  int64_t out_features() const;

  // The concatenated weight [sum of out_i, in] (undefined until first use); for tests.
  const at::Tensor& packed_weight() const { return weight_; }
  // The stacked e4m3 weight of fp8_dynamic members (undefined until first use); for tests.
  const Fp8Rows& packed_fp8_weight() const { return weight_fp8_; }

 private:
  bool packed() const;
  void pack();
  void unpack();
  bool all_fp8_dynamic() const;
  void check_unquantized() const;  // c10::Error unless every member is unquantized
  bool packed_fp8() const;
  void pack_fp8();
  // x's e4m3 rows [M, in] -> out [M, sum of out_i] (undefined: a new tensor); returns the output.
  at::Tensor run_fp8(const QuantizedActivation& x, at::Tensor out);

  std::vector<Linear> members_;
  std::vector<int64_t> offsets_;  // first output column of each member
  at::Tensor weight_, bias_;      // [sum of out_i, in], [sum of out_i] or undefined
  Fp8Rows weight_fp8_;            // values [sum of out_i, in] e4m3, scale [sum of out_i, 1]
  at::Tensor bias_fp8_;           // the members' biases stacked beside weight_fp8_, or undefined
};

// linear(cat(parts, -1)) for parts [..., K_i] with sum K_i = in_features -> [..., out].
// Where gemm_fusion_serves (every part bfloat16 CUDA; an FP8 Linear scales each row of its whole
// input, so it always gets the concatenation): linear_split_input.
//
// Two GEMMs accumulating instead of one GEMM over a preallocated [M, K_a + K_b] buffer whose
// column ranges the producers write: the attention output comes from a kernel without an out=
// form (a copy of [M, K_a] would remain), and a GEMM writing a column range has a non-contiguous
// output, which ATen never sends through cuBLASLt, so the GELU epilogue producing the MLP part
// would fall back to a separate GELU pass over [M, K_b], more traffic than the concatenation
// costs. The accumulating GEMM only reads its own [M, N] output once more in its epilogue
// (N = 3072 against K = 15360 in HunyuanVideo's single blocks).
at::Tensor linear_of_concat(Linear& linear, const std::vector<at::Tensor>& parts);

// linear(cat([prefix, gelu_tanh(h)], -1)): an output projection over an attention output and an
// MLP branch given before its GELU (h). prefix [..., P], h [..., H] with P + H = in_features ->
// [..., out]. For an fp8_dynamic Linear, where the kernel serves (try_gelu_tanh_fp8): the GELU
// and the row quantization of the concatenation in one pass, neither the GELU output nor the
// concatenation written; otherwise the chain (which linear_of_concat runs).
at::Tensor linear_of_prefix_and_gelu(Linear& linear, const at::Tensor& prefix, const at::Tensor& h);

// The split itself on any device: y = bias + sum_i parts_i W[:, cols_i]^T, the first GEMM with
// the bias, the next ones accumulating into y (beta = 1). weight: [out, sum K_i] -> [..., out].
at::Tensor linear_split_input(const std::vector<at::Tensor>& parts, const at::Tensor& weight,
                              const at::Tensor& bias);

}  // namespace ditbench
