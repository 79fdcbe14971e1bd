#pragma once
// Frame sources for `ditbench metrics REF TEST` and frame artifacts of runs. Frames are FHWC
// float32 in [0, 1] on the CPU, RGB channel order.
#include <ATen/ATen.h>

#include <string>

namespace ditbench {

// Reads a frame source:
//   file.safetensors:tensor  HWC or FHWC, floats in [0, 1] (uint8 is scaled by 1/255); the
//                            ":tensor" part may be left out when the file holds one tensor.
//   video file (.mp4, .mkv, .mov, .avi, .webm, .m4v) — only in builds with FFmpeg.
//   image file or folder of images (sorted by name) — only in builds with OpenCV.
// Returns [F, H, W, C] f32. InputError naming the file or tensor when it cannot be used.
at::Tensor load_frames(const std::string& source);

// FHWC frames in [0, 1] as 8-bit values round(x * 255) (half to even, as numpy and diffusers'
// numpy_to_pil), clamped first: [F, H, W, C] uint8 on the CPU, contiguous.
at::Tensor quantize_frames(const at::Tensor& frames);

// A reference of another size made comparable with generated frames of `shape` [F, H, W, C].
// Equal shapes return `reference` unchanged. Otherwise InputError naming `reference_name` and
// both shapes, unless `resize`: then linear interpolation over frames and bilinear over H and W,
// as torch's interpolate(mode="trilinear"/"bilinear", align_corners=False, antialias=False)
// (so a reference enlarged by repeating pixels or frames twice comes back exactly). A channel
// count mismatch is always InputError.
at::Tensor fit_reference_frames(const at::Tensor& reference, at::IntArrayRef shape, bool resize,
                                const std::string& reference_name);

// Writes FHWC frames as one f32 tensor named `tensor_name`, readable by load_frames.
void save_frames_safetensors(const std::string& path, const at::Tensor& frames,
                             const std::string& tensor_name = "frames");

// Writes FHWC frames in [0, 1] as dir/frame_00000.png, ... (8-bit RGB). Unsupported in builds
// without OpenCV.
void save_frames_png(const std::string& dir, const at::Tensor& frames);

}  // namespace ditbench
