#include "metrics/video.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "metrics/frames.h"
#include "models/common/error.h"

#ifdef DITBENCH_HAS_FFMPEG
#include <cmath>
#include <memory>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/log.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}
#endif

namespace ditbench {
namespace {

std::string lower_extension(const std::string& path) {
  auto extension = std::filesystem::path(path).extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return extension;
}

std::string shape_string(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

#ifdef DITBENCH_HAS_FFMPEG
std::string av_error_text(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, buf, sizeof buf);
  return buf;
}

// libx264 and the demuxers log progress at INFO level to stderr; a benchmark's output is its
// records, so only errors get through.
void quiet_ffmpeg_logs() {
  static const bool once = [] {
    av_log_set_level(AV_LOG_ERROR);
    return true;
  }();
  (void)once;
}

struct FormatOutputDeleter {
  void operator()(AVFormatContext* f) const {
    if (f && f->pb && !(f->oformat->flags & AVFMT_NOFILE)) avio_closep(&f->pb);
    avformat_free_context(f);
  }
};
struct FormatInputDeleter {
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
};
struct CodecContextDeleter {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FrameDeleter {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketDeleter {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsDeleter {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};
using OutputFormat = std::unique_ptr<AVFormatContext, FormatOutputDeleter>;
using InputFormat = std::unique_ptr<AVFormatContext, FormatInputDeleter>;
using CodecContext = std::unique_ptr<AVCodecContext, CodecContextDeleter>;
using Frame = std::unique_ptr<AVFrame, FrameDeleter>;
using Packet = std::unique_ptr<AVPacket, PacketDeleter>;
using Scaler = std::unique_ptr<SwsContext, SwsDeleter>;

// Accurate rounding and full chroma resolution in the RGB <-> YUV conversions: the default fast
// paths cost a dB or two of PSNR on exactly the comparisons this harness makes.
constexpr int kScaleFlags =
    SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP | SWS_BITEXACT;

// Moves every packet the encoder has ready into the file.
void write_packets(AVCodecContext* encoder, AVFormatContext* format, AVStream* stream,
                   AVPacket* packet, const std::string& path) {
  while (true) {
    const int rc = avcodec_receive_packet(encoder, packet);
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
    if (rc < 0) throw std::runtime_error(path + ": encoding failed: " + av_error_text(rc));
    av_packet_rescale_ts(packet, encoder->time_base, stream->time_base);
    packet->stream_index = stream->index;
    const int written = av_interleaved_write_frame(format, packet);
    if (written < 0) throw InputError(path + ": cannot write the video: " + av_error_text(written));
  }
}

bool is_yuv(AVPixelFormat format) {
  const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(format);
  return desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB) && desc->nb_components >= 3;
}
#endif

}  // namespace

bool video_io_available() {
#ifdef DITBENCH_HAS_FFMPEG
  return true;
#else
  return false;
#endif
}

bool h264_encoder_available() {
#ifdef DITBENCH_HAS_FFMPEG
  return avcodec_find_encoder_by_name("libx264") != nullptr;
#else
  return false;
#endif
}

bool is_video_path(const std::string& path) {
  static const std::vector<std::string> extensions = {".mp4", ".mkv",  ".mov",
                                                      ".avi", ".webm", ".m4v"};
  const auto extension = lower_extension(path);
  return std::find(extensions.begin(), extensions.end(), extension) != extensions.end();
}

WrittenVideo save_video(const std::string& path, const at::Tensor& frames, double fps,
                        VideoCodec codec) {
  if (frames.dim() != 4 || (frames.size(3) != 1 && frames.size(3) != 3) || frames.size(0) < 1) {
    throw InputError("video " + path + ": expected FHWC frames with 1 or 3 channels, got " +
                     shape_string(frames));
  }
  if (!(fps > 0) || !std::isfinite(fps)) {
    throw InputError("video " + path + ": frame rate must be positive, got " + std::to_string(fps));
  }
#ifdef DITBENCH_HAS_FFMPEG
  quiet_ffmpeg_logs();
  const AVCodec* encoder_codec = nullptr;
  WrittenVideo written;
  written.path = path;
  if (codec != VideoCodec::kFFV1) encoder_codec = avcodec_find_encoder_by_name("libx264");
  if (encoder_codec) {
    written.codec = "h264";
  } else if (codec == VideoCodec::kH264) {
    throw Unsupported("video " + path + ": this build's libavcodec has no libx264 encoder");
  } else {
    encoder_codec = avcodec_find_encoder(AV_CODEC_ID_FFV1);
    if (!encoder_codec) throw Unsupported("video " + path + ": libavcodec has no FFV1 encoder");
    written.codec = "ffv1";
    written.lossless = true;
    written.path = std::filesystem::path(path).replace_extension(".mkv").string();
  }
  const std::string& out_path = written.path;

  // [F, H, W, 3] uint8, RGB.
  at::Tensor bytes = quantize_frames(frames);
  if (bytes.size(3) == 1) bytes = bytes.expand({-1, -1, -1, 3}).contiguous();
  const int height = static_cast<int>(bytes.size(1)), width = static_cast<int>(bytes.size(2));

  AVFormatContext* raw_format = nullptr;
  int rc = avformat_alloc_output_context2(&raw_format, nullptr, nullptr, out_path.c_str());
  if (rc < 0 || !raw_format) {
    throw InputError(out_path + ": no container format for this extension (" + av_error_text(rc) +
                     ")");
  }
  OutputFormat format(raw_format);
  AVStream* stream = avformat_new_stream(format.get(), nullptr);
  if (!stream) throw std::runtime_error(out_path + ": cannot add a video stream");
  CodecContext encoder(avcodec_alloc_context3(encoder_codec));
  if (!encoder) throw std::runtime_error(out_path + ": cannot allocate the encoder");

  const AVRational rate = av_d2q(fps, 100000);
  encoder->width = width;
  encoder->height = height;
  encoder->time_base = av_inv_q(rate);
  encoder->framerate = rate;
  if (written.codec == "h264") {
    // 4:2:0 needs even sizes; 4:4:4 keeps odd ones (High 4:4:4 profile).
    encoder->pix_fmt =
        (width % 2 == 0 && height % 2 == 0) ? AV_PIX_FMT_YUV420P : AV_PIX_FMT_YUV444P;
    encoder->gop_size = 12;
    encoder->color_range = AVCOL_RANGE_MPEG;
    encoder->colorspace = AVCOL_SPC_SMPTE170M;
    encoder->color_primaries = AVCOL_PRI_SMPTE170M;
    encoder->color_trc = AVCOL_TRC_SMPTE170M;
    av_opt_set(encoder->priv_data, "crf", "16", 0);
    av_opt_set(encoder->priv_data, "preset", "medium", 0);
  } else {
    encoder->pix_fmt = AV_PIX_FMT_0RGB32;  // 8-bit RGB as FFV1 takes it (no 8-bit planar)
    encoder->level = 3;                    // FFV1 version 3: per-slice CRCs, multithreaded
  }
  if (format->oformat->flags & AVFMT_GLOBALHEADER) encoder->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if ((rc = avcodec_open2(encoder.get(), encoder_codec, nullptr)) < 0) {
    throw std::runtime_error(out_path + ": cannot open the " + written.codec +
                             " encoder: " + av_error_text(rc));
  }
  if ((rc = avcodec_parameters_from_context(stream->codecpar, encoder.get())) < 0) {
    throw std::runtime_error(out_path + ": " + av_error_text(rc));
  }
  stream->time_base = encoder->time_base;
  stream->avg_frame_rate = rate;
  if (!(format->oformat->flags & AVFMT_NOFILE)) {
    if ((rc = avio_open(&format->pb, out_path.c_str(), AVIO_FLAG_WRITE)) < 0) {
      throw InputError(out_path + ": cannot open for writing: " + av_error_text(rc));
    }
  }
  if ((rc = avformat_write_header(format.get(), nullptr)) < 0) {
    throw InputError(out_path + ": cannot write the container header: " + av_error_text(rc));
  }

  Scaler scaler(sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, encoder->pix_fmt,
                               kScaleFlags, nullptr, nullptr, nullptr));
  if (!scaler) throw std::runtime_error(out_path + ": no RGB conversion to the encoder's format");
  if (is_yuv(encoder->pix_fmt)) {
    // RGB (full range) to BT.601 limited range, matching the stream's tags.
    const int* bt601 = sws_getCoefficients(SWS_CS_ITU601);
    sws_setColorspaceDetails(scaler.get(), bt601, 1, bt601, 0, 0, 1 << 16, 1 << 16);
  }
  Frame frame(av_frame_alloc());
  Packet packet(av_packet_alloc());
  if (!frame || !packet) throw std::runtime_error(out_path + ": out of memory");
  frame->format = encoder->pix_fmt;
  frame->width = width;
  frame->height = height;
  if ((rc = av_frame_get_buffer(frame.get(), 0)) < 0) {
    throw std::runtime_error(out_path + ": " + av_error_text(rc));
  }
  for (int64_t f = 0; f < bytes.size(0); ++f) {
    if ((rc = av_frame_make_writable(frame.get())) < 0) {
      throw std::runtime_error(out_path + ": " + av_error_text(rc));
    }
    at::Tensor rgb = bytes[f];  // [H, W, 3], rows contiguous
    const uint8_t* source[1] = {rgb.data_ptr<uint8_t>()};
    const int source_stride[1] = {3 * width};
    sws_scale(scaler.get(), source, source_stride, 0, height, frame->data, frame->linesize);
    frame->pts = f;
    if ((rc = avcodec_send_frame(encoder.get(), frame.get())) < 0) {
      throw std::runtime_error(out_path + ": encoding failed: " + av_error_text(rc));
    }
    write_packets(encoder.get(), format.get(), stream, packet.get(), out_path);
  }
  avcodec_send_frame(encoder.get(), nullptr);  // drain the encoder's delayed frames
  write_packets(encoder.get(), format.get(), stream, packet.get(), out_path);
  if ((rc = av_write_trailer(format.get())) < 0) {
    throw InputError(out_path + ": cannot finish the video: " + av_error_text(rc));
  }
  return written;
#else
  (void)codec;
  throw Unsupported("writing video " + path + " needs FFmpeg, which this build lacks");
#endif
}

#ifdef DITBENCH_HAS_FFMPEG
namespace {

struct OpenedVideo {
  InputFormat format;
  int stream_index = -1;
  const AVCodec* decoder_codec = nullptr;
};

// The file opened, its streams read, its best video stream found.
OpenedVideo open_video(const std::string& path) {
  quiet_ffmpeg_logs();
  OpenedVideo video;
  AVFormatContext* raw_format = nullptr;
  int rc = avformat_open_input(&raw_format, path.c_str(), nullptr, nullptr);
  if (rc < 0) throw InputError(path + ": cannot open as a video: " + av_error_text(rc));
  video.format.reset(raw_format);
  if ((rc = avformat_find_stream_info(video.format.get(), nullptr)) < 0) {
    throw InputError(path + ": cannot read the video's streams: " + av_error_text(rc));
  }
  video.stream_index =
      av_find_best_stream(video.format.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &video.decoder_codec, 0);
  if (video.stream_index < 0 || !video.decoder_codec) {
    throw InputError(path + ": no video stream this build can decode (" +
                     av_error_text(video.stream_index) + ")");
  }
  return video;
}

}  // namespace
#endif

VideoInfo probe_video(const std::string& path) {
#ifdef DITBENCH_HAS_FFMPEG
  const OpenedVideo video = open_video(path);
  const AVStream* stream = video.format->streams[video.stream_index];
  VideoInfo info;
  info.codec = avcodec_get_name(stream->codecpar->codec_id);
  info.fps = stream->avg_frame_rate.den ? av_q2d(stream->avg_frame_rate) : 0.0;
  info.width = stream->codecpar->width;
  info.height = stream->codecpar->height;
  return info;
#else
  throw Unsupported("reading video " + path + " needs FFmpeg, which this build lacks");
#endif
}

at::Tensor load_video(const std::string& path) {
#ifdef DITBENCH_HAS_FFMPEG
  OpenedVideo video = open_video(path);
  AVFormatContext* const format = video.format.get();
  const int stream_index = video.stream_index;
  const AVCodec* const decoder_codec = video.decoder_codec;
  int rc = 0;
  CodecContext decoder(avcodec_alloc_context3(decoder_codec));
  if (!decoder) throw std::runtime_error(path + ": cannot allocate the decoder");
  avcodec_parameters_to_context(decoder.get(), format->streams[stream_index]->codecpar);
  if ((rc = avcodec_open2(decoder.get(), decoder_codec, nullptr)) < 0) {
    throw InputError(path + ": cannot open the " + std::string(decoder_codec->name) +
                     " decoder: " + av_error_text(rc));
  }

  Frame frame(av_frame_alloc());
  Packet packet(av_packet_alloc());
  if (!frame || !packet) throw std::runtime_error(path + ": out of memory");
  Scaler scaler;
  int scaler_width = 0, scaler_height = 0, scaler_format = -1;
  std::vector<at::Tensor> frames;  // each [H, W, 3] uint8

  // Converts every frame the decoder has ready to RGB.
  auto receive_frames = [&] {
    while (true) {
      rc = avcodec_receive_frame(decoder.get(), frame.get());
      if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
      if (rc < 0) throw InputError(path + ": decoding failed: " + av_error_text(rc));
      if (!frames.empty() && (frame->width != scaler_width || frame->height != scaler_height)) {
        throw InputError(path + ": frame " + std::to_string(frames.size()) + " is " +
                         std::to_string(frame->width) + "x" + std::to_string(frame->height) +
                         ", earlier frames " + std::to_string(scaler_width) + "x" +
                         std::to_string(scaler_height) + "; frames must share one size");
      }
      if (!scaler || frame->format != scaler_format) {
        scaler.reset(sws_getContext(
            frame->width, frame->height, static_cast<AVPixelFormat>(frame->format), frame->width,
            frame->height, AV_PIX_FMT_RGB24, kScaleFlags, nullptr, nullptr, nullptr));
        if (!scaler) throw InputError(path + ": no RGB conversion for this video's pixel format");
        const auto pixel_format = static_cast<AVPixelFormat>(frame->format);
        if (is_yuv(pixel_format)) {
          // The stream's own matrix and range: BT.709 for HD material, BT.601 otherwise.
          const int matrix = frame->colorspace == AVCOL_SPC_BT709 ? SWS_CS_ITU709 : SWS_CS_ITU601;
          const bool full_range =
              frame->color_range == AVCOL_RANGE_JPEG || pixel_format == AV_PIX_FMT_YUVJ420P ||
              pixel_format == AV_PIX_FMT_YUVJ422P || pixel_format == AV_PIX_FMT_YUVJ444P;
          sws_setColorspaceDetails(scaler.get(), sws_getCoefficients(matrix), full_range ? 1 : 0,
                                   sws_getCoefficients(SWS_CS_ITU601), 1, 0, 1 << 16, 1 << 16);
        }
        scaler_width = frame->width;
        scaler_height = frame->height;
        scaler_format = frame->format;
      }
      at::Tensor rgb = at::empty({frame->height, frame->width, 3}, at::kByte);
      uint8_t* target[1] = {rgb.data_ptr<uint8_t>()};
      const int target_stride[1] = {3 * frame->width};
      sws_scale(scaler.get(), frame->data, frame->linesize, 0, frame->height, target,
                target_stride);
      frames.push_back(rgb);
      av_frame_unref(frame.get());
    }
  };

  while ((rc = av_read_frame(format, packet.get())) >= 0) {
    if (packet->stream_index == stream_index) {
      const int sent = avcodec_send_packet(decoder.get(), packet.get());
      av_packet_unref(packet.get());
      if (sent < 0) throw InputError(path + ": corrupt video data: " + av_error_text(sent));
      receive_frames();
    } else {
      av_packet_unref(packet.get());
    }
  }
  if (rc != AVERROR_EOF) throw InputError(path + ": reading failed: " + av_error_text(rc));
  avcodec_send_packet(decoder.get(), nullptr);  // flush the frames the decoder holds back
  receive_frames();
  if (frames.empty()) throw InputError(path + ": the video holds no frames");
  return at::stack(frames).to(at::kFloat).div_(255.0);  // [F, H, W, 3]
#else
  throw Unsupported("reading video " + path + " needs FFmpeg, which this build lacks");
#endif
}

}  // namespace ditbench
