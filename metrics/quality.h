#pragma once
// Frame quality: PSNR and SSIM equal to scikit-image's peak_signal_noise_ratio and
// structural_similarity with the settings of Wang et al. 2004 (Gaussian window σ 1.5, 11 taps,
// K1 0.01, K2 0.03, population covariance, per-channel mean), written as tensor ops so they run
// on the frames' device. Computed in f64 (scikit-image works in f32 for f32 input; the two agree
// to about 1e-6).
#include <ATen/ATen.h>

#include <optional>
#include <vector>

namespace ditbench {

struct FrameQuality {
  std::vector<double> psnr;  // per frame, dB; +inf for a frame identical to its reference
  std::vector<double> ssim;  // per frame
  bool identical = false;    // every frame identical to its reference
  // psnr_mean is the mean over the frames whose PSNR is finite (identical frames carry no
  // information on the error and would make the mean infinite); +inf only when all frames are
  // identical. psnr_min is the smallest per-frame value (+inf likewise only when all are). A NaN
  // frame (a diverged run) makes psnr_mean, psnr_min and the SSIM statistics NaN.
  double psnr_mean = 0.0, psnr_min = 0.0;
  double ssim_mean = 0.0, ssim_min = 0.0;
};

// 10·log10(data_range² / MSE) over all elements; +inf when identical. Any shape.
// data_range defaults to 255 for uint8 tensors and to 1 otherwise.
double psnr(const at::Tensor& ref, const at::Tensor& test,
            std::optional<double> data_range = std::nullopt);

// Mean SSIM of an HWC image (C ≥ 1; an HW tensor is one channel), averaged over channels.
// H and W must be at least 11 (the window). data_range defaults as for psnr.
double ssim(const at::Tensor& ref, const at::Tensor& test,
            std::optional<double> data_range = std::nullopt);

// Per-frame PSNR and SSIM of FHWC frames in [0, 1] (data range 1), with their means and minima.
// `test` is moved to `ref`'s device. InputError when the shapes differ (naming both) or the
// tensors are not FHWC.
FrameQuality compare_frames(const at::Tensor& ref, const at::Tensor& test);

}  // namespace ditbench
