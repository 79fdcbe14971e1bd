#include "harness/artifacts.h"

#include <vector>

#include "metrics/frames.h"
#include "metrics/quality.h"
#include "metrics/video.h"
#include "models/common/error.h"

namespace ditbench {
namespace fs = std::filesystem;

namespace {

// Paths under the results folder are recorded relative to it, with '/' separators, so a report
// can link them and the folder can move.
std::string relative_to(const fs::path& path, const fs::path& out_dir) {
  return fs::relative(path, out_dir).generic_string();
}

bool opencv_available() {
#ifdef DITBENCH_HAS_OPENCV
  return true;
#else
  return false;
#endif
}

std::string join_notes(const std::vector<std::string>& notes) {
  std::string out;
  for (const auto& n : notes) out += (out.empty() ? "" : "; ") + n;
  return out;
}

}  // namespace

ArtifactsRecord save_frame_artifacts(const fs::path& out_dir, const std::string& name,
                                     const at::Tensor& frames, double fps, bool exact,
                                     bool viewable) {
  ArtifactsRecord record;
  std::vector<std::string> notes;
  const fs::path frames_dir = out_dir / "frames";
  if (exact || viewable) {
    fs::create_directories(frames_dir);
    const fs::path path = frames_dir / (name + ".safetensors");
    save_frames_safetensors(path.string(), frames);
    record.frames = relative_to(path, out_dir);
  }
  if (viewable && opencv_available()) {
    const fs::path folder = frames_dir / name;
    save_frames_png(folder.string(), frames);
    record.png = relative_to(folder, out_dir) + "/";
  } else if (viewable) {
    notes.push_back("this build has no OpenCV: frames saved as safetensors only, no PNG");
  }
  if (viewable && video_io_available()) {
    fs::create_directories(out_dir / "videos");
    const auto video = save_video((out_dir / "videos" / (name + ".mp4")).string(), frames, fps);
    record.video = relative_to(video.path, out_dir);
    if (video.codec != "h264") {
      notes.push_back("this build's FFmpeg has no H.264 encoder: lossless " + video.codec +
                      " video in Matroska");
    }
  } else if (viewable) {
    notes.push_back("this build has no FFmpeg: no video, frames saved as safetensors");
  }
  if (!notes.empty()) record.note = join_notes(notes);
  return record;
}

QualityReference::QualityReference(const Suite& suite) : suite_file_(suite.file.string()) {
  const RunSettings& s = suite.settings;
  if (!s.reference) return;
  source_ = *s.reference;
  resize_ = s.reference_resize;
  const std::string where = suite_file_ + ": /reference: ";
  try {
    frames_ = load_frames(source_);
  } catch (const std::runtime_error& e) {  // InputError, or Unsupported without FFmpeg/OpenCV
    throw InputError(where + e.what());
  }
  try {
    // What the suite's pipelines decode: [frames, height, width, RGB].
    frames_ = fit_reference_frames(frames_, {s.frames, s.height, s.width, 3}, resize_, source_);
  } catch (const InputError& e) {
    throw InputError(where + e.what() +
                     (resize_ ? "" : "; set \"reference_resize\": true to resize the reference"));
  }
}

std::optional<QualityRecord> QualityReference::score(const at::Tensor& frames,
                                                     const at::Tensor& baseline) const {
  at::Tensor reference = baseline;
  if (external()) {
    // The generated shape was checked when the reference was loaded; fit again in case a
    // pipeline decodes another shape than the suite asked for.
    reference = fit_reference_frames(frames_, frames.sizes(), resize_,
                                     suite_file_ + ": /reference: " + source_);
  }
  if (!reference.defined()) return std::nullopt;
  const FrameQuality q = compare_frames(reference, frames);
  QualityRecord record;
  record.reference = external() ? source_ : "baseline";
  record.identical = q.identical;
  if (!q.identical) {
    record.psnr_mean = q.psnr_mean;
    record.psnr_min = q.psnr_min;
  }
  record.ssim_mean = q.ssim_mean;
  record.ssim_min = q.ssim_min;
  return record;
}

}  // namespace ditbench
