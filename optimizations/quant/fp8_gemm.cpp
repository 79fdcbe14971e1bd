#include "optimizations/quant/fp8_gemm.h"

#include <atomic>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "models/common/error.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <cublasLt.h>
#endif

namespace ditbench {
namespace {

// The default: DITBENCH_FP8_GEMM=scaled_mm or =cublaslt where set, else cuBLASLt in CUDA builds.
Fp8GemmBackend initial_backend() {
  const char* env = std::getenv("DITBENCH_FP8_GEMM");
  const std::string name = env ? env : "";
  if (name == "scaled_mm") return Fp8GemmBackend::scaled_mm;
  if (name == "cublaslt") return Fp8GemmBackend::cublaslt_tuned;
  if (!name.empty()) {
    throw InputError("DITBENCH_FP8_GEMM='" + name + "': known values are scaled_mm and cublaslt");
  }
#ifdef DITBENCH_HAS_CUDA
  return Fp8GemmBackend::cublaslt_tuned;
#else
  return Fp8GemmBackend::scaled_mm;
#endif
}

std::atomic<Fp8GemmBackend>& backend_flag() {
  static std::atomic<Fp8GemmBackend> flag{initial_backend()};
  return flag;
}

std::mutex g_tunings_mutex;
std::vector<Fp8GemmTuning> g_tunings;  // guarded by g_tunings_mutex

}  // namespace

void set_fp8_gemm_backend(Fp8GemmBackend backend) { backend_flag() = backend; }
Fp8GemmBackend fp8_gemm_backend() { return backend_flag(); }

std::vector<Fp8GemmTuning> fp8_gemm_tunings() {
  std::lock_guard<std::mutex> lock(g_tunings_mutex);
  return g_tunings;
}

#ifndef DITBENCH_HAS_CUDA

at::Tensor fp8_gemm_cublaslt(const Fp8Rows&, const Fp8Rows&, const at::Tensor&) {
  throw Unsupported("the cuBLASLt FP8 GEMM needs a CUDA build of ditbench");
}

#else

namespace {

void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("cuBLASLt ") + what + ": " +
                             cublasLtGetStatusString(status));
  }
}

template <typename T>
void set(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value) {
  check(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof(value)),
        "cublasLtMatmulDescSetAttribute");
}

// The largest power of two (up to 256) dividing a pointer: the alignment cuBLASLt may assume.
uint32_t alignment_of(const void* p) {
  const auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 1;
  while (a < 256 && address % (2 * a) == 0) a *= 2;
  return a;
}

// One problem as cuBLASLt sees it. cuBLASLt is column-major: the row-major [M, N] output is the
// column-major N x M matrix D = op(A) op(B) with A the weight (row-major [N, K] = column-major
// K x N, transposed) and B the activation (row-major [M, K] = column-major K x M). The outer-vector
// scales then are the weight's per-channel scale (length N, A's) and the activation's per-row
// scale (length M, B's); the bias runs along D's rows, i.e. the output channels.
struct Problem {
  int device = 0;
  int64_t m = 0, n = 0, k = 0, ldb = 0;
  bool bias = false;
  uint32_t align_a = 0, align_b = 0, align_d = 0, align_bias = 0;

  auto key() const {
    return std::tie(device, m, n, k, ldb, bias, align_a, align_b, align_d, align_bias);
  }
  bool operator<(const Problem& o) const { return key() < o.key(); }
};

struct Call {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  const void *a_data, *b_data;
  void* d_data;
  Problem problem;

  Call(const Fp8Rows& x, const Fp8Rows& weight, const at::Tensor& bias, at::Tensor& out) {
    const int64_t m = x.values.size(0), k = x.values.size(1), n = weight.values.size(0);
    problem.device = x.values.get_device();
    problem.m = m, problem.n = n, problem.k = k, problem.ldb = x.values.stride(0);
    problem.bias = bias.defined();
    a_data = weight.values.data_ptr(), b_data = x.values.data_ptr(), d_data = out.data_ptr();
    problem.align_a = alignment_of(a_data), problem.align_b = alignment_of(b_data);
    problem.align_d = alignment_of(d_data);
    problem.align_bias = bias.defined() ? alignment_of(bias.data_ptr()) : 0;

    check(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
          "cublasLtMatmulDescCreate");
    set(op, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
    set(op, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
    set(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, weight.scale.data_ptr());
    set(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, x.scale.data_ptr());
    const int32_t outer = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    set(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, outer);
    set(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, outer);
    set(op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, int8_t{1});  // as FP8 inference recipes run it
    if (bias.defined()) {
      set(op, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS);
      set(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias.data_ptr());
      set(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t{CUDA_R_16BF});
    }
    check(cublasLtMatrixLayoutCreate(&a, CUDA_R_8F_E4M3, k, n, weight.values.stride(0)),
          "cublasLtMatrixLayoutCreate");
    check(cublasLtMatrixLayoutCreate(&b, CUDA_R_8F_E4M3, k, m, problem.ldb),
          "cublasLtMatrixLayoutCreate");
    check(cublasLtMatrixLayoutCreate(&d, CUDA_R_16BF, n, m, n), "cublasLtMatrixLayoutCreate");
  }
  ~Call() {
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (op) cublasLtMatmulDescDestroy(op);
  }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

  // The heuristic's candidates, best first, that fit the workspace and the pointers' alignment.
  std::vector<cublasLtMatmulAlgo_t> candidates(int wanted) const {
    cublasLtMatmulPreference_t pref = nullptr;
    check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    std::unique_ptr<cublasLtMatmulPreferenceOpaque_t,
                    cublasStatus_t (*)(cublasLtMatmulPreference_t)>
        owned(pref, cublasLtMatmulPreferenceDestroy);
    const uint64_t workspace = at::cuda::getCUDABlasLtWorkspaceSize();
    const std::pair<cublasLtMatmulPreferenceAttributes_t, uint64_t> prefs[] = {
        {CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, workspace}};
    for (const auto& [attr, value] : prefs) {
      check(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)),
            "cublasLtMatmulPreferenceSetAttribute");
    }
    const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, problem.align_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, problem.align_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, problem.align_d},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, problem.align_d}};
    for (const auto& [attr, value] : aligns) {
      check(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)),
            "cublasLtMatmulPreferenceSetAttribute");
    }
    std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<size_t>(wanted));
    int found = 0;
    check(cublasLtMatmulAlgoGetHeuristic(at::cuda::getCurrentCUDABlasLtHandle(), op, a, b, d, d,
                                         pref, wanted, results.data(), &found),
          "cublasLtMatmulAlgoGetHeuristic");
    std::vector<cublasLtMatmulAlgo_t> algos;
    for (int i = 0; i < found; ++i) {
      if (results[static_cast<size_t>(i)].state == CUBLAS_STATUS_SUCCESS) {
        algos.push_back(results[static_cast<size_t>(i)].algo);
      }
    }
    if (algos.empty()) throw std::runtime_error("cuBLASLt offers no FP8 GEMM algorithm");
    return algos;
  }

  cublasStatus_t run(const cublasLtMatmulAlgo_t& algo, cudaStream_t stream) const {
    const float alpha = 1.f, beta = 0.f;
    return cublasLtMatmul(at::cuda::getCurrentCUDABlasLtHandle(), op, &alpha, a_data, a, b_data, b,
                          &beta, d_data, d, d_data, d, &algo, at::cuda::getCUDABlasLtWorkspace(),
                          at::cuda::getCUDABlasLtWorkspaceSize(), stream);
  }
};

