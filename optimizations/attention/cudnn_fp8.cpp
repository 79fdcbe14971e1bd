#include "optimizations/attention/cudnn_fp8.h"

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "models/common/error.h"
#include "optimizations/kernels/fused.h"
#include "optimizations/quant/quant.h"

#ifdef DITBENCH_HAS_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "optimizations/kernels/fp8_tensor_cuda.h"
#endif

#if defined(DITBENCH_HAS_CUDA) && defined(DITBENCH_HAS_CUDNN_FRONTEND)
#include <ATen/cudnn/Handle.h>
#include <cudnn_frontend.h>
#define DITBENCH_CUDNN_FP8 1
#endif

namespace ditbench {
namespace {

#ifdef DITBENCH_HAS_CUDA
Bhsd bhsd_of(const at::Tensor& t) {
  return {t.data_ptr(), t.size(0),   t.size(1),   t.size(2),
          t.size(3),    t.stride(0), t.stride(1), t.stride(2)};
}

bool half_or_bf16(const at::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf;
}

// The two kernels of fp8_tensor.cu (amax, then scale and round) where they serve: a CUDA
// [B, H, S, D] bf16/fp16 operand with unit stride over D. False: nothing usable was written.
bool quantize_on_gpu(const at::Tensor& x, E4m3PerTensor& q) {
  if (!fused_kernels_enabled() || !x.is_cuda() || x.dim() != 4 || !half_or_bf16(x) ||
      x.stride(3) != 1) {
    return false;
  }
  c10::cuda::CUDAGuard guard(x.device());
  const auto stream = at::cuda::getCurrentCUDAStream(x.device().index()).stream();
  const auto f = x.options().dtype(at::kFloat);
  auto amax = at::zeros({}, f);
  q.scale = at::empty({}, f);
  q.descale = at::empty({}, f);
  const bool half = x.scalar_type() == at::kHalf;
  if (!e4m3_amax_cuda(bhsd_of(x), half, amax.data_ptr<float>(), stream) ||
      !e4m3_quantize_cuda(bhsd_of(x), half, amax.data_ptr<float>(), bhsd_of(q.data),
                          q.scale.data_ptr<float>(), q.descale.data_ptr<float>(), stream)) {
    return false;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return true;
}
#endif

}  // namespace

E4m3PerTensor quantize_e4m3_per_tensor(const at::Tensor& x) {
  E4m3PerTensor q;
  q.data = dense_like(x, at::kFloat8_e4m3fn);
#ifdef DITBENCH_HAS_CUDA
  if (quantize_on_gpu(x, q)) return q;
#endif
  // One reduction kernel (the inf-norm) in float32; the amax of a bf16/fp16 tensor is exact.
  auto amax = at::linalg_vector_norm(x, INFINITY, std::nullopt, false, at::kFloat);  // []
  q.scale = at::where(amax > 0, at::full_like(amax, kFp8E4m3Max) / at::clamp_min(amax, kFp8MinAmax),
                      at::ones_like(amax));  // []
  q.descale = at::reciprocal(q.scale);       // []
  // The product in float32, rounded once to e4m3. No clamp: |x| * (448 / amax) exceeds 448 by at
  // most float rounding, which e4m3 rounds back to 448.
  q.data.copy_(x.to(at::kFloat) * q.scale);
  return q;
}

at::Tensor dequantize_e4m3(const E4m3PerTensor& x, at::ScalarType dtype) {
  return at::mul(x.data.to(dtype), x.descale);
}

at::Tensor dequantize_e4m3_output(const at::Tensor& values, const at::Tensor& scale,
                                  at::ScalarType dtype) {
  auto out = at::empty_strided(values.sizes(), values.strides(), values.options().dtype(dtype));
#ifdef DITBENCH_HAS_CUDA
  if (fused_kernels_enabled() && values.is_cuda() && values.is_non_overlapping_and_dense() &&
      half_or_bf16(out) && scale.is_cuda()) {
    c10::cuda::CUDAGuard guard(values.device());
    if (e4m3_dequantize_cuda(values.data_ptr(), values.numel(), scale.data_ptr<float>(),
                             dtype == at::kHalf, out.data_ptr(),
                             at::cuda::getCurrentCUDAStream(values.device().index()).stream())) {
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return out;
    }
  }
#endif
  out.copy_(values.to(at::kFloat) * at::reciprocal(scale));
  return out;
}

namespace {

// A function-local static: the registry may be built during another file's static
// initialization (benchmarks register per backend name), before a namespace-scope string would be.
const std::string& backend_name() {
  static const std::string name = "cudnn_fp8";
  return name;
}

BackendCheck refuse(std::string reason) { return {false, std::move(reason)}; }

#ifdef DITBENCH_CUDNN_FP8
namespace fe = cudnn_frontend;
using TensorAttr = std::shared_ptr<fe::graph::Tensor_attributes>;

// The e4m3 output's scale leaves this much headroom under 448: |o| <= amax(v) holds for exact
// probabilities, and e4m3-rounded ones can sum to slightly more than 1 per row. Headroom costs
// no precision (e4m3's relative spacing is the same at every normal exponent).
constexpr double kOutputHeadroom = 2.0;

std::string cudnn_version_string() {
  const size_t v = cudnnGetVersion();
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
         std::to_string(v % 100);
}

// bf16/fp16 output straight from the FP8 kernel needs Blackwell and cuDNN 9.13 (the frontend's
// support surface); elsewhere the output is e4m3 and dequantized here.
bool fp8_output_on(const at::Device& device) {
  const auto* props = at::cuda::getDeviceProperties(device.index());
  return !(props->major >= 10 && cudnnGetVersion() >= 91300);
}

// Everything a built graph depends on: B, H, Sq, Skv, D, the e4m3 strides of q, k, v, the
// output's strides and dtype, and whether the log-sum-exp is produced.
struct PlanShape {
  int64_t batch, heads, queries, keys, dim;
  std::vector<int64_t> q_stride, k_stride, v_stride, o_stride;
  at::ScalarType out_dtype;  // the caller's bf16/fp16
  bool fp8_output, need_lse;

