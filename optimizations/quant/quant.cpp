#include "optimizations/quant/quant.h"

#include <cmath>
#include <cstdlib>
#include <regex>

#include "models/common/error.h"
#include "optimizations/quant/linear.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>

#include "optimizations/quant/fp8_gemm_cuda.h"
#include "optimizations/quant/fp8_rows_cuda.h"
#endif

namespace ditbench {

const std::vector<std::string>& quant_mode_names() {
  static const std::vector<std::string> names{"none", "fp8_dynamic", "fp8_weight_only"};
  return names;
}

QuantMode parse_quant_mode(const std::string& name) {
  if (name == "none") return QuantMode::none;
  if (name == "fp8_dynamic") return QuantMode::fp8_dynamic;
  if (name == "fp8_weight_only") return QuantMode::fp8_weight_only;
  throw InputError("unknown quantization mode '" + name +
                   "' (known: none, fp8_dynamic, fp8_weight_only)");
}

std::string quant_mode_name(QuantMode mode) {
  return quant_mode_names().at(static_cast<size_t>(mode));
}

Fp8Rows quantize_rows_fp8(const at::Tensor& rows) {
#ifdef DITBENCH_HAS_CUDA
  const auto dtype = rows.scalar_type();
  if (rows.is_cuda() && rows.dim() == 2 && rows.size(0) > 0 && rows.stride(1) == 1 &&
      (dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16)) {
    c10::cuda::CUDAGuard guard(rows.device());
    auto values = at::empty(rows.sizes(), rows.options().dtype(at::kFloat8_e4m3fn));  // [R, C]
    auto scale = at::empty({rows.size(0), 1}, rows.options().dtype(at::kFloat));      // [R, 1]
    const auto input = dtype == at::kFloat  ? Fp8RowsInput::float32
                       : dtype == at::kHalf ? Fp8RowsInput::float16
                                            : Fp8RowsInput::bfloat16;
    if (quantize_rows_fp8_cuda(rows.data_ptr(), input, rows.size(0), rows.size(1), rows.stride(0),
                               values.data_ptr(), scale.data_ptr<float>(),
                               at::cuda::getCurrentCUDAStream())) {
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return {values, scale};
    }
  }
#endif
  return quantize_rows_fp8_aten(rows);
}

Fp8Rows quantize_rows_fp8_aten(const at::Tensor& rows) {
  // rows: [R, C]; the amax is one reduction kernel (the inf-norm) computed in float32.
  auto amax = at::linalg_vector_norm(rows, INFINITY, {-1}, /*keepdim=*/true, at::kFloat);  // [R, 1]
  // Divided by a tensor, not a scalar: ATen's CUDA kernels turn a scalar divisor into a
  // reciprocal multiply, which can differ in the last bit from the fused kernel's division.
  auto scale =
      at::where(amax > 0, at::clamp_min(amax, kFp8MinAmax) / at::full_like(amax, kFp8E4m3Max),
                at::ones_like(amax));  // [R, 1]
  // The rows times the scale's IEEE reciprocal (what the kernels compute: a multiplication an
  // element is far cheaper than a division), promoted to float32 by the float32 factor; the
  // clamp keeps float rounding from producing a value just over 448, which e4m3fn would turn
  // into NaN.
  auto scaled = at::mul(rows, at::reciprocal(scale)).clamp_(-kFp8E4m3Max, kFp8E4m3Max);
  return {scaled.to(at::kFloat8_e4m3fn).contiguous(), scale};
}

at::Tensor dequantize_rows_fp8(const Fp8Rows& rows) {
  return rows.values.to(at::kFloat) * rows.scale;  // [R, C]
}

QuantizedActivation sample_of(const QuantizedActivation& x, int64_t b) {
  TORCH_CHECK(x.shape.size() >= 2 && b >= 0 && b < x.shape[0], "sample_of: sample ", b,
              " of an activation of shape ", x.shape);
  QuantizedActivation s;
  s.shape.assign(x.shape.begin() + 1, x.shape.end());
  s.dtype = x.dtype;
  if (x.full.defined()) s.full = x.full[b];
  if (x.fp8.values.defined()) {
    const int64_t rows = x.fp8.values.size(0) / x.shape[0];  // [B * R, K] -> [R, K]
    s.fp8 = {x.fp8.values.narrow(0, b * rows, rows), x.fp8.scale.narrow(0, b * rows, rows)};
  }
  return s;
}

QuantizedActivation quantized_activation(const at::Tensor& x, bool quantize) {
  QuantizedActivation a;
  a.full = x;
  a.shape = x.sizes().vec();
  a.dtype = x.scalar_type();
  if (quantize) a.fp8 = quantize_rows_fp8(x.reshape({-1, x.size(-1)}));  // [M, K]
  return a;
}

at::Tensor fp8_linear_emulated(const Fp8Rows& x, at::ScalarType out_dtype, const Fp8Rows& weight,
                               const at::Tensor& bias) {
  auto x_dq = dequantize_rows_fp8(x);       // [M, K] float32
  auto w_dq = dequantize_rows_fp8(weight);  // [N, K] float32
  auto out = at::linear(x_dq, w_dq, bias.defined() ? bias.to(at::kFloat) : at::Tensor());
  return out.to(out_dtype);  // [M, N]
}

at::Tensor fp8_linear_emulated(const at::Tensor& x, const Fp8Rows& weight, const at::Tensor& bias) {
  return fp8_linear_emulated(quantize_rows_fp8(x), x.scalar_type(), weight, bias);
}

Fp8GemmChoice fp8_gemm_choice(int64_t m, int64_t n, int64_t k, bool gated_residual) {
  (void)n;
  Fp8GemmChoice choice;
  const char* gemm = std::getenv("DITBENCH_FP8_GEMM");
  if (gemm && *gemm) {
    const std::string name = gemm;
    if (auto kernel = parse_fp8_gemm_kernel(name)) {
      choice.kernel = kernel;
    } else if (name != "scaled_mm") {
      std::string known = "scaled_mm";
#define DITBENCH_FP8_GEMM_LIST(kernel) known += std::string(", ") + #kernel;
      DITBENCH_FP8_GEMM_KERNELS(DITBENCH_FP8_GEMM_LIST)
#undef DITBENCH_FP8_GEMM_LIST
      throw InputError("DITBENCH_FP8_GEMM: unknown FP8 GEMM '" + name + "' (known: " + known + ")");
    }
  } else if (m >= 1024 && (k >= 8192 || gated_residual)) {
    // Measured on an H100 at HunyuanVideo's shapes (bench_linear, bench/RESULTS.md): cuBLASLt's
    // kernel leads where K is 3072, the CUTLASS 128x256 tiles where K is 12,288 or 15,360; with
    // a residual to add, those tiles at K = 3072 too, their epilogue saving the separate pass
    // (the 480p step). Small products stay with cuBLASLt: a persistent kernel of large tiles
    // would idle most SMs.
    choice.kernel = Fp8GemmKernel::coop_128x256_c2x1;
  }
  if (!choice.kernel) return choice;
  // Quantizing first by default: on an H100 the quantizer beside the GEMM streams ~22 GB/s an
  // SM, so the SMs it needs cost the GEMM more than the overlap saves (bench_linear's
  // linear/fp8_dynamic_q<SMs>, bench/RESULTS.md).
  if (const char* sms = std::getenv("DITBENCH_FP8_QUANT_SMS"); sms && *sms) {
    char* end = nullptr;
    const long value = std::strtol(sms, &end, 10);
    if (*end != '\0' || value < 0 || value % 2 != 0 || value > 1024) {
      throw InputError(std::string("DITBENCH_FP8_QUANT_SMS: '") + sms +
                       "' is not an even number of SMs (0: quantize before the GEMM)");
    }
    choice.quant_sms = static_cast<int>(value);
  }
  return choice;
}

#ifdef DITBENCH_HAS_CUDA
namespace {

// Whether weight (values [N, K] e4m3, scale [N] float32) and bias ([N] or undefined) can be a
// CUTLASS kernel's second operand beside an activation of `k` columns on `device`.
bool cutlass_weight_fits(const Fp8Rows& weight, const at::Tensor& bias, int64_t k,
                         const at::Device& device) {
  const auto& b = weight.values;
  if (b.dim() != 2 || b.size(1) != k || b.scalar_type() != at::kFloat8_e4m3fn ||
      !b.is_contiguous() || !weight.scale.is_contiguous() ||
      weight.scale.scalar_type() != at::kFloat || weight.scale.numel() != b.size(0) ||
      (bias.defined() && bias.numel() != b.size(0))) {
    return false;
  }
  for (const auto* t : {&b, &weight.scale, &bias}) {
    if (t->defined() && t->device() != device) return false;
  }
  return true;
}

// `kernel` on the current stream for `ops` (activation, its scales and counters filled in; with
// a residual and gate, the gated-residual kernel, which has `kernel`'s tiles) and weight's
// operands, into `out` ([M, N] bf16 with contiguous rows) or, undefined, a new tensor: the
// output, or undefined when the kernel refuses.
at::Tensor run_cutlass(Fp8GemmOperands ops, const Fp8Rows& weight, const at::Tensor& bias,
                       Fp8GemmKernel kernel, Fp8GemmSchedule schedule,
                       const at::TensorOptions& options, at::Tensor out = {}) {
  at::Tensor bias_bf16 = bias.defined() ? bias.to(at::kBFloat16).contiguous() : at::Tensor();
  if (!out.defined()) {
    out = at::empty({ops.m, weight.values.size(0)}, options.dtype(at::kBFloat16));  // [M, N]
  }
  ops.b = weight.values.data_ptr();
  ops.b_scale = weight.scale.data_ptr<float>();
  ops.bias = bias_bf16.defined() ? bias_bf16.data_ptr() : nullptr;
  ops.d = out.data_ptr();
  ops.n = weight.values.size(0), ops.k = weight.values.size(1);
  at::Tensor workspace;  // freed after the launch: the allocator orders reuse on the stream
  auto allocate = [&](size_t bytes) {
    workspace = at::empty({static_cast<int64_t>(bytes)}, options.dtype(at::kByte));
    return workspace.data_ptr();
  };
  const auto stream = at::cuda::getCurrentCUDAStream();
  const bool launched = ops.residual != nullptr
                            ? kernel == kFp8GemmGatedResidualTiles &&
                                  fp8_gemm_gated_residual_cuda(ops, schedule, allocate, stream)
                            : fp8_gemm_cuda(kernel, ops, schedule, allocate, stream);
  if (!launched) return {};
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// fp8_linear_cutlass's GEMM in bf16, into `out` as run_cutlass; with `residual` and `gate`
// (checked by the caller), the gated-residual kernel.
at::Tensor cutlass_rows(const Fp8Rows& x, const Fp8Rows& weight, const at::Tensor& bias,
                        Fp8GemmKernel kernel, Fp8GemmSchedule schedule, const at::Tensor& out,
                        const at::Tensor& residual = {}, const at::Tensor& gate = {}) {
  const auto& a = x.values;
  if (!a.is_cuda() || a.dim() != 2 || a.scalar_type() != at::kFloat8_e4m3fn || !a.is_contiguous() ||
      !x.scale.is_contiguous() || x.scale.scalar_type() != at::kFloat ||
      x.scale.numel() != a.size(0) || x.scale.device() != a.device() ||
      !cutlass_weight_fits(weight, bias, a.size(1), a.device())) {
    return {};
  }
  c10::cuda::CUDAGuard guard(a.device());
  Fp8GemmOperands ops;
  ops.a = a.data_ptr();
  ops.a_scale = x.scale.data_ptr<float>();
  ops.m = a.size(0);
  if (residual.defined()) ops.residual = residual.data_ptr(), ops.gate = gate.data_ptr();
  return run_cutlass(ops, weight, bias, kernel, schedule, a.options(), out);
}

}  // namespace
#endif

at::Tensor fp8_linear_cutlass(const Fp8Rows& x, at::ScalarType out_dtype, const Fp8Rows& weight,
                              const at::Tensor& bias, Fp8GemmKernel kernel,
                              Fp8GemmSchedule schedule) {
#ifdef DITBENCH_HAS_CUDA
  auto out = cutlass_rows(x, weight, bias, kernel, schedule, {});
  return out.defined() ? out.to(out_dtype) : out;
#else
  (void)x, (void)out_dtype, (void)weight, (void)bias, (void)kernel, (void)schedule;
  return {};
#endif
}

bool fp8_linear_gated_residual_out(const Fp8Rows& x, const Fp8Rows& weight, const at::Tensor& bias,
                                   const at::Tensor& residual, const at::Tensor& gate,
                                   const at::Tensor& out, Fp8GemmSchedule schedule) {
#ifdef DITBENCH_HAS_CUDA
  const auto& a = x.values;
  if (!a.defined() || a.dim() != 2 || weight.values.dim() != 2) return false;
  const int64_t m = a.size(0), n = weight.values.size(0);
  auto bf16_rows = [&](const at::Tensor& t, at::IntArrayRef shape) {
    return t.defined() && t.scalar_type() == at::kBFloat16 && t.device() == a.device() &&
           t.sizes() == shape && t.is_contiguous();
  };
  if (!bf16_rows(residual, {m, n}) || !bf16_rows(gate, {n}) || !bf16_rows(out, {m, n}) ||
      out.data_ptr() == residual.data_ptr()) {
    return false;
  }
  return cutlass_rows(x, weight, bias, kFp8GemmGatedResidualTiles, schedule, out, residual, gate)
      .defined();
#else
  (void)x, (void)weight, (void)bias, (void)residual, (void)gate, (void)out, (void)schedule;
  return false;
#endif
}

at::Tensor fp8_linear_overlapped(const at::Tensor& x, const Fp8Rows& weight, const at::Tensor& bias,
                                 Fp8GemmKernel kernel, Fp8GemmSchedule schedule, int quant_sms) {
#ifdef DITBENCH_HAS_CUDA
  const auto dtype = x.scalar_type();
  if (!x.is_cuda() || x.dim() != 2 || x.size(0) == 0 || x.stride(1) != 1 ||
      (dtype != at::kFloat && dtype != at::kHalf && dtype != at::kBFloat16) || quant_sms < 2 ||
      quant_sms % 2 != 0 || !cutlass_weight_fits(weight, bias, x.size(1), x.device())) {
    return {};
  }
  c10::cuda::CUDAGuard guard(x.device());
  const int sms = at::cuda::getDeviceProperties(x.device().index())->multiProcessorCount;
  if (quant_sms >= sms) return {};
  const int64_t m = x.size(0), k = x.size(1);
  constexpr int kRowsPerFlag = 64;
  auto values = at::empty({m, k}, x.options().dtype(at::kFloat8_e4m3fn));  // [M, K]
  auto scale = at::empty({m, 1}, x.options().dtype(at::kFloat));           // [M, 1]
  auto ready = at::zeros({(m + kRowsPerFlag - 1) / kRowsPerFlag}, x.options().dtype(at::kInt));
  // The quantizer on a side stream of high priority (its blocks go first to SMs that free up),
  // the GEMM on the caller's; both after the counters are zeroed, the caller's stream after both.
  auto main = at::cuda::getCurrentCUDAStream();
  auto side = at::cuda::getStreamFromPool(/*isHighPriority=*/true, x.device().index());
  at::cuda::CUDAEvent forked, quantized;
  forked.record(main);
  forked.block(side);
  const auto input = dtype == at::kFloat  ? Fp8RowsInput::float32
                     : dtype == at::kHalf ? Fp8RowsInput::float16
                                          : Fp8RowsInput::bfloat16;
  if (!quantize_rows_fp8_signalled_cuda(x.data_ptr(), input, m, k, x.stride(0), values.data_ptr(),
                                        scale.data_ptr<float>(), ready.data_ptr<int>(),
                                        kRowsPerFlag, quant_sms, side)) {
    return {};
  }
  quantized.record(side);
  Fp8GemmOperands ops;
  ops.a = values.data_ptr();
  ops.a_scale = scale.data_ptr<float>();
  ops.m = m;
  ops.rows_ready = ready.data_ptr<int>();
  ops.rows_per_flag = kRowsPerFlag;
  schedule.sm_count = sms - quant_sms;
  auto out = run_cutlass(ops, weight, bias, kernel, schedule, x.options());
  quantized.block(main);  // also orders the reuse of x, values, scale and ready after the quantizer
  return out.defined() ? out.to(dtype) : out;
#else
  (void)x, (void)weight, (void)bias, (void)kernel, (void)schedule, (void)quant_sms;
  return {};
#endif
}

namespace {

// fp8_linear_scaled_mm's GEMM for rows already quantized, as `choice` names it.
at::Tensor fp8_linear_chosen(const Fp8Rows& x, at::ScalarType out_dtype, const Fp8Rows& weight,
                             const at::Tensor& bias, const Fp8GemmChoice& choice) {
  if (choice.kernel) {
    auto out = fp8_linear_cutlass(x, out_dtype, weight, bias, *choice.kernel, choice.schedule);
    if (out.defined()) return out;  // else at::_scaled_mm: a product no CUTLASS kernel serves
  }
  return fp8_linear_aten_scaled_mm(x, out_dtype, weight, bias);
}

}  // namespace

at::Tensor fp8_linear_scaled_mm(const Fp8Rows& x, at::ScalarType out_dtype, const Fp8Rows& weight,
                                const at::Tensor& bias) {
  return fp8_linear_chosen(
      x, out_dtype, weight, bias,
      fp8_gemm_choice(x.values.size(0), weight.values.size(0), x.values.size(1)));
}

namespace {

// at::_scaled_mm's operands for x [M, K] times weight^T: x's values row-major and its scale
// [M, 1]; the weight [N, K] row-major is the column-major [K, N] operand _scaled_mm wants, its
// scale [N, 1] viewed as [1, N] contiguous; row-wise scaling takes a bf16 bias. Fast
// accumulation, as FP8 inference recipes use.
struct ScaledMmCall {
  ScaledMmCall(const Fp8Rows& x, const Fp8Rows& weight, const at::Tensor& bias)
      : x(x), weight(weight) {
    if (bias.defined()) bias_bf16 = bias.to(at::kBFloat16);
  }
  at::Tensor run() const {
    return at::_scaled_mm(x.values, weight.values.t(), x.scale, weight.scale.t(), bias_bf16,
                          std::nullopt, at::kBFloat16, /*use_fast_accum=*/true);  // [M, N]
  }
  void run_into(at::Tensor& out) const {  // out: [M, N] bf16
    at::_scaled_mm_out(out, x.values, weight.values.t(), x.scale, weight.scale.t(), bias_bf16,
                       std::nullopt, at::kBFloat16, /*use_fast_accum=*/true);
  }
  const Fp8Rows& x;
  const Fp8Rows& weight;
  std::optional<at::Tensor> bias_bf16;
};

}  // namespace

at::Tensor fp8_linear_aten_scaled_mm(const Fp8Rows& x, at::ScalarType out_dtype,
                                     const Fp8Rows& weight, const at::Tensor& bias) {
  return ScaledMmCall(x, weight, bias).run().to(out_dtype);  // [M, N]
}

void fp8_linear_scaled_mm_out(const Fp8Rows& x, const Fp8Rows& weight, const at::Tensor& bias,
                              const at::Tensor& out) {
  const int64_t m = x.values.size(0), n = weight.values.size(0), k = x.values.size(1);
  TORCH_CHECK(out.dim() == 2 && out.size(0) == m && out.size(1) == n,
              "fp8_linear_scaled_mm_out: ", "an output of shape ", out.sizes(), " for a [", m, ", ",
              k, "] x [", n, ", ", weight.values.size(1), "]^T product");
  if (out.scalar_type() != at::kBFloat16 || out.stride(1) != 1 || out.stride(0) != n ||
      out.device() != x.values.device()) {
    out.copy_(fp8_linear_scaled_mm(x, out.scalar_type(), weight, bias));
    return;
  }
#ifdef DITBENCH_HAS_CUDA
  const auto choice = fp8_gemm_choice(m, n, k);
  if (choice.kernel &&
      cutlass_rows(x, weight, bias, *choice.kernel, choice.schedule, out).defined())
    return;  // else at::_scaled_mm: a product no CUTLASS kernel serves
#endif
  auto result = out;
  ScaledMmCall(x, weight, bias).run_into(result);
}

at::Tensor fp8_linear_scaled_mm(const at::Tensor& x, const Fp8Rows& weight,
                                const at::Tensor& bias) {
  if (x.dim() != 2)
    return fp8_linear_scaled_mm(quantize_rows_fp8(x), x.scalar_type(), weight, bias);
  const auto choice = fp8_gemm_choice(x.size(0), weight.values.size(0), x.size(1));  // once a call
  if (x.is_cuda() && choice.kernel && choice.quant_sms > 0) {
    auto out =
        fp8_linear_overlapped(x, weight, bias, *choice.kernel, choice.schedule, choice.quant_sms);
    if (out.defined()) return out;  // else quantized first
  }
  return fp8_linear_chosen(quantize_rows_fp8(x), x.scalar_type(), weight, bias, choice);
}

QuantCheck check_quant_mode(QuantMode mode, const at::Device& device) {
  if (mode != QuantMode::fp8_dynamic) return {};  // weight-only dequantizes with plain ops
  if (device.is_cpu()) return {};                 // the emulation
  if (!device.is_cuda()) {
    return {false, "fp8_dynamic runs on CUDA (at::_scaled_mm) or the CPU (emulation), not " +
                       device.str()};
  }
#ifdef DITBENCH_HAS_CUDA
  if (!at::hasCUDA()) return {false, "fp8_dynamic: no CUDA device"};
  const auto* props = at::cuda::getDeviceProperties(
      device.has_index() ? device.index() : at::cuda::current_device());
  if (props->major * 10 + props->minor < 89) {
    return {false, "fp8_dynamic needs compute capability 8.9+ for at::_scaled_mm, " +
                       std::string(props->name) + " is " + std::to_string(props->major) + "." +
                       std::to_string(props->minor)};
  }
  return {};
#else
  return {false, "fp8_dynamic on CUDA needs a CUDA build of ditbench"};
#endif
}

namespace {

std::vector<std::regex> compile_patterns(const std::vector<std::string>& patterns,
                                         const char* which) {
  std::vector<std::regex> compiled;
  for (const auto& pattern : patterns) {
    try {
      compiled.emplace_back(pattern);
    } catch (const std::regex_error& e) {
      throw InputError(std::string("quantization ") + which + " pattern '" + pattern +
                       "' is not a valid regular expression: " + e.what());
    }
  }
  return compiled;
}

bool any_match(const std::vector<std::regex>& patterns, const std::string& name) {
  for (const auto& pattern : patterns) {
    if (std::regex_search(name, pattern)) return true;
  }
  return false;
}

}  // namespace

std::vector<std::string> apply_quantization(torch::nn::Module& root, QuantMode mode,
                                            const std::vector<std::string>& include_patterns,
                                            const std::vector<std::string>& exclude_patterns) {
  const auto include = compile_patterns(include_patterns, "include");
  const auto exclude = compile_patterns(exclude_patterns, "exclude");
  std::vector<std::string> quantized;
  if (mode == QuantMode::none) return quantized;
  for (const auto& item : root.named_modules()) {
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (!linear || linear->quant_mode() != QuantMode::none) continue;  // earlier passes keep theirs
    const auto& name = item.key();
    if (!include.empty() && !any_match(include, name)) continue;
    if (any_match(exclude, name)) continue;
    linear->quantize(mode);
    quantized.push_back(name);
  }
  return quantized;
}

}  // namespace ditbench
