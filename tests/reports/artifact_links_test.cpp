// The report's links to each config's video and frames, and the external quality reference.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "harness/record.h"
#include "reports/markdown.h"

namespace ditbench {
namespace {

ResultRecord record(const std::string& id, bool baseline) {
  ResultRecord r;
  r.suite = "s";
  r.config_id = id;
  r.baseline = baseline;
  r.status = RunStatus::kOk;
  return r;
}

TEST(ArtifactLinks, ReportLinksVideosFramesAndNamesTheReference) {
  std::vector<ResultRecord> records = {record("cache=none", true), record("cache=fbcache", false)};
  records[0].artifacts = ArtifactsRecord{"frames/a.safetensors", "videos/a.mp4", std::nullopt,
                                         std::nullopt, "frames/a/"};
  records[1].artifacts = ArtifactsRecord{"frames/b.safetensors", std::nullopt, std::nullopt,
                                         "this build has no FFmpeg: no video", std::nullopt};
  QualityRecord q;
  q.reference = "/data/ref.mp4";
  records[1].quality = q;
  const std::string report = markdown_report(records);
  EXPECT_NE(report.find("## Frames and videos"), std::string::npos) << report;
  EXPECT_NE(report.find("Quality reference: `/data/ref.mp4`"), std::string::npos) << report;
  EXPECT_NE(report.find("- `cache=none`: [video](videos/a.mp4) [frames](frames/a/) "
                        "[exact frames](frames/a.safetensors)\n"),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("- `cache=fbcache`: [exact frames](frames/b.safetensors) (this build has "
                        "no FFmpeg: no video)\n"),
            std::string::npos)
      << report;
}

TEST(ArtifactLinks, NoSectionWithoutArtifactsOrExternalReference) {
  std::vector<ResultRecord> records = {record("cache=none", true)};
  QualityRecord q;  // against the baseline
  records[0].quality = q;
  records[0].artifacts = ArtifactsRecord{};
  EXPECT_EQ(markdown_report(records).find("Frames and videos"), std::string::npos);
}

}  // namespace
}  // namespace ditbench
