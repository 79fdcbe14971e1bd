#pragma once
// Frame sources for `ditbench metrics REF TEST` and frame artifacts of runs. Frames are FHWC
// float32 in [0, 1] on the CPU, RGB channel order.
#include <ATen/ATen.h>

#include <string>

namespace ditbench {

// Reads a frame source:
//   file.safetensors:tensor  HWC or FHWC, floats in [0, 1] (uint8 is scaled by 1/255); the
//                            ":tensor" part may be left out when the file holds one tensor.
//   image file or folder of images (sorted by name) — only in builds with OpenCV.
// Returns [F, H, W, C] f32. InputError naming the file or tensor when it cannot be used.
at::Tensor load_frames(const std::string& source);

// Writes FHWC frames as one f32 tensor named `tensor_name`, readable by load_frames.
void save_frames_safetensors(const std::string& path, const at::Tensor& frames,
                             const std::string& tensor_name = "frames");

// Writes FHWC frames in [0, 1] as dir/frame_00000.png, ... (8-bit RGB). Unsupported in builds
// without OpenCV.
void save_frames_png(const std::string& dir, const at::Tensor& frames);

}  // namespace ditbench
