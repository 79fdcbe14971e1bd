#include "metrics/frames.h"

#include <sstream>
#include <string>

#include "metrics/video.h"
#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"

#ifdef DITBENCH_HAS_OPENCV
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

namespace ditbench {
namespace {

constexpr const char* kSafetensorsSuffix = ".safetensors";

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_string(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

// HWC or FHWC, float in [0, 1] or uint8 → [F, H, W, C] f32. `label` names the tensor in errors.
at::Tensor as_frames(const at::Tensor& tensor, const std::string& label) {
  if (tensor.dim() != 3 && tensor.dim() != 4) {
    throw InputError(label + ": expected HWC or FHWC frames, got shape " + shape_string(tensor));
  }
  at::Tensor frames;
  if (tensor.scalar_type() == at::kByte) {
    frames = tensor.to(at::kFloat) / 255.0;
  } else if (at::isFloatingType(tensor.scalar_type())) {
    frames = tensor.to(at::kFloat);
    // Frames in [-1, 1] (a VAE's raw output) would give meaningless PSNR with a data range of 1.
    // A little slack lets rounding of a clamped output through.
    constexpr double kSlack = 1e-3;
    if (frames.numel() > 0) {
      const double low = frames.min().item<double>(), high = frames.max().item<double>();
      if (!(low >= -kSlack && high <= 1.0 + kSlack)) {
        throw InputError(label + ": frame values must lie in [0, 1], found [" +
                         std::to_string(low) + ", " + std::to_string(high) + "]");
      }
    }
  } else {
    throw InputError(label + ": frames must be floats in [0, 1] or uint8, got " +
                     std::string(c10::toString(tensor.scalar_type())));
  }
  if (frames.dim() == 3) frames = frames.unsqueeze(0);
  return frames.contiguous();
}

at::Tensor load_safetensors_frames(const std::string& path, std::string name) {
  const SafetensorsFile file(path);
  if (name.empty()) {
    if (file.size() != 1) {
      throw InputError(path + ": holds " + std::to_string(file.size()) + " tensors; name one as " +
                       path + ":<tensor>");
    }
    name = file.keys().front();
  }
  if (!file.contains(name)) {
    std::string available;
    for (const auto& key : file.keys()) available += (available.empty() ? "" : ", ") + key;
    throw InputError(path + ": no tensor '" + name + "' (it holds: " + available + ")");
  }
  return as_frames(file.tensor(name), path + ":" + name);
}

#ifdef DITBENCH_HAS_OPENCV
// One image as [H, W, C] uint8, RGB (OpenCV decodes to BGR).
at::Tensor read_image(const std::string& path) {
  const cv::Mat decoded = cv::imread(path, cv::IMREAD_COLOR);
  if (decoded.empty()) throw InputError(path + ": not an image this build can read");
  cv::Mat rgb;
  cv::cvtColor(decoded, rgb, cv::COLOR_BGR2RGB);
  return at::from_blob(rgb.data, {rgb.rows, rgb.cols, 3}, {static_cast<int64_t>(rgb.step[0]), 3, 1},
                       at::kByte)
      .clone();
}

bool is_image_file(const std::filesystem::path& path) {
  static const std::vector<std::string> extensions = {".png", ".jpg",  ".jpeg", ".bmp",
                                                      ".tif", ".tiff", ".webp"};
  auto extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::find(extensions.begin(), extensions.end(), extension) != extensions.end();
}

at::Tensor load_image_frames(const std::string& source) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (fs::is_directory(source, error)) {
    std::vector<std::string> files;
    for (const auto& entry : fs::directory_iterator(source)) {
      if (entry.is_regular_file() && is_image_file(entry.path())) {
        files.push_back(entry.path().string());
      }
    }
    if (files.empty()) throw InputError(source + ": folder holds no image files");
    std::sort(files.begin(), files.end());
    std::vector<at::Tensor> frames;
    for (const auto& file : files) {
      frames.push_back(read_image(file));
      if (frames.back().sizes() != frames.front().sizes()) {
        throw InputError(file + ": image of shape " + shape_string(frames.back()) +
                         " differs from " + files.front() + " of shape " +
                         shape_string(frames.front()));
      }
    }
    return as_frames(at::stack(frames), source);
  }
  if (!fs::exists(source, error)) throw InputError(source + ": no such file or folder");
  if (!is_image_file(source)) {
    throw InputError(source +
                     ": not a frame source this build reads (images, folders of "
                     "images, file.safetensors:tensor)");
  }
  return as_frames(read_image(source), source);
}
#endif

}  // namespace

at::Tensor load_frames(const std::string& source) {
  const auto marker = source.rfind(std::string(kSafetensorsSuffix) + ":");
  if (marker != std::string::npos) {
    const auto path_end = marker + std::string(kSafetensorsSuffix).size();
    return load_safetensors_frames(source.substr(0, path_end), source.substr(path_end + 1));
  }
  if (ends_with(source, kSafetensorsSuffix)) return load_safetensors_frames(source, "");
  if (is_video_path(source)) {
    if (!video_io_available()) {
      throw InputError(source +
                       ": reading videos needs FFmpeg, which this build lacks; pass a folder "
                       "of frames or file.safetensors:tensor instead");
    }
    return load_video(source);
  }
#ifdef DITBENCH_HAS_OPENCV
  return load_image_frames(source);
#else
  throw InputError(source +
                   ": reading images needs OpenCV, which this build lacks; pass "
                   "file.safetensors:tensor instead");
#endif
}

at::Tensor quantize_frames(const at::Tensor& frames) {
  return (frames.detach().to(at::kCPU, at::kFloat).clamp(0.0, 1.0) * 255.0)
      .round()
      .to(at::kByte)
      .contiguous();
}

at::Tensor fit_reference_frames(const at::Tensor& reference, at::IntArrayRef shape, bool resize,
                                const std::string& reference_name) {
  if (reference.sizes() == shape) return reference;
  std::ostringstream wanted;
  wanted << shape;
  const std::string shapes = "reference frames of shape " + shape_string(reference) +
                             " vs generated frames of shape " + wanted.str();
  if (reference.dim() != 4 || shape.size() != 4 || reference.size(3) != shape[3]) {
    throw InputError(reference_name + ": " + shapes + " (the channel counts must match)");
  }
  if (!resize) {
    throw InputError(reference_name + ": " + shapes +
                     " (frame count and size must match, or ask "
                     "for a resize)");
  }
  at::Tensor resized = reference;  // [F, H, W, C]
  if (reference.size(0) != shape[0]) {
    // Linear in time only: [1, C, F, H, W] -> [1, C, F', H, W] (H and W keep their size, so the
    // spatial part of the trilinear kernel is the identity).
    auto volume = resized.permute({3, 0, 1, 2}).unsqueeze(0).to(at::kFloat);
    volume = at::upsample_trilinear3d(volume, {shape[0], resized.size(1), resized.size(2)},
                                      /*align_corners=*/false);
    resized = volume.squeeze(0).permute({1, 2, 3, 0});
  }
  if (resized.size(1) != shape[1] || resized.size(2) != shape[2]) {
    auto images = resized.permute({0, 3, 1, 2}).to(at::kFloat);  // [F, C, H, W]
    images = at::upsample_bilinear2d(images, {shape[1], shape[2]}, /*align_corners=*/false);
    resized = images.permute({0, 2, 3, 1});
  }
  return resized.clamp(0.0, 1.0).contiguous();
}

void save_frames_safetensors(const std::string& path, const at::Tensor& frames,
                             const std::string& tensor_name) {
  save_safetensors(path, {{tensor_name, frames.to(at::kFloat)}});
}

void save_frames_png(const std::string& dir, const at::Tensor& frames) {
#ifdef DITBENCH_HAS_OPENCV
  if (frames.dim() != 4 || (frames.size(3) != 1 && frames.size(3) != 3)) {
    throw InputError("PNG frames for " + dir + ": expected FHWC with 1 or 3 channels, got " +
                     shape_string(frames));
  }
  std::filesystem::create_directories(dir);
  const auto bytes = quantize_frames(frames);  // [F, H, W, C] uint8
  for (int64_t f = 0; f < bytes.size(0); ++f) {
    auto frame = bytes[f];  // [H, W, C]
    const int type = frame.size(2) == 3 ? CV_8UC3 : CV_8UC1;
    cv::Mat view(static_cast<int>(frame.size(0)), static_cast<int>(frame.size(1)), type,
                 frame.data_ptr<uint8_t>());
    cv::Mat out;
    if (frame.size(2) == 3) {
      cv::cvtColor(view, out, cv::COLOR_RGB2BGR);
    } else {
      out = view;
    }
    char name[32];
    std::snprintf(name, sizeof(name), "frame_%05lld.png", static_cast<long long>(f));
    const auto path = (std::filesystem::path(dir) / name).string();
    if (!cv::imwrite(path, out)) throw InputError(path + ": cannot write the image");
  }
#else
  (void)frames;
  throw Unsupported("writing PNG frames to " + dir + " needs OpenCV, which this build lacks");
#endif
}

}  // namespace ditbench
