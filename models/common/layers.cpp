#include "models/common/layers.h"

#include "optimizations/kernels/fused.h"
#include "optimizations/kernels/fused_fp8.h"

#include "models/common/flop_count.h"
#include "models/common/linear_fusions.h"

namespace ditbench {

FeedForwardProjImpl::FeedForwardProjImpl(int64_t dim, int64_t inner_dim, FeedForwardActivation act,
                                         bool bias, const at::TensorOptions& options)
    : act_(act) {
  const int64_t proj_out = act == FeedForwardActivation::kSwiGLU ? 2 * inner_dim : inner_dim;
  proj = register_module("proj", Linear(dim, proj_out, bias, options));
}

at::Tensor FeedForwardProjImpl::forward(const at::Tensor& x) {
  switch (act_) {
    case FeedForwardActivation::kGeluTanh:
      return linear_gelu_tanh(proj, x);  // [..., inner], GELU in the GEMM epilogue where it serves
    case FeedForwardActivation::kLinearSiLU:
      return at::silu(proj(x));  // [..., inner]
    case FeedForwardActivation::kSwiGLU: {
      auto halves = proj(x).chunk(2, -1);  // [..., 2*inner]: value first, gate second
      return halves[0] * at::silu(halves[1]);
    }
  }
  return proj(x);
}

FeedForwardImpl::FeedForwardImpl(int64_t dim, int64_t inner_dim, FeedForwardActivation act,
                                 const at::TensorOptions& options, int64_t dim_out, bool bias) {
  if (dim_out < 0) dim_out = dim;
  auto net = register_module("net", std::make_shared<torch::nn::Module>());
  act_proj = net->register_module("0", FeedForwardProj(dim, inner_dim, act, bias, options));
  out = net->register_module("2", Linear(inner_dim, dim_out, bias, options));
}

at::Tensor gated_residual(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y) {
  auto out = try_gate_residual(x, gate, y);
  return out.defined() ? out : x + y * gate.unsqueeze(1);
}

at::Tensor linear_gated_residual(Linear& linear, const QuantizedActivation& h, const at::Tensor& x,
                                 const at::Tensor& gate) {
  auto out = linear->forward_gated_residual(h, x, gate);
  return out.defined() ? out : gated_residual(x, gate, linear->forward_quantized(h));
}

at::Tensor linear_gated_residual(Linear& linear, const at::Tensor& h, const at::Tensor& x,
                                 const at::Tensor& gate) {
  return linear_gated_residual(linear, quantize_for(h, {linear.get()}), x, gate);
}

at::Tensor FeedForwardImpl::gelu_then_out(const at::Tensor& h, const at::Tensor& residual,
                                          const at::Tensor& gate) {
  if (out->takes_fp8()) {
    auto rows = try_gelu_tanh_fp8(h);  // e4m3 rows of gelu(h), or undefined
    if (rows.fp8.values.defined()) {
      return residual.defined() ? linear_gated_residual(out, rows, residual, gate)
                                : out->forward_quantized(rows);
    }
  }
  auto y = out(at::gelu(h, "tanh"));
  return residual.defined() ? gated_residual(residual, gate, y) : y;
}

at::Tensor FeedForwardImpl::forward(const at::Tensor& x) {
  if (out->takes_fp8() && act_proj->activation() == FeedForwardActivation::kGeluTanh) {
    return gelu_then_out(act_proj->proj(x));  // proj(x): [..., inner] before the GELU
  }
  return out(act_proj(x));
}

at::Tensor FeedForwardImpl::forward_quantized(const QuantizedActivation& x) {
  auto& proj = act_proj->proj;
  if (proj->takes_fp8() && x.fp8.values.defined() &&
      act_proj->activation() == FeedForwardActivation::kGeluTanh) {
    return gelu_then_out(proj->forward_quantized(x));
  }
  TORCH_CHECK(x.full.defined(), "FeedForward: net.0.proj runs ",
              quant_mode_name(proj->quant_mode()),
              " but its input was produced as e4m3 rows only (see any_takes_fp8)");
  return forward(x.full);
}

at::Tensor FeedForwardImpl::forward_gated_residual(const QuantizedActivation& x,
                                                   const at::Tensor& residual,
                                                   const at::Tensor& gate) {
  auto& proj = act_proj->proj;
  if (out->takes_fp8() && proj->takes_fp8() && x.fp8.values.defined() &&
      act_proj->activation() == FeedForwardActivation::kGeluTanh) {
    return gelu_then_out(proj->forward_quantized(x), residual, gate);
  }
  return gated_residual(residual, gate, forward_quantized(x));
}

OutProjectionImpl::OutProjectionImpl(int64_t in, int64_t out, bool bias,
                                     const at::TensorOptions& options) {
  linear = register_module("0", Linear(in, out, bias, options));
}

PatchConv3dImpl::PatchConv3dImpl(int64_t in_channels, int64_t out_channels,
                                 std::array<int64_t, 3> patch, const at::TensorOptions& options)
    : patch_(patch) {
  weight = register_parameter(
      "weight", at::empty({out_channels, in_channels, patch[0], patch[1], patch[2]}, options),
      false);
  bias = register_parameter("bias", at::empty({out_channels}, options), false);
}

at::Tensor PatchConv3dImpl::forward(const at::Tensor& x) {
  auto y = at::conv3d(x, weight, bias, patch_);  // [B, D, F', H', W']
  count_conv_flops(y.numel(), weight.numel(), weight.size(0));
  // [B, N, D] row-major: the token stream every block reads (the fused row kernels and the GEMMs
  // take it without a copy; ops on a transposed stream keep its layout, block after block).
  return y.flatten(2).transpose(1, 2).contiguous();
}

PatchEmbed3dImpl::PatchEmbed3dImpl(int64_t in_channels, int64_t embed_dim,
                                   std::array<int64_t, 3> patch, const at::TensorOptions& options) {
  proj = register_module("proj", PatchConv3d(in_channels, embed_dim, patch, options));
}

at::Tensor unpatchify_channels_first(const at::Tensor& x, std::array<int64_t, 3> grid,
                                     std::array<int64_t, 3> patch, int64_t channels) {
  const int64_t batch = x.size(0);
  // [B, F', H', W', C, pt, ph, pw] -> [B, C, F', pt, H', ph, W', pw]
  auto y = x.reshape({batch, grid[0], grid[1], grid[2], channels, patch[0], patch[1], patch[2]})
               .permute({0, 4, 1, 5, 2, 6, 3, 7});
  return y.flatten(6, 7).flatten(4, 5).flatten(2, 3);  // [B, C, F, H, W]
}

}  // namespace ditbench