  std::vector<int64_t> key(int device) const {
    std::vector<int64_t> k{
        device,     batch,   heads, queries, keys, dim, static_cast<int64_t>(out_dtype),
        fp8_output, need_lse};
    for (const auto* s : {&q_stride, &k_stride, &v_stride, &o_stride})
      k.insert(k.end(), s->begin(), s->end());
    return k;
  }
};

struct Fp8Plan {
  std::shared_ptr<fe::graph::Graph> graph;
  TensorAttr q, k, v, descale_q, descale_k, descale_v, descale_s, scale_s, scale_o;
  TensorAttr o, stats, amax_s, amax_o;
  int64_t workspace_bytes = 0;
};

fe::DataType_t fe_dtype(at::ScalarType dtype) {
  return dtype == at::kHalf ? fe::DataType_t::HALF : fe::DataType_t::BFLOAT16;
}

// Describes the graph of `shape` and takes it through the frontend's steps up to the engine
// check (and the plan build when `build`). Returns "" or what the frontend said.
std::string make_plan(Fp8Plan& plan, const PlanShape& s, cudnnHandle_t handle, bool build) {
  auto graph = std::make_shared<fe::graph::Graph>();
  graph->set_io_data_type(fe::DataType_t::FP8_E4M3)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  auto e4m3 = [&](const char* name, int64_t seq, const std::vector<int64_t>& stride) {
    return graph->tensor(fe::graph::Tensor_attributes()
                             .set_name(name)
                             .set_dim({s.batch, s.heads, seq, s.dim})
                             .set_stride(stride)
                             .set_data_type(fe::DataType_t::FP8_E4M3));
  };
  plan.q = e4m3("q", s.queries, s.q_stride);
  plan.k = e4m3("k", s.keys, s.k_stride);
  plan.v = e4m3("v", s.keys, s.v_stride);
  auto scalar = [&](const char* name) {
    return graph->tensor(fe::graph::Tensor_attributes()
                             .set_name(name)
                             .set_dim({1, 1, 1, 1})
                             .set_stride({1, 1, 1, 1})
                             .set_data_type(fe::DataType_t::FLOAT));
  };
  plan.descale_q = scalar("descale_q");
  plan.descale_k = scalar("descale_k");
  plan.descale_v = scalar("descale_v");
  plan.descale_s = scalar("descale_s");
  plan.scale_s = scalar("scale_s");
  plan.scale_o = scalar("scale_o");
  auto options = fe::graph::SDPA_fp8_attributes()
                     .set_name("sdpa_fp8")
                     .set_generate_stats(s.need_lse)
                     .set_attn_scale(static_cast<float>(1.0 / std::sqrt(double(s.dim))));
  try {
    // Picks the implementation for this device while describing the node; throws when none fits.
    auto outputs =
        graph->sdpa_fp8(plan.q, plan.k, plan.v, plan.descale_q, plan.descale_k, plan.descale_v,
                        plan.descale_s, plan.scale_s, plan.scale_o, options);
    plan.o = outputs[0];
    plan.stats = outputs[1];
    plan.amax_s = outputs[2];
    plan.amax_o = outputs[3];
  } catch (const std::exception& e) {
    return std::string("describing sdpa_fp8: ") + e.what();
  }
  // O: [B, H, Sq, D] in q's layout; Stats: [B, H, Sq, 1] contiguous float32.
  const int64_t h = s.heads, sq = s.queries, d = s.dim;
  plan.o->set_output(true)
      .set_dim({s.batch, h, sq, d})
      .set_stride(s.o_stride)
      .set_data_type(s.fp8_output ? fe::DataType_t::FP8_E4M3 : fe_dtype(s.out_dtype));
  for (const auto& amax : {plan.amax_s, plan.amax_o}) {
    amax->set_output(true)
        .set_dim({1, 1, 1, 1})
        .set_stride({1, 1, 1, 1})
        .set_data_type(fe::DataType_t::FLOAT);
  }
  if (s.need_lse) {
    plan.stats->set_output(true)
        .set_dim({s.batch, h, sq, 1})
        .set_stride({h * sq, sq, 1, 1})
        .set_data_type(fe::DataType_t::FLOAT);
  }
  auto step = [](fe::error_t status, const char* what) -> std::string {
    if (status.is_good()) return "";
    return std::string(what) + ": " + status.get_message();
  };
  std::string why;
  if (!(why = step(graph->validate(), "validate")).empty()) return why;
  if (!(why = step(graph->build_operation_graph(handle), "build_operation_graph")).empty())
    return why;
  if (!(why = step(graph->create_execution_plans({fe::HeurMode_t::A}), "create_execution_plans"))
           .empty())
    return why;
  if (!(why = step(graph->check_support(handle), "check_support")).empty()) return why;
  if (build) {
    if (!(why = step(graph->build_plans(fe::BuildPlanPolicy_t::HEURISTICS_CHOICE), "build_plans"))
             .empty())
      return why;
    if (!(why = step(graph->get_workspace_size(plan.workspace_bytes), "get_workspace_size"))
             .empty())
      return why;
  }
  plan.graph = std::move(graph);
  return "";
}

// This thread's cuDNN handle for the current device, on the current stream.
cudnnHandle_t current_handle() {
  cudnnHandle_t handle = at::native::getCudnnHandle();
  const auto status = cudnnSetStream(handle, at::cuda::getCurrentCUDAStream());
  if (status != CUDNN_STATUS_SUCCESS) {
    throw std::runtime_error(std::string("cudnn_fp8: cudnnSetStream: ") +
                             cudnnGetErrorString(status));
  }
  return handle;
}

// Built graphs by shape, per thread as ATen keeps its cuDNN attention graphs: an execution plan
// is not guaranteed to be safe to run from two threads at once, and each rank thread has its
// own handle. Bounded: a workload with ever-new shapes rebuilds instead of growing.
const Fp8Plan& cached_plan(const PlanShape& shape, int device) {
  thread_local std::map<std::vector<int64_t>, std::unique_ptr<Fp8Plan>> plans;
  auto key = shape.key(device);
  auto it = plans.find(key);
  if (it != plans.end()) return *it->second;
  if (plans.size() >= 64) plans.clear();
  auto plan = std::make_unique<Fp8Plan>();
  const auto why = make_plan(*plan, shape, current_handle(), /*build=*/true);
  if (!why.empty()) {
    throw Unsupported("cudnn_fp8: cuDNN " + cudnn_version_string() +
                      " cannot run FP8 attention of q [" + std::to_string(shape.batch) + ", " +
                      std::to_string(shape.heads) + ", " + std::to_string(shape.queries) + ", " +
                      std::to_string(shape.dim) + "], " + std::to_string(shape.keys) +
                      " keys: " + why);
  }
  return *plans.emplace(std::move(key), std::move(plan)).first->second;
}

// The softmax probabilities' scales (P in [0, 1] -> e4m3 [0, 448]) and a one, per device.
struct Constants {
  at::Tensor scale_s, descale_s, one;  // [1] float32
};
const Constants& constants(const at::Device& device) {
  thread_local std::map<int, Constants> by_device;
  auto it = by_device.find(device.index());
  if (it == by_device.end()) {
    auto f = at::TensorOptions().device(device).dtype(at::kFloat);
    it = by_device
             .emplace(device.index(),
                      Constants{at::full({1}, kFp8E4m3Max, f), at::full({1}, 1.0 / kFp8E4m3Max, f),
                                at::ones({1}, f)})
             .first;
  }
  return it->second;
}

std::vector<int64_t> strides_of(const at::Tensor& t) { return t.strides().vec(); }

// q: [B, H, Sq, D], k/v: [B, H, Sk, D] bf16/fp16 on a CUDA device, no mask.
LocalAttentionResult fp8_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   bool need_lse) {
  c10::cuda::CUDAGuard guard(q.device());
  const auto q8 = quantize_e4m3_per_tensor(q);
  const auto k8 = quantize_e4m3_per_tensor(k);
  const auto v8 = quantize_e4m3_per_tensor(v);
  const int device = q.device().index();
  const bool fp8_output = fp8_output_on(q.device());
  const int64_t batch = q.size(0), heads = q.size(1), queries = q.size(2), dim = q.size(3);
  // The output in q's layout: for [B, S, H, D] storage the caller's [B, S, H * D] is a view.
  auto out = dense_like(q, fp8_output ? at::kFloat8_e4m3fn : q.scalar_type());
  const PlanShape shape{batch,
                        heads,
                        queries,
                        k.size(2),
                        dim,
                        strides_of(q8.data),
                        strides_of(k8.data),
                        strides_of(v8.data),
                        strides_of(out),
                        q.scalar_type(),
                        fp8_output,
                        need_lse};
  const Fp8Plan& plan = cached_plan(shape, device);
  const auto& c = constants(q.device());

  auto f = q.options().dtype(at::kFloat);
  // scale_o = 448 / (headroom * amax(v)) = v's scale / headroom; o = o_e4m3 / scale_o.
  at::Tensor scale_o = fp8_output ? v8.scale / kOutputHeadroom : c.one;
  auto amax_s = at::empty({1}, f), amax_o = at::empty({1}, f);
  at::Tensor stats;
  if (need_lse) stats = at::empty({batch, heads, queries, 1}, f);  // [B, H, Sq, 1]
  at::Tensor workspace;
  if (plan.workspace_bytes > 0) {
    workspace = at::empty({plan.workspace_bytes}, q.options().dtype(at::kByte));
  }
  std::unordered_map<TensorAttr, void*> pack = {{plan.q, q8.data.data_ptr()},
                                                {plan.k, k8.data.data_ptr()},
                                                {plan.v, v8.data.data_ptr()},
                                                {plan.descale_q, q8.descale.data_ptr()},
                                                {plan.descale_k, k8.descale.data_ptr()},
                                                {plan.descale_v, v8.descale.data_ptr()},
                                                {plan.descale_s, c.descale_s.data_ptr()},
                                                {plan.scale_s, c.scale_s.data_ptr()},
                                                {plan.scale_o, scale_o.data_ptr()},
                                                {plan.o, out.data_ptr()},
                                                {plan.amax_s, amax_s.data_ptr()},
                                                {plan.amax_o, amax_o.data_ptr()}};
  if (need_lse) pack[plan.stats] = stats.data_ptr();
  auto status = plan.graph->execute(current_handle(), pack,
                                    workspace.defined() ? workspace.data_ptr() : nullptr);
  if (status.is_bad()) {
    throw std::runtime_error("cudnn_fp8: executing sdpa_fp8: " + status.get_message());
  }
  LocalAttentionResult result;
  // An e4m3 output comes back to the caller's dtype: o = o_e4m3 * (headroom / scale_v).
  result.out = fp8_output ? dequantize_e4m3_output(out, scale_o, q.scalar_type()) : out;
  if (need_lse) result.lse = stats.squeeze(-1);  // [B, H, Sq], natural log, as ATen's
  return result;
}

// Whether cuDNN builds the FP8 graph for this device and head dim, on a small probe.
BackendCheck probe(const at::Device& device, at::ScalarType dtype, int64_t head_dim) {
  const int index = device.has_index() ? device.index() : at::cuda::current_device();
  const auto* props = at::cuda::getDeviceProperties(index);
  if (props->major < 9) {
    return refuse(backend_name() + " needs compute capability 9.0 or newer (FP8 tensor cores); " +
                  props->name + " is " + std::to_string(props->major) + "." +
                  std::to_string(props->minor));
  }
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
  const int64_t tokens = 128, d = head_dim;
  const std::vector<int64_t> contiguous{tokens * d, tokens * d, d, 1};
  const PlanShape shape{1,
                        1,
                        tokens,
                        tokens,
                        d,
                        contiguous,
                        contiguous,
                        contiguous,
                        contiguous,
                        dtype,
                        fp8_output_on(at::Device(at::kCUDA, index)),
                        false};
  Fp8Plan plan;
  const auto why = make_plan(plan, shape, current_handle(), /*build=*/false);
  if (why.empty()) return {};
  return refuse(backend_name() + ": cuDNN " + cudnn_version_string() +
                " has no FP8 attention for head dim " + std::to_string(head_dim) + " on " +
                props->name + ": " + why);
}
#endif  // DITBENCH_CUDNN_FP8

class CudnnFp8Backend : public AttentionBackend {
 public:
  const std::string& name() const override { return backend_name(); }
  BackendCheck can_serve(const at::Device& device, at::ScalarType dtype, int64_t head_dim,
                         bool has_mask) const override {
    // A key mask is served exactly by running on the selected keys (attend_by_key_selection).
    (void)has_mask;
#ifndef DITBENCH_HAS_CUDA
    (void)device, (void)dtype, (void)head_dim;
    return refuse(backend_name() + " needs a CUDA build of ditbench");
#else
    if (!device.is_cuda())
      return refuse(backend_name() + " needs a CUDA device, not " + device.str());
    if (!cudnn_frontend_built()) {
      return refuse(backend_name() +
                    ": built without the cuDNN frontend (run scripts/fetch-cudnn-frontend.sh and "
                    "configure again)");
    }
    if (dtype != at::kHalf && dtype != at::kBFloat16) {
      return refuse(backend_name() + " takes fp16/bf16, not " + attention_dtype_name(dtype));
    }
    if (head_dim % 16 != 0 || head_dim > 256) {
      return refuse(backend_name() + ": head dim " + std::to_string(head_dim) +
                    " is not a multiple of 16 up to 256 (cuDNN's FP8 attention)");
    }
#ifdef DITBENCH_CUDNN_FP8
    return probe(device, dtype, head_dim);
#else
    return {};
#endif
#endif
  }
  LocalAttentionResult run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const at::Tensor& key_mask, bool need_lse) const override {
#ifdef DITBENCH_CUDNN_FP8
    note_attention_served(backend_name(), "cudnn_frontend::sdpa_fp8");
    return attend_by_key_selection(q, k, v, key_mask, need_lse, &fp8_attention);
#else
    (void)q, (void)k, (void)v, (void)key_mask, (void)need_lse;
    throw Unsupported(backend_name() + ": built without the cuDNN frontend");
#endif
  }
};

}  // namespace

bool cudnn_frontend_built() {
#ifdef DITBENCH_CUDNN_FP8
  return true;
#else
  return false;
#endif
}

std::unique_ptr<AttentionBackend> make_cudnn_fp8_backend() {
  return std::make_unique<CudnnFp8Backend>();
}

}  // namespace ditbench
