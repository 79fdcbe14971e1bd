#include "models/common/linear_fusions.h"

#include <torch/nn/module.h>

#include "models/common/flop_count.h"
#include "optimizations/kernels/fused.h"
#include "optimizations/kernels/fused_fp8.h"

namespace ditbench {
namespace {

// The shape [..., out] of a projection of x [..., in].
std::vector<int64_t> output_shape(const at::Tensor& x, int64_t out) {
  auto shape = x.sizes().vec();
  shape.back() = out;
  return shape;
}

// The Linear side of gemm_fusion_serves: unquantized, bfloat16 weight and bias on `device`.
bool unquantized_bf16_on(const Linear& linear, const at::Device& device) {
  const auto& w = linear->weight;
  const auto& b = linear->bias;
  return linear->quant_mode() == QuantMode::none && w.defined() &&
         w.scalar_type() == at::kBFloat16 && w.device() == device && b.defined() &&
         b.scalar_type() == at::kBFloat16 && b.device() == device;
}

}  // namespace

bool gemm_fusion_serves(const Linear& linear, const at::Tensor& x) {
  return fused_kernels_serve(x) && x.dim() >= 1 && x.numel() > 0 &&
         x.size(-1) == linear->in_features() && unquantized_bf16_on(linear, x.device());
}

at::Tensor linear_gelu_tanh(Linear& linear, const at::Tensor& x) {
  if (!gemm_fusion_serves(linear, x)) return at::gelu(linear(x), "tanh");
  auto rows = x.reshape({-1, linear->in_features()});  // [M, in]
  count_gemm_flops(rows.size(0), linear->in_features(), linear->out_features());
  auto y = at::_addmm_activation(linear->bias, rows, linear->weight.t(), 1, 1,
                                 /*use_gelu=*/true);  // [M, out]
  return y.view(output_shape(x, linear->out_features()));
}

// ---- LinearGroup ----

LinearGroup::LinearGroup(std::vector<Linear> members) : members_(std::move(members)) {
  int64_t offset = 0;
  for (const auto& m : members_) {
    TORCH_CHECK(m->in_features() == members_.front()->in_features(),
                "LinearGroup: members read different input widths");
    offsets_.push_back(offset);
    offset += m->out_features();
  }
}

int64_t LinearGroup::out_features() const {
  return members_.empty() ? 0 : offsets_.back() + members_.back()->out_features();
}

bool LinearGroup::serves(const at::Tensor& x) {
  if (members_.empty()) return false;
  for (const auto& m : members_) {
    if (m->quant_mode() != QuantMode::none) {
      unpack();
      return false;
    }
  }
  for (const auto& m : members_) {
    if (!gemm_fusion_serves(m, x)) return false;
  }
  return true;
}

bool LinearGroup::packed() const {
  if (!weight_.defined()) return false;
  const auto row_bytes = members_.front()->in_features() * weight_.element_size();
  for (size_t i = 0; i < members_.size(); ++i) {
    const auto& m = members_[i];
    const auto* w_at = static_cast<const char*>(weight_.data_ptr()) + offsets_[i] * row_bytes;
    if (m->weight.data_ptr() != w_at || m->weight.scalar_type() != weight_.scalar_type() ||
        !m->weight.is_contiguous() || m->bias.defined() != bias_.defined()) {
      return false;
    }
    if (bias_.defined()) {
      const auto* b_at =
          static_cast<const char*>(bias_.data_ptr()) + offsets_[i] * bias_.element_size();
      if (m->bias.data_ptr() != b_at || m->bias.scalar_type() != bias_.scalar_type()) return false;
    }
  }
  return true;
}

void LinearGroup::pack() {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> weights, biases;
  for (const auto& m : members_) {
    weights.push_back(m->weight);
    if (m->bias.defined()) biases.push_back(m->bias);
  }
  weight_ = at::cat(weights, 0);  // [sum out, in]
  bias_ = biases.size() == members_.size() ? at::cat(biases, 0) : at::Tensor();
  for (size_t i = 0; i < members_.size(); ++i) {
    auto& m = members_[i];
    m->weight.set_data(weight_.narrow(0, offsets_[i], m->out_features()));
    if (bias_.defined()) m->bias.set_data(bias_.narrow(0, offsets_[i], m->out_features()));
  }
}

void LinearGroup::unpack() {
  if (!weight_.defined()) return;
  torch::NoGradGuard no_grad;
  // Members still viewing the concatenation get their own copy, so that it can be freed.
  for (auto& m : members_) {
    if (m->weight.is_alias_of(weight_)) m->weight.set_data(m->weight.clone());
    if (bias_.defined() && m->bias.defined() && m->bias.is_alias_of(bias_)) {
      m->bias.set_data(m->bias.clone());
    }
  }
  weight_ = at::Tensor();
  bias_ = at::Tensor();
}

at::Tensor LinearGroup::forward(const at::Tensor& x) {
  if (!packed()) pack();
  count_gemm_flops(x.numel() / weight_.size(1), weight_.size(1), weight_.size(0));
  return at::linear(x, weight_, bias_);  // [..., sum out]
}

void LinearGroup::forward_into(const at::Tensor& x, const at::Tensor& out) {
  if (!packed()) pack();
  auto result = out;  // [M, sum out]
  count_gemm_flops(x.size(0), weight_.size(1), weight_.size(0));
  if (bias_.defined()) {
    at::addmm_out(result, bias_, x, weight_.t());
  } else {
    at::mm_out(result, x, weight_.t());
  }
}

bool LinearGroup::all_fp8_dynamic() const {
  if (members_.empty()) return false;
  for (const auto& m : members_) {
    if (m->quant_mode() != QuantMode::fp8_dynamic || !m->weight_fp8.values.defined() ||
        m->weight_fp8.values.size(0) != m->out_features() ||
        m->weight_fp8.values.size(1) != m->in_features() ||
        m->bias.defined() != members_.front()->bias.defined()) {
      return false;  // another mode, a padded weight, or biases on some members only
    }
  }
  return true;
}

bool LinearGroup::serves(const QuantizedActivation& x) {
  if (x.full.defined() && serves(x.full)) return true;
  const auto& rows = x.fp8.values;
  if (!all_fp8_dynamic() || !rows.defined() || !rows.is_cuda() || !fused_kernels_enabled() ||
      rows.size(1) % 16 != 0) {
    return false;
  }
  for (const auto& m : members_) {
    if (m->out_features() % 16 != 0 || m->weight_fp8.values.device() != rows.device()) return false;
  }
  return true;
}

bool LinearGroup::packed_fp8() const {
  if (!weight_fp8_.values.defined()) return false;
  // Whether t views `stack` from its element `offset` on.
  auto views = [](const at::Tensor& t, const at::Tensor& stack, int64_t offset) {
    return t.is_alias_of(stack) && t.storage_offset() == stack.storage_offset() + offset;
  };
  const int64_t in = weight_fp8_.values.size(1);
  for (size_t i = 0; i < members_.size(); ++i) {
    const auto& w = members_[i]->weight_fp8;
    const auto& b = members_[i]->bias;
    if (!views(w.values, weight_fp8_.values, offsets_[i] * in) ||
        !views(w.scale, weight_fp8_.scale, offsets_[i]) || b.defined() != bias_fp8_.defined() ||
        (b.defined() && !views(b, bias_fp8_, offsets_[i]))) {
      return false;
    }
  }
  return true;
}

void LinearGroup::pack_fp8() {
  unpack();  // a bfloat16 concatenation from before the quantization is freed
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> values, scales, biases;
  for (const auto& m : members_) {
    values.push_back(m->weight_fp8.values);
    scales.push_back(m->weight_fp8.scale);
    if (m->bias.defined()) biases.push_back(m->bias);
  }
  // e4m3 has no cat kernel on every device: the bytes are stacked.
  for (auto& v : values) v = v.view(at::kByte);
  weight_fp8_.values = at::cat(values, 0).view(at::kFloat8_e4m3fn);  // [sum out, in]
  weight_fp8_.scale = at::cat(scales, 0);                            // [sum out, 1]
  bias_fp8_ = biases.empty() ? at::Tensor() : at::cat(biases, 0);    // [sum out]
  for (size_t i = 0; i < members_.size(); ++i) {
    auto& m = members_[i];
    m->weight_fp8.values = weight_fp8_.values.narrow(0, offsets_[i], m->out_features());
    m->weight_fp8.scale = weight_fp8_.scale.narrow(0, offsets_[i], m->out_features());
    if (bias_fp8_.defined()) m->bias.set_data(bias_fp8_.narrow(0, offsets_[i], m->out_features()));
  }
}

at::Tensor LinearGroup::run_fp8(const QuantizedActivation& x, at::Tensor out) {
  if (!packed_fp8()) pack_fp8();
  const auto& rows = x.fp8;  // [M, in]
  TORCH_CHECK(rows.values.defined() && rows.values.dim() == 2 &&
                  rows.values.size(1) == weight_fp8_.values.size(1),
              "LinearGroup: the fp8_dynamic members read e4m3 rows of ", weight_fp8_.values.size(1),
              " columns; the activation has ",
              rows.values.defined() ? rows.values.sizes() : at::IntArrayRef{},
              " (see any_takes_fp8)");
  count_gemm_flops(rows.values.size(0), weight_fp8_.values.size(1), weight_fp8_.values.size(0));
  if (!rows.values.is_cuda()) {  // the emulation, as each member's (LinearImpl::quantize)
    auto y = fp8_linear_emulated(rows, x.dtype, weight_fp8_, bias_fp8_);  // [M, sum out]
    if (!out.defined()) return y;
    out.copy_(y);
    return out;
  }
  if (!out.defined()) return fp8_linear_scaled_mm(rows, x.dtype, weight_fp8_, bias_fp8_);
  fp8_linear_scaled_mm_out(rows, weight_fp8_, bias_fp8_, out);
  return out;
}

void LinearGroup::check_unquantized() const {
  for (const auto& m : members_) {
    TORCH_CHECK(m->quant_mode() == QuantMode::none, "LinearGroup: members in mixed quantization ",
                "modes run as separate Linears (see serves)");
  }
}

at::Tensor LinearGroup::forward(const QuantizedActivation& x) {
  if (!all_fp8_dynamic()) {
    check_unquantized();
    return forward(x.full);
  }
  auto shape = x.shape;
  shape.back() = out_features();
  return run_fp8(x, {}).view(shape);  // [..., sum out]
}

void LinearGroup::forward_into(const QuantizedActivation& x, const at::Tensor& out) {
  if (!all_fp8_dynamic()) {
    check_unquantized();
    return forward_into(x.full, out);
  }
  run_fp8(x, out);
}

at::Tensor LinearGroup::member_output(const at::Tensor& y, size_t i) const {
  return y.narrow(-1, offsets_.at(i), members_.at(i)->out_features());
}

// ---- a Linear over a concatenated input ----

at::Tensor linear_split_input(const std::vector<at::Tensor>& parts, const at::Tensor& weight,
                              const at::Tensor& bias) {
  TORCH_CHECK(!parts.empty(), "linear_split_input: no parts");
  int64_t width = 0;
  for (const auto& p : parts) width += p.size(-1);
  TORCH_CHECK(width == weight.size(1), "linear_split_input: parts hold ", width,
              " features, the weight reads ", weight.size(1));
  at::Tensor y;  // [M, out]
  int64_t column = 0;
  for (const auto& p : parts) {
    const int64_t k = p.size(-1);
    auto rows = p.reshape({-1, k});              // [M, K_i]
    auto w_t = weight.narrow(1, column, k).t();  // [K_i, out], a strided view (no copy)
    count_gemm_flops(rows.size(0), k, weight.size(0));
    if (!y.defined()) {
      y = bias.defined() ? at::addmm(bias, rows, w_t) : at::mm(rows, w_t);
    } else {
      y.addmm_(rows, w_t);  // y += rows W_i^T, read back in the GEMM's epilogue
    }
    column += k;
  }
  return y.view(output_shape(parts.front(), weight.size(0)));
}

at::Tensor linear_of_concat(Linear& linear, const std::vector<at::Tensor>& parts) {
  TORCH_CHECK(!parts.empty(), "linear_of_concat: no parts");
  const auto& first = parts.front();
  const auto rows = first.sizes().slice(0, first.dim() - 1);
  bool split = unquantized_bf16_on(linear, first.device());
  int64_t width = 0;
  for (const auto& p : parts) {
    width += p.size(-1);
    split = split && fused_kernels_serve(p) && p.numel() > 0 && p.device() == first.device() &&
            p.dim() == first.dim() && p.sizes().slice(0, p.dim() - 1) == rows;
  }
  if (!split || width != linear->in_features()) return linear(at::cat(parts, -1));
  return linear_split_input(parts, linear->weight, linear->bias);
}

at::Tensor linear_of_prefix_and_gelu(Linear& linear, const at::Tensor& prefix,
                                     const at::Tensor& h) {
  if (linear->takes_fp8()) {
    auto rows = try_gelu_tanh_fp8(h, prefix);  // e4m3 rows of [prefix, gelu(h)]
    if (rows.fp8.values.defined()) return linear->forward_quantized(rows);
  }
  return linear_of_concat(linear, {prefix, at::gelu(h, "tanh")});
}

}  // namespace ditbench