std::mutex g_plans_mutex;
std::map<Problem, cublasLtMatmulAlgo_t> g_plans;  // guarded by g_plans_mutex

// Times each candidate (one untimed run, then three timed) on the call's own operands and returns
// the fastest. No lock is held: the synchronization waits for this stream's earlier work, which
// may be a collective that another rank thread has yet to join.
cublasLtMatmulAlgo_t tune(const Call& call, const std::vector<cublasLtMatmulAlgo_t>& candidates,
                          cudaStream_t stream) {
  constexpr int kTimed = 3;
  Fp8GemmTuning tuning;
  tuning.m = call.problem.m, tuning.n = call.problem.n, tuning.k = call.problem.k;
  tuning.bias = call.problem.bias;
  double best = std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < candidates.size(); ++i) {
    double ms = std::numeric_limits<double>::infinity();
    if (call.run(candidates[i], stream) == CUBLAS_STATUS_SUCCESS) {
      at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
      const auto current = at::cuda::getCurrentCUDAStream();
      start.record(current);
      bool ok = true;
      for (int r = 0; r < kTimed && ok; ++r)
        ok = call.run(candidates[i], stream) == CUBLAS_STATUS_SUCCESS;
      stop.record(current);
      stop.synchronize();
      if (ok) ms = start.elapsed_time(stop) / kTimed;
    }
    tuning.candidate_ms.push_back(ms);
    if (ms < best) best = ms, tuning.chosen = static_cast<int>(i);
  }
  if (!(best < std::numeric_limits<double>::infinity())) {
    throw std::runtime_error("cuBLASLt: none of the FP8 GEMM algorithms ran");
  }
  {
    std::lock_guard<std::mutex> lock(g_tunings_mutex);
    g_tunings.push_back(tuning);
  }
  return candidates[static_cast<size_t>(tuning.chosen)];
}

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

}  // namespace

at::Tensor fp8_gemm_cublaslt(const Fp8Rows& rows, const Fp8Rows& weight, const at::Tensor& bias) {
  // Rows whose stride cuBLASLt cannot take are made dense first.
  const bool strided_ok =
      rows.values.dim() == 2 && rows.values.stride(1) == 1 && rows.values.stride(0) % 16 == 0;
  const Fp8Rows x{strided_ok ? rows.values : rows.values.contiguous(), rows.scale};
  TORCH_CHECK(x.values.is_cuda() && x.values.dim() == 2 && x.values.size(1) % 16 == 0 &&
                  weight.values.is_contiguous() && weight.values.size(0) % 16 == 0 &&
                  weight.values.size(1) == x.values.size(1),
              "FP8 GEMM: e4m3 rows ", x.values.sizes(), " against a weight ",
              weight.values.sizes());
  c10::cuda::CUDAGuard guard(x.values.device());
  auto out = at::empty({x.values.size(0), weight.values.size(0)},
                       x.values.options().dtype(at::kBFloat16));  // [M, N]
  if (out.numel() == 0) return out;
  const at::Tensor bias_bf16 =
      bias.defined() ? bias.to(at::kBFloat16).contiguous() : at::Tensor();  // [N]
  const auto x_scale = x.scale.contiguous(), w_scale = weight.scale.contiguous();
  const Call call({x.values, x_scale}, {weight.values, w_scale}, bias_bf16, out);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  std::optional<cublasLtMatmulAlgo_t> algo;
  {
    std::lock_guard<std::mutex> lock(g_plans_mutex);
    auto it = g_plans.find(call.problem);
    if (it != g_plans.end()) algo = it->second;
  }
  if (!algo) {
    const auto candidates = call.candidates(16);
    if (capturing(stream)) {
      algo = candidates.front();
    } else {
      algo = tune(call, candidates, stream);
      std::lock_guard<std::mutex> lock(g_plans_mutex);
      g_plans.emplace(call.problem, *algo);
    }
  }
  check(call.run(*algo, stream), "cublasLtMatmul");
  return out;
}

#endif

}  // namespace ditbench
