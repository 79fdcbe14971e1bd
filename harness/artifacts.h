#pragma once
// What a config's frames become on disk (record.artifacts.frames / .video), and the quality
// reference every config is scored against: the baseline config's frames, or an external video,
// folder of frames or safetensors tensor the suite names ("reference", "reference_resize").
#include <ATen/ATen.h>

#include <filesystem>
#include <optional>
#include <string>

#include "harness/record.h"
#include "harness/suite.h"

namespace ditbench {

// Writes a config's frames under `out_dir` and returns their paths relative to it:
//   frames/<name>.safetensors   exact f32 frames (artifacts.frames): what --resume scores against
//                               and what bit-exact comparisons read; when `exact` or `viewable`
//   frames/<name>/frame_00000.png, ...   8-bit PNG per frame (artifacts.png; OpenCV), when
//                               `viewable`
//   videos/<name>.mp4           H.264 at `fps` (artifacts.video; FFmpeg), when `viewable`;
//                               videos/<name>.mkv (lossless FFV1) where libavcodec has no libx264
// artifacts.note says what this build could not write.
ArtifactsRecord save_frame_artifacts(const std::filesystem::path& out_dir, const std::string& name,
                                     const at::Tensor& frames, double fps, bool exact,
                                     bool viewable);

class QualityReference {
 public:
  // Loads the suite's external reference once, when it names one, and checks it against the
  // frames the suite generates ([frames, height, width, 3]) so that a mismatch stops the run
  // before any config ran: InputError naming the suite file, /reference and both shapes, unless
  // the suite asks for a resize.
  explicit QualityReference(const Suite& suite);

  bool external() const { return frames_.defined(); }

  // PSNR and SSIM of `frames` against the external reference (resized to their shape when the
  // suite asks; record reference = its path) or else against `baseline` (reference "baseline");
  // nullopt when there is neither.
  std::optional<QualityRecord> score(const at::Tensor& frames, const at::Tensor& baseline) const;

 private:
  std::string suite_file_;
  std::string source_;
  bool resize_ = false;
  at::Tensor frames_;  // [F, H, W, C] f32, undefined without an external reference
};

}  // namespace ditbench
