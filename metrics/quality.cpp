#include "metrics/quality.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "models/common/error.h"

namespace ditbench {
namespace {

// scikit-image's SSIM constants (Wang et al. 2004) and scipy's Gaussian window for σ 1.5,
// truncate 3.5: radius int(3.5·1.5 + 0.5) = 5, i.e. 11 taps.
constexpr double kSigma = 1.5;
constexpr int64_t kRadius = 5;
constexpr double kK1 = 0.01, kK2 = 0.03;

std::string shape_string(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

void check_same_shape(const at::Tensor& ref, const at::Tensor& test, const char* what) {
  if (ref.sizes() != test.sizes()) {
    throw InputError(std::string(what) + ": reference shape " + shape_string(ref) +
                     " differs from test shape " + shape_string(test));
  }
}

double default_range(const at::Tensor& t, std::optional<double> data_range) {
  if (data_range) return *data_range;
  return t.scalar_type() == at::kByte ? 255.0 : 1.0;
}

// Per-image PSNR of a batch. ref, test: [N, ...] f64 → [N] (+inf where identical).
at::Tensor psnr_per_image(const at::Tensor& ref, const at::Tensor& test, double data_range) {
  const auto mse = (ref - test).square().flatten(1).mean(1);  // [N]
  return (at::log10(data_range * data_range / mse) * 10.0);   // x/0 = +inf
}

// Gaussian window, normalized as scipy's _gaussian_kernel1d: [2r + 1] f64.
at::Tensor gaussian_window(const at::Device& device) {
  auto x = at::arange(-kRadius, kRadius + 1, at::TensorOptions(at::kDouble).device(device));
  auto phi = at::exp(x.square() * (-0.5 / (kSigma * kSigma)));
  return phi / phi.sum();
}

// Per-image mean SSIM of a batch. ref, test: [N, H, W, C] f64 → [N].
at::Tensor ssim_per_image(const at::Tensor& ref, const at::Tensor& test, double data_range) {
  const int64_t n = ref.size(0), h = ref.size(1), w = ref.size(2), c = ref.size(3);
  if (h < 2 * kRadius + 1 || w < 2 * kRadius + 1) {
    throw InputError("SSIM: images of " + std::to_string(h) + "x" + std::to_string(w) +
                     " are smaller than the 11x11 window");
  }
  // x, y: [N·C, 1, H, W], each channel filtered on its own.
  const auto x = ref.permute({0, 3, 1, 2}).reshape({n * c, 1, h, w});
  const auto y = test.permute({0, 3, 1, 2}).reshape({n * c, 1, h, w});
  // The five local moments in one batch: [5·N·C, 1, H, W].
  const auto moments = at::cat({x, y, x * x, y * y, x * y}, 0);
  // scikit-image filters with scipy's 'reflect' border, then drops a border of the filter radius
  // before the mean: every value it keeps comes from a window inside the image, so an unpadded
  // ("valid") convolution yields exactly the kept region and the border mode never matters.
  // Separable Gaussian, rows then columns, as scipy filters axis by axis.
  const auto window = gaussian_window(ref.device());
  auto filtered = at::conv2d(moments, window.view({1, 1, -1, 1}));
  filtered = at::conv2d(filtered, window.view({1, 1, 1, -1}));  // [5NC, 1, H-10, W-10]
  const auto parts = filtered.chunk(5, 0);
  const auto &ux = parts[0], &uy = parts[1], &uxx = parts[2], &uyy = parts[3], &uxy = parts[4];
  const auto vx = uxx - ux * ux;
  const auto vy = uyy - uy * uy;
  const auto vxy = uxy - ux * uy;
  const double c1 = (kK1 * data_range) * (kK1 * data_range);
  const double c2 = (kK2 * data_range) * (kK2 * data_range);
  const auto numerator = (2.0 * ux * uy + c1) * (2.0 * vxy + c2);
  const auto denominator = (ux * ux + uy * uy + c1) * (vx + vy + c2);
  const auto ssim_map = numerator / denominator;        // [NC, 1, H-10, W-10]
  return ssim_map.reshape({n, c, -1}).mean(2).mean(1);  // [N]: channel means, then their mean
}

// HWC (or HW) image as a one-image batch: [1, H, W, C] f64.
at::Tensor as_image_batch(const at::Tensor& image, const char* what) {
  if (image.dim() == 2) return image.to(at::kDouble).unsqueeze(-1).unsqueeze(0);
  if (image.dim() == 3) return image.to(at::kDouble).unsqueeze(0);
  throw InputError(std::string(what) + ": expected an HWC or HW image, got shape " +
                   shape_string(image));
}

}  // namespace

double psnr(const at::Tensor& ref, const at::Tensor& test, std::optional<double> data_range) {
  check_same_shape(ref, test, "PSNR");
  const auto r = ref.to(at::kDouble).reshape({1, -1});
  const auto t = test.to(r.device(), at::kDouble).reshape({1, -1});
  return psnr_per_image(r, t, default_range(ref, data_range)).item<double>();
}

double ssim(const at::Tensor& ref, const at::Tensor& test, std::optional<double> data_range) {
  check_same_shape(ref, test, "SSIM");
  const auto r = as_image_batch(ref, "SSIM");
  const auto t = as_image_batch(test.to(ref.device()), "SSIM");
  return ssim_per_image(r, t, default_range(ref, data_range)).item<double>();
}

FrameQuality compare_frames(const at::Tensor& ref, const at::Tensor& test) {
  check_same_shape(ref, test, "frame comparison");
  if (ref.dim() != 4 || ref.size(0) == 0) {
    throw InputError("frame comparison: expected FHWC frames (at least one), got shape " +
                     shape_string(ref));
  }
  const auto test_here = test.to(ref.device());
  // A few frames at a time bounds the memory of the moment maps for long, large videos.
  constexpr int64_t kFramesPerChunk = 8;
  std::vector<at::Tensor> psnr_chunks, ssim_chunks;
  for (int64_t begin = 0; begin < ref.size(0); begin += kFramesPerChunk) {
    const int64_t end = std::min(begin + kFramesPerChunk, ref.size(0));
    const auto r = ref.slice(0, begin, end).to(at::kDouble);  // [f, H, W, C]
    const auto t = test_here.slice(0, begin, end).to(at::kDouble);
    psnr_chunks.push_back(psnr_per_image(r, t, 1.0));
    ssim_chunks.push_back(ssim_per_image(r, t, 1.0));
  }
  // One transfer to the host for all frames.
  const auto per_frame = at::stack({at::cat(psnr_chunks), at::cat(ssim_chunks)}).cpu();
  const auto psnr_values = per_frame[0].contiguous(), ssim_values = per_frame[1].contiguous();
  FrameQuality quality;
  quality.psnr.assign(psnr_values.data_ptr<double>(),
                      psnr_values.data_ptr<double>() + psnr_values.numel());
  quality.ssim.assign(ssim_values.data_ptr<double>(),
                      ssim_values.data_ptr<double>() + ssim_values.numel());

  const double inf = std::numeric_limits<double>::infinity();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  double finite_sum = 0.0;
  int64_t finite_count = 0, identical_count = 0;
  bool has_nan = false;
  quality.psnr_min = inf;
  for (double value : quality.psnr) {
    if (std::isnan(value)) {
      has_nan = true;
    } else if (std::isinf(value)) {
      ++identical_count;
    } else {
      finite_sum += value;
      ++finite_count;
      quality.psnr_min = std::min(quality.psnr_min, value);
    }
  }
  quality.identical = identical_count == static_cast<int64_t>(quality.psnr.size());
  if (has_nan) {
    // A NaN frame (a diverged run) must not hide behind the mean of the others.
    quality.psnr_mean = quality.psnr_min = nan;
  } else {
    quality.psnr_mean = finite_count > 0 ? finite_sum / static_cast<double>(finite_count) : inf;
  }
  // SSIM min and mean in f64 on the host; a NaN frame makes both NaN.
  quality.ssim_min = ssim_values.min().item<double>();
  quality.ssim_mean = ssim_values.mean().item<double>();
  return quality;
}

}  // namespace ditbench
