#pragma once
// FP8 (e4m3) quantization of ditbench::Linear: the modes, the row-wise quantizer both operands
// share, the two ways of running an FP8 linear (at::_scaled_mm on Hopper/Ada GPUs, and an exact
// quantize-dequantize emulation everywhere else) and the walk that quantizes a model by name.
#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <optional>
#include <string>
#include <vector>

#include "optimizations/quant/fp8_gemm.h"

namespace ditbench {

enum class QuantMode {
  none,             // the weight's own dtype
  fp8_dynamic,      // e4m3 activations (per-row scale from each call's amax) x e4m3 weights
  fp8_weight_only,  // e4m3 weights dequantized to the activation dtype before the matmul
};

// Suite names: "none", "fp8_dynamic", "fp8_weight_only".
const std::vector<std::string>& quant_mode_names();
QuantMode parse_quant_mode(const std::string& name);  // InputError naming the known modes
std::string quant_mode_name(QuantMode mode);

// Largest finite e4m3fn value; larger magnitudes would become NaN, so values are clamped first.
constexpr double kFp8E4m3Max = 448.0;
// The smallest amax a scale is made from (2^-112): a row or tensor of smaller nonzero magnitudes
// is scaled as if its amax were this, so that 448 / amax and 1 / (amax / 448) stay finite in
// float32 (an infinite factor would turn its zeros into NaN); its values quantize to e4m3's
// smallest steps or zero.
constexpr double kFp8MinAmax = 0x1p-112;

// Rows quantized to e4m3 with one float32 scale per row: scale = max(amax(|row|), kFp8MinAmax) /
// 448 (1 for an all-zero row), values = e4m3(clamp(row * (1 / scale), -448, 448)) rounded to
// nearest even, the reciprocal and the product IEEE.
struct Fp8Rows {
  at::Tensor values;  // [R, C] Float8_e4m3fn
  at::Tensor scale;   // [R, 1] float32
};
// On CUDA (float32, float16 or bfloat16 rows with unit column stride) one fused kernel
// (fp8_rows_cuda.h); elsewhere the op-by-op ATen form, which defines the numbers: the kernel's
// output equals it bit for bit.
Fp8Rows quantize_rows_fp8(const at::Tensor& rows);       // rows: [R, C], any floating dtype
Fp8Rows quantize_rows_fp8_aten(const at::Tensor& rows);  // the ATen form on any device
at::Tensor dequantize_rows_fp8(const Fp8Rows& rows);     // -> [R, C] float32

// An activation on its way into Linears, quantized once for all the fp8_dynamic ones among
// them. A producer that can emit e4m3 rows directly (a fused kernel ending in the row
// quantization) fills `fp8` without a pass of its own; `full` is the activation itself, which
// Linears in other modes read. Either may be undefined, not both: `fp8` when no consumer runs
// fp8_dynamic, `full` when every consumer does and the producer skipped writing it.
struct QuantizedActivation {
  at::Tensor full;                    // [..., K] or undefined
  Fp8Rows fp8;                        // values [M, K], scale [M, 1], M = prod(shape[:-1])
  std::vector<int64_t> shape;         // [..., K]
  at::ScalarType dtype = at::kFloat;  // the activation's dtype, which the Linears return
};
// x: [..., K] kept as `full`; with `quantize`, its rows quantized by quantize_rows_fp8 too.
QuantizedActivation quantized_activation(const at::Tensor& x, bool quantize);
// Sample b of an activation of shape [B, ...]: full[b] and its rows of the e4m3 rows (views).
QuantizedActivation sample_of(const QuantizedActivation& x, int64_t b);

// y = x W^T + b with x quantized per row on the fly and W given quantized per output channel.
// x: [M, K]; weight.values: [N, K], weight.scale: [N, 1]; bias: [N] or undefined.
// The emulation dequantizes both operands and multiplies in float32 (any device); the result is
// cast to x's dtype. It is what at::_scaled_mm computes, up to float32 summation order.
at::Tensor fp8_linear_emulated(const at::Tensor& x, const Fp8Rows& weight, const at::Tensor& bias);
// The row-scaled FP8 GEMM on CUDA (compute capability 8.9+): the kernel fp8_gemm_choice names
// (one of fp8_gemm.h's CUTLASS kernels on Hopper, with x quantized beside it where the choice
// says so: fp8_linear_overlapped), else at::_scaled_mm. K and N must be multiples of 16 (pad the
// weight once; see LinearImpl::quantize); output bf16, cast to x's dtype.
at::Tensor fp8_linear_scaled_mm(const at::Tensor& x, const Fp8Rows& weight, const at::Tensor& bias);
// The same two with x already quantized ([M, K] e4m3 rows); the result has dtype `out_dtype`.
at::Tensor fp8_linear_emulated(const Fp8Rows& x, at::ScalarType out_dtype, const Fp8Rows& weight,
                               const at::Tensor& bias);
at::Tensor fp8_linear_scaled_mm(const Fp8Rows& x, at::ScalarType out_dtype, const Fp8Rows& weight,
                                const at::Tensor& bias);

// fp8_linear_scaled_mm(x, out.scalar_type(), weight, bias) written into out [M, N]. Where out
// is bfloat16 on x's device with contiguous rows (a row range of a larger buffer, say), the GEMM
// writes it itself, nothing copied; otherwise the result is copied in.
void fp8_linear_scaled_mm_out(const Fp8Rows& x, const Fp8Rows& weight, const at::Tensor& bias,
                              const at::Tensor& out);

// at::_scaled_mm itself (cuBLASLt's kernel), whatever fp8_gemm_choice says.
at::Tensor fp8_linear_aten_scaled_mm(const Fp8Rows& x, at::ScalarType out_dtype,
                                     const Fp8Rows& weight, const at::Tensor& bias);
// The GEMM for an [M, K] x [N, K]^T product: a CUTLASS kernel and its tile order, or none for
// at::_scaled_mm, and for a CUTLASS kernel given the activation unquantized, on how many SMs to
// quantize it beside the GEMM (fp8_linear_overlapped; 0, the default: quantize first, which is
// faster on an H100, bench/RESULTS.md). The kernel by shape, unless the environment says
// otherwise: DITBENCH_FP8_GEMM names "scaled_mm" or a kernel of fp8_gemm.h,
// DITBENCH_FP8_QUANT_SMS an even number of SMs or 0 (an InputError for anything else). With
// gated_residual, for a product whose caller adds it to a residual: the gated-residual kernel's
// tiles (kFp8GemmGatedResidualTiles) for every large product, K = 3072 included, where its
// epilogue saves the residual's separate pass.
struct Fp8GemmChoice {
  std::optional<Fp8GemmKernel> kernel;
  Fp8GemmSchedule schedule;
  int quant_sms = 0;
};
Fp8GemmChoice fp8_gemm_choice(int64_t m, int64_t n, int64_t k, bool gated_residual = false);
// x times weight^T through `kernel`: the same numbers as fp8_linear_scaled_mm up to float32
// summation order, or an undefined tensor when the kernel cannot serve these operands (a build
// without CUTLASS, not a compute capability 9.0 GPU, K or N not a multiple of 16, operands not
// e4m3 and contiguous on one device, scales or bias of other lengths than M and N).
at::Tensor fp8_linear_cutlass(const Fp8Rows& x, at::ScalarType out_dtype, const Fp8Rows& weight,
                              const at::Tensor& bias, Fp8GemmKernel kernel,
                              Fp8GemmSchedule schedule = {});
// residual + gate * (x weight^T + bias) into out, for x's e4m3 rows [M, K], residual and out
// [M, N] and gate [N] (bfloat16, contiguous, on x's device; out a tensor of its own): the
// gated residual added in the epilogue of the CUTLASS kernel of kFp8GemmGatedResidualTiles
// (fp8_gemm_gated_residual_cuda), equal bit for bit to the bfloat16 chain `residual +
// fp8_linear_cutlass(x, bf16, weight, bias, kFp8GemmGatedResidualTiles) * gate` without the
// product written. False, writing nothing, where it does not serve: as fp8_linear_cutlass, or
// residual, gate or out of other shapes, dtypes, devices or layouts.
bool fp8_linear_gated_residual_out(const Fp8Rows& x, const Fp8Rows& weight, const at::Tensor& bias,
                                   const at::Tensor& residual, const at::Tensor& gate,
                                   const at::Tensor& out, Fp8GemmSchedule schedule = {});
// x [M, K] (float32, float16 or bfloat16 with unit column stride) times weight^T through
// `kernel`, with x's row quantization running beside the GEMM on `quant_sms` SMs (even, at
// least 2) and the GEMM on the others, each tile of x's rows multiplied as soon as they are
// quantized: bit for bit what quantize_rows_fp8 followed by fp8_linear_cutlass on the other SMs
// computes, cast to x's dtype. An undefined tensor where either cannot serve (as
// fp8_linear_cutlass; rows longer than 4096 16-byte vectors; quant_sms odd or leaving the GEMM
// no SMs).
at::Tensor fp8_linear_overlapped(const at::Tensor& x, const Fp8Rows& weight, const at::Tensor& bias,
                                 Fp8GemmKernel kernel, Fp8GemmSchedule schedule, int quant_sms);

// Whether `mode` can run on `device`, and if not, why (a runner's skip reason).
struct QuantCheck {
  bool ok = true;
  std::string reason;
};
QuantCheck check_quant_mode(QuantMode mode, const at::Device& device);

// Quantizes every ditbench::Linear under `root` whose dotted module name (as named_modules()
// spells it, e.g. "transformer_blocks.0.attn.to_q") matches some include pattern and no exclude
// pattern (std::regex_search; an empty include list selects every Linear). Returns the names
// quantized, in module order. The patterns are data the model family supplies; a pattern that
// is not a valid regex is an InputError naming it. Linears an earlier call quantized are left as
// they are, so passes with different patterns can give parts of a model different modes.
std::vector<std::string> apply_quantization(torch::nn::Module& root, QuantMode mode,
                                            const std::vector<std::string>& include_patterns,
                                            const std::vector<std::string>& exclude_patterns);

}  // namespace ditbench
