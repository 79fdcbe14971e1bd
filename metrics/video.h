#pragma once
// Video files through FFmpeg's libraries (libavformat, libavcodec, libswscale). Frames are FHWC
// float32 in [0, 1] on the CPU, RGB, as everywhere in metrics/.
//
// Codec choice for written videos:
//   H.264 (libx264) into the file as named (.mp4): CRF 16, preset "medium", yuv420p (yuv444p when
//   the width or height is odd, which 4:2:0 cannot hold), BT.601 limited range and tagged so.
//   This is what players open; it is lossy (about 45 dB on smooth frames).
//   FFV1 into Matroska (.mkv), 8-bit RGB (0RGB32): lossless, so the file decodes to exactly the
//   8-bit frames that were written. Used when libx264 is absent (FFmpeg built without GPL parts)
//   or when asked for; the extension of the path is replaced by .mkv.
#include <ATen/ATen.h>

#include <string>

namespace ditbench {

enum class VideoCodec {
  kAuto,  // H.264 when libx264 is there, else FFV1
  kH264,  // Unsupported when libx264 is absent
  kFFV1,
};

struct WrittenVideo {
  std::string path;   // the file written (.mkv for FFV1)
  std::string codec;  // "h264" or "ffv1"
  bool lossless = false;
};

// true in builds with FFmpeg.
bool video_io_available();
// true when this build's libavcodec has the libx264 encoder.
bool h264_encoder_available();
// A path whose extension names a video container this module reads (.mp4, .mkv, .mov, .avi,
// .webm, .m4v), compared case-insensitively.
bool is_video_path(const std::string& path);

// Writes FHWC frames (1 or 3 channels) in [0, 1] at `fps` frames per second. Values are rounded
// to 8 bits as round(x * 255). Unsupported without FFmpeg or without the codec asked for;
// InputError for frames of the wrong shape or a path that cannot be written.
WrittenVideo save_video(const std::string& path, const at::Tensor& frames, double fps,
                        VideoCodec codec = VideoCodec::kAuto);

// What a video file's first video stream declares: codec name ("h264", "ffv1", ...), frame rate
// (average, frames per second) and size. InputError naming the file when it cannot be opened.
struct VideoInfo {
  std::string codec;
  double fps = 0;
  int width = 0, height = 0;
};
VideoInfo probe_video(const std::string& path);

// Decodes every frame of the first video stream to RGB: [F, H, W, 3] f32 in [0, 1]. InputError
// naming the file when it cannot be opened or decoded; Unsupported without FFmpeg.
at::Tensor load_video(const std::string& path);

}  // namespace ditbench
