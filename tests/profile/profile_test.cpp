// The kernel profile (harness/profile.h): classification of real kernel names as CUPTI reports
// them (mangled or not), the per-stage breakdown with launch gaps on hand-built activities, the
// record's JSON, the Chrome trace's kernel tracks, the Markdown table, and the runner's "profile"
// switch on the CPU (a note, no extra generation). The CUPTI collector itself runs on the GPU.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <utility>
#include <vector>

#include "harness/profile.h"
#include "harness/record.h"
#include "harness/runner.h"
#include "harness/suite.h"
#include "reports/markdown.h"
#include "reports/trace.h"
#include "test_util.h"

namespace ditbench {
namespace {

using C = KernelCategory;

TEST(KernelProfile, ClassifiesRealKernelNames) {
  const std::vector<std::pair<const char*, C>> cases = {
      // cuBLAS / cuBLASLt / CUTLASS GEMMs, FP8, cuDNN implicit-GEMM convolutions
      {"sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_cluster1x2x1_"
       "warpgroupsize2x1x1_execute_segment_k_off_kernel__5x_cublas",
       C::kGemm},
      {"sm90_xmma_gemm_e4m3bf16_e4m3f32_f32_tn_n_tilesize128x128x128_warpgroupsize1x1x1_"
       "execute_segment_k_off_kernel__5x_cublas",
       C::kGemm},
      {"nvjet_tst_192x192_64x4_2x1_v_bz_coopA_TNT", C::kGemm},
      {"void cutlass::Kernel2<cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64_64x4_tn_align8>"
       "(cutlass_80_tensorop_bf16_s16816gemm_relu_bf16_64x64_64x4_tn_align8::Params)",
       C::kGemm},
      {"void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, "
       "__nv_bfloat16, true, false, false>(cublasLt::cublasSplitKParams<float>, float const*)",
       C::kGemm},
      {"sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64_"
       "warpgroupsize1x1x1_g1_execute_kernel__5x_cudnn",
       C::kGemm},
      // attention: cuDNN SDPA, FlashAttention, memory-efficient (CUTLASS-based) attention
      {"cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3_64x128x128_4x1x1_"
       "kernel0_0",
       C::kAttention},
      {"void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4, false, "
       "false, cutlass::bfloat16_t>, false, false, false>(pytorch_flash::Flash_fwd_params)",
       C::kAttention},
      {"fmha_cutlassF_bf16_aligned_64x128_rf_sm80(PyTorchMemEffAttention::AttentionKernel<"
       "cutlass::bfloat16_t, cutlass::arch::Sm80, true, 64, 128, 128, true, true>::Params)",
       C::kAttention},
      // NCCL
      {"ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)", C::kCommunication},
      {"ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)", C::kCommunication},
      // norms, the fused LayerNorm + modulate (mangled, as the binary names it)
      {"void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::BFloat16, "
       "float, false>(int, float, c10::BFloat16 const*, float*, float*, c10::BFloat16*)",
       C::kNormModulation},
      {"void at::native::(anonymous namespace)::RowwiseMomentsCUDAKernel<float, true>(long, "
       "float, float const*, float*, float*)",
       C::kNormModulation},
      {"_ZN8ditbench40_GLOBAL__N__c6ce1fe7_8_fused_cu_afe6647826layer_norm_modulate_kernelILi3EEEv"
       "NS_8RowsBf16ES2_S2_P13__nv_bfloat16llif",
       C::kNormModulation},
      // the GroupNorm kernel's statistics pass
      {"void ditbench::(anonymous namespace)::group_partial_sums_ndhwc<__nv_bfloat16, 8>("
       "__nv_bfloat16 const*, float2*, long, int, int, long, long)",
       C::kNormModulation},
      {"void ditbench::(anonymous namespace)::group_statistics<float>(float const*, float2 const*, "
       "float2*, long, long, float, long, long, long)",
       C::kNormModulation},
      // RoPE: the fused QK RMSNorm + RoPE
      {"_ZN8ditbench40_GLOBAL__N__c6ce1fe7_8_fused_cu_afe6647823qk_rms_norm_rope_kernelILi16EEEvPK"
       "13__nv_bfloat16S4_PS2_S5_S4_S4_PKfS7_lllilf",
       C::kRope},
      // elementwise and reductions, the fused gate + residual, FP8 row quantization
      {"void at::native::vectorized_elementwise_kernel<4, at::native::BinaryFunctor<c10::BFloat16, "
       "c10::BFloat16, c10::BFloat16, at::native::binary_internal::MulFunctor<float> >, "
       "std::array<char*, 3ul> >(int, at::native::BinaryFunctor<c10::BFloat16, c10::BFloat16, "
       "c10::BFloat16, at::native::binary_internal::MulFunctor<float> >, std::array<char*, 3ul>)",
       C::kElementwise},
      {"void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::MeanOps<"
       "float, float, float, float>, unsigned int, float, 4, 4> >(at::native::ReduceOp<float, "
       "at::native::MeanOps<float, float, float, float>, unsigned int, float, 4, 4>)",
       C::kElementwise},
      {"_ZN8ditbench40_GLOBAL__N__c6ce1fe7_8_fused_cu_afe6647820gate_residual_kernelILi3EEEvNS_8Row"
       "sBf16ES2_S2_P13__nv_bfloat16lli",
       C::kElementwise},
      {"void ditbench::(anonymous namespace)::channel_bias_kernel<__nv_bfloat16>(__nv_bfloat16*, "
       "__nv_bfloat16 const*, int, long)",
       C::kElementwise},
      {"void ditbench::(anonymous namespace)::quantize_rows_fp8_kernel<__nv_bfloat16, true>("
       "__nv_bfloat16 const*, long, long, unsigned char*, float*)",
       C::kElementwise},
      // copies: casts and contiguous() (direct_copy), concatenation, fills, layout changes
      {"void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast<at::native::"
       "direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}::operator()() "
       "const::{lambda("
       "c10::BFloat16)#1}>(at::TensorIteratorBase&)::{lambda(int)#1}>(int)",
       C::kCopy},
      {"void at::native::(anonymous namespace)::CatArrayBatchedCopy_aligned16_contig<at::native::("
       "anonymous namespace)::OpaqueType<2u>, unsigned int, 3, 128, 1>(at::native::(anonymous "
       "namespace)::OpaqueType<2u>*)",
       C::kCopy},
      {"_ZN2at6native29vectorized_elementwise_kernelILi4ENS0_"
       "11FillFunctorIfEESt5arrayIPcLm1EEEEviT0_"
       "T1_",
       C::kCopy},
      {"void cudnn::engines_precompiled::nchwToNhwcKernel<__nv_bfloat16>(int)", C::kCopy},
      // padding and nearest up-sampling: ATen's, and the channels-last gather
      {"void at::native::(anonymous namespace)::replication_pad_forward_kernel3d<c10::BFloat16>("
       "at::GenericPackedTensorAccessor<c10::BFloat16 const, 5ul, at::DefaultPtrTraits, long>, "
       "at::GenericPackedTensorAccessor<c10::BFloat16, 5ul, at::DefaultPtrTraits, long>, int, "
       "int, int, int, int, int)",
       C::kCopy},
      {"void at::native::(anonymous namespace)::upsample_nearest3d_out_frame<c10::BFloat16, "
       "&at::native::nearest_neighbor_compute_source_index>(c10::BFloat16 const*, c10::BFloat16*, "
       "unsigned long, unsigned long, unsigned long, unsigned long, unsigned long, unsigned long, "
       "unsigned long, unsigned long, float, float, float)",
       C::kCopy},
      {"void ditbench::(anonymous namespace)::video_resample_kernel<__nv_bfloat16>(__nv_bfloat16 "
       "const*, __nv_bfloat16*, int, ditbench::VideoResample)",
       C::kCopy},
      {"my_custom_kernel", C::kOther},
  };
  for (const auto& [name, expected] : cases) {
    EXPECT_STREQ(category_name(classify_kernel(name)), category_name(expected)) << name;
  }
  // Memory operations are copies whatever CUPTI calls them.
  EXPECT_EQ(classify_kernel("memcpy HtoD", true), C::kCopy);
  EXPECT_EQ(classify_kernel("memset", true), C::kCopy);
}

TEST(KernelProfile, CategoryNamesAreTheRecordsInOrder) {
  ASSERT_EQ(kernel_categories().size(), profile_categories().size());
  for (size_t i = 0; i < kernel_categories().size(); ++i)
    EXPECT_EQ(category_name(kernel_categories()[i]), profile_categories()[i]);
  EXPECT_STREQ(category_name(C::kNormModulation), "norm_modulation");
}

TEST(KernelProfile, ShortNamesDropReturnTypeTemplatesAndParameters) {
  EXPECT_EQ(short_kernel_name("void at::native::(anonymous namespace)::vectorized_layer_norm_"
                              "kernel<c10::BFloat16, float, false>(int, float)"),
            "at::native::vectorized_layer_norm_kernel");
  EXPECT_EQ(short_kernel_name("_ZN8ditbench40_GLOBAL__N__c6ce1fe7_8_fused_cu_afe6647820gate_"
                              "residual_kernelILi3EEEvNS_8RowsBf16ES2_S2_P13__nv_bfloat16lli"),
            "ditbench::gate_residual_kernel");
  EXPECT_EQ(short_kernel_name("nvjet_tst_192x192_64x4_2x1_v_bz_coopA_TNT"),
            "nvjet_tst_192x192_64x4_2x1_v_bz_coopA_TNT");
  EXPECT_EQ(short_kernel_name("memcpy DtoD"), "memcpy DtoD");
}

TEST(KernelProfile, AtenGenericKernelsNameTheirOp) {
  // Demangled names as CUPTI reports them for three ATen ops.
  EXPECT_EQ(short_kernel_name(
                "void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_impl_nocast<"
                "at::native::direct_copy_kernel_cuda(at::TensorIteratorBase&)::{lambda()#3}::"
                "operator()() const::{lambda()#7}::operator()() const::{lambda(c10::BFloat16)#1}>"
                "(at::TensorIteratorBase&, ...)::{lambda(int)#1}>(int, ...)"),
            "at::native::elementwise_kernel [direct_copy_kernel_cuda]");
  EXPECT_EQ(
      short_kernel_name("void at::native::vectorized_elementwise_kernel<4, at::native::"
                        "CUDAFunctor_add<c10::BFloat16>, std::array<char*, 3ul> >(int, "
                        "at::native::CUDAFunctor_add<c10::BFloat16>, std::array<char*, 3ul>)"),
      "at::native::vectorized_elementwise_kernel [CUDAFunctor_add]");
  EXPECT_EQ(short_kernel_name("void at::native::elementwise_kernel<128, 2, at::native::gpu_kernel_"
                              "impl_nocast<at::native::BinaryFunctor<c10::BFloat16, c10::BFloat16, "
                              "c10::BFloat16, at::native::binary_internal::MulFunctor<float> > >("
                              "at::TensorIteratorBase&, ...)::{lambda(int)#1}>(int, ...)"),
            "at::native::elementwise_kernel [MulFunctor]");
  // Other templates keep their bare name; so does an ATen kernel whose arguments name no op.
  EXPECT_EQ(short_kernel_name("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, "
                              "at::native::func_wrapper_t<float, float> > >(float)"),
            "at::native::reduce_kernel");
}

// e2e [0] > denoise [1] > step [2] > transformer [3], scheduler [4]; step [5] > transformer [6];
// GPU times in seconds as CUDA events would give them.
TimingResult two_step_timing() {
  TimingResult t;
  auto span = [&](const char* name, int depth, double seconds) {
    StageSpan s;
    s.name = name;
    s.depth = depth;
    s.host_s = seconds * 2;  // the host clock differs; the GPU time is the stage's time
    s.device_s = seconds;
    t.spans.push_back(s);
  };
  span("e2e", 0, 100e-6);
  span("denoise", 1, 90e-6);
  span("step", 2, 50e-6);
  span("transformer", 3, 40e-6);
  span("scheduler", 3, 8e-6);
  span("step", 2, 40e-6);
  span("transformer", 3, 30e-6);
  return t;
}

KernelActivity activity(const char* name, uint64_t start_us, uint64_t end_us, int64_t span,
                        uint32_t stream = 7, bool memory = false) {
  KernelActivity a;
  a.name = name;
  a.category = classify_kernel(name, memory);
  a.start_ns = 1'000'000 + start_us * 1000;
  a.end_ns = 1'000'000 + end_us * 1000;
  a.stream = stream;
  a.span = span;
  return a;
}

std::vector<KernelActivity> two_step_activities() {
  return {
      activity("nvjet_tst_128x256", 0, 20, 3),               // step 0 transformer: gemm 20 us
      activity("flash_fwd_kernel", 15, 30, 3, 9),            // overlaps the GEMM on stream 9
      activity("vectorized_elementwise_kernel", 30, 35, 4),  // scheduler
      activity("memcpy HtoD", 36, 37, 2, 7, true),           // in step 0 itself
      activity("nvjet_tst_128x256", 50, 60, 6),              // step 1 transformer
      activity("ncclDevKernel_SendRecv", 60, 64, 6),
      activity("vectorized_layer_norm_kernel", 99, 100, -1),  // outside every stage
  };
}

TEST(KernelProfile, BreakdownSumsCategoriesPerStageAndMeasuresLaunchGaps) {
  const ProfileRecord p = profile_breakdown(two_step_timing(), two_step_activities());
  EXPECT_EQ(p.kernels, 7);
  EXPECT_NEAR(p.unattributed_s, 1e-6, 1e-12);

  // transformer: both steps' spans summed: 40 + 30 us of wall time; kernels [0, 30) (the GEMM
  // and the overlapping attention: union 30 us) and [50, 64) (14 us).
  const ProfileStageEntry& tr = p.stages.at("transformer");
  EXPECT_NEAR(tr.wall_s, 70e-6, 1e-12);
  EXPECT_NEAR(tr.busy_s, 44e-6, 1e-12);
  EXPECT_NEAR(tr.launch_gaps_s, (40e-6 - 30e-6) + (30e-6 - 14e-6), 1e-12);
  EXPECT_EQ(tr.kernels, 4);
  EXPECT_NEAR(tr.category_s.at("gemm"), 30e-6, 1e-12);
  EXPECT_NEAR(tr.category_s.at("attention"), 15e-6, 1e-12);
  EXPECT_NEAR(tr.category_s.at("communication"), 4e-6, 1e-12);
  EXPECT_FALSE(tr.category_s.count("copy"));

  // step holds its transformer and scheduler kernels and its own memcpy.
  const ProfileStageEntry& step = p.stages.at("step");
  EXPECT_EQ(step.kernels, 6);
  EXPECT_NEAR(step.category_s.at("copy"), 1e-6, 1e-12);
  EXPECT_NEAR(step.category_s.at("elementwise"), 5e-6, 1e-12);
  EXPECT_NEAR(step.wall_s, 90e-6, 1e-12);
  EXPECT_NEAR(step.busy_s, (30 + 5 + 1 + 14) * 1e-6, 1e-12);

  // e2e: every attributed kernel; its wall time is the GPU time, not the host time.
  EXPECT_EQ(p.stages.at("e2e").kernels, 6);
  EXPECT_NEAR(p.stages.at("e2e").wall_s, 100e-6, 1e-12);
  EXPECT_NEAR(p.stages.at("e2e").launch_gaps_s, 50e-6, 1e-12);

  // Longest kernels by total time, the two GEMM launches as one entry.
  ASSERT_FALSE(p.top_kernels.empty());
  EXPECT_EQ(p.top_kernels[0].name, "nvjet_tst_128x256");
  EXPECT_EQ(p.top_kernels[0].count, 2);
  EXPECT_EQ(p.top_kernels[0].category, "gemm");
  EXPECT_NEAR(p.top_kernels[0].total_s, 30e-6, 1e-12);
  EXPECT_EQ(profile_breakdown(two_step_timing(), two_step_activities(), 2).top_kernels.size(), 2u);
}

TEST(KernelProfile, GapsNeverNegativeWhenKernelsOutlastTheStage) {
  TimingResult t;
  t.spans.push_back({"transformer", 0, 1.0, 10e-6});
  const ProfileRecord p = profile_breakdown(t, {activity("nvjet_x", 0, 20, 0)});
  EXPECT_NEAR(p.stages.at("transformer").busy_s, 20e-6, 1e-12);
  EXPECT_EQ(p.stages.at("transformer").launch_gaps_s, 0.0);
}

TEST(KernelProfile, RecordJsonRoundTrips) {
  ResultRecord r;
  r.suite = "s";
  r.config_id = "c";
  r.profile = profile_breakdown(two_step_timing(), two_step_activities());
  r.profile->note = "a note";
  const nlohmann::json j = to_json(r);
  EXPECT_EQ(j.at("profile").at("stages").at("transformer").at("kernels"), 4);
  EXPECT_EQ(j.at("profile").at("source"), "cupti");
  const ResultRecord back = record_from_json(j);
  ASSERT_TRUE(back.profile);
  EXPECT_EQ(to_json(back), j);
  EXPECT_TRUE(back.extra.empty());

  nlohmann::json bad = j;
  bad["profile"]["stages"]["step"]["wall_s"] = "slow";
  EXPECT_NE(
      testing::input_error_of([&] { record_from_json(bad); }).find("/profile/stages/step/wall_s"),
      std::string::npos);
}

TEST(KernelProfile, TraceHasTheKernelsOnOneTrackPerStream) {
  const TimingResult timing = two_step_timing();
  const auto slices = kernel_slices(timing, two_step_activities());
  ASSERT_EQ(slices.size(), 7u);
  EXPECT_EQ(slices[0].start_us, 0.0);
  EXPECT_EQ(slices[1].start_us, 15.0);
  EXPECT_EQ(slices[1].dur_us, 15.0);
  EXPECT_EQ(slices[1].stage, "transformer");
  EXPECT_EQ(slices[6].stage, "");

  const nlohmann::json trace = chrome_trace(timing, "c", slices);
  int kernels = 0;
  std::set<int> tracks;
  for (const auto& e : trace.at("traceEvents")) {
    if (e.at("pid") != 2 || e.at("ph") != "X") continue;
    ++kernels;
    tracks.insert(e.at("tid").get<int>());
    if (e.at("name") == "flash_fwd_kernel") {
      EXPECT_EQ(e.at("cat"), "attention");
      EXPECT_EQ(e.at("args").at("stage"), "transformer");
    }
  }
  EXPECT_EQ(kernels, 7);
  EXPECT_EQ(tracks, (std::set<int>{7, 9}));
  // Without kernels the trace has no profile process.
  for (const auto& e : chrome_trace(timing, "c").at("traceEvents")) EXPECT_NE(e.at("pid"), 2);
}

TEST(KernelProfile, MarkdownPrintsTheBreakdownTable) {
  ResultRecord r;
  r.suite = "s";
  r.config_id = "attn=cudnn";
  r.status = RunStatus::kOk;
  r.profile = profile_breakdown(two_step_timing(), two_step_activities());
  const std::string md = markdown_report({r});
  EXPECT_NE(md.find("## Kernel profile"), std::string::npos);
  EXPECT_NE(md.find("| stage | time | gemm | attention | communication | norm_modulation | rope | "
                    "elementwise | copy | other | busy | gaps | kernels |"),
            std::string::npos);
  EXPECT_NE(md.find("| transformer | 0.0001 | 0.0000 | 0.0000 | 0.0000 | - | - | - | - | - | "
                    "0.0000 | 0.0000 | 4 |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("`nvjet_tst_128x256` | gemm"), std::string::npos);
  ResultRecord plain = r;
  plain.profile.reset();
  EXPECT_EQ(markdown_report({plain}).find("Kernel profile"), std::string::npos);
}

TEST(KernelProfile, CpuRunRecordsWhyThereIsNoProfile) {
  testing::TempDir dir("ditbench_profile");
  nlohmann::json doc = {{"name", "p"},
                        {"model", "hunyuan-video"},
                        {"preset", "hunyuan-video-tiny"},
                        {"weights", "random"},
                        {"dtype", "float32"},
                        {"device", "cpu"},
                        {"height", 32},
                        {"width", 32},
                        {"frames", 1},
                        {"steps", 2},
                        {"warmup", 0},
                        {"repeats", 1},
                        {"decode", false},
                        {"profile", true},
                        {"prompt", {{"tokens", 6}, {"valid", 4}}}};
  const Suite suite = parse_suite(doc, dir.path() / "suite.json");
  EXPECT_TRUE(suite.settings.profile);
  RunOptions options;
  options.out_dir = dir.path() / "out";
  options.progress = false;
  ASSERT_EQ(run_suite(suite, options).ok, 1);
  const auto records = read_results(options.out_dir / "results.jsonl");
  ASSERT_EQ(records.size(), 1u);
  ASSERT_TRUE(records[0].profile);
  ASSERT_TRUE(records[0].profile->note);
  EXPECT_NE(records[0].profile->note->find(KernelProfiler::available() ? "CUDA device" : "CUPTI"),
            std::string::npos);
  EXPECT_TRUE(records[0].profile->stages.empty());
  EXPECT_EQ(records[0].config.at("profile"), true);

  doc["profile"] = "yes";
  EXPECT_NE(testing::input_error_of([&] {
              parse_suite(doc, dir.path() / "suite.json");
            }).find("/profile"),
            std::string::npos);
}

TEST(KernelProfile, ShippedSuiteProfilesTheBf16AndFp8Steps) {
  const Suite suite =
      load_suite(std::filesystem::path(testing::source_dir()) / "suites/gpu-hv-480p-profile.json");
  EXPECT_TRUE(suite.settings.profile);
  EXPECT_EQ(suite.settings.steps, 2);
  EXPECT_EQ(suite.settings.warmup, 1);
  EXPECT_EQ(suite.settings.repeats, 1);
  const auto configs = expand_matrix(suite);
  // bf16 first (the baseline), then FP8 attention, FP8 GEMMs and both; then CUTLASS's FMHA with
  // bf16 and FP8 GEMMs.
  ASSERT_EQ(configs.size(), 6u);
  EXPECT_EQ(configs[0].axes.attention, "cudnn");
  EXPECT_EQ(configs[0].axes.quant, "none");
  EXPECT_EQ(configs[3].axes.attention, "cudnn_fp8");
  EXPECT_EQ(configs[3].axes.quant, "fp8_dynamic");
  EXPECT_EQ(configs[4].axes.attention, "cutlass_fmha");
  EXPECT_EQ(configs[4].axes.quant, "none");
  EXPECT_EQ(configs[5].axes.attention, "cutlass_fmha");
  EXPECT_EQ(configs[5].axes.quant, "fp8_dynamic");
}

}  // namespace
}  // namespace ditbench
