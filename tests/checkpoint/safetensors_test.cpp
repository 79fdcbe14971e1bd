// SafetensorsFile, load_safetensors and save_safetensors: round trips for every dtype, files
// written by Python's safetensors, zero-copy views, and one test per kind of malformed file.
#include "models/checkpoint/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "models/common/error.h"
#include "test_util.h"

namespace ditbench {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
}

// A safetensors file by hand: little-endian header length, header text, `buffer_size` data bytes.
void write_raw(const std::string& path, const std::string& header, size_t buffer_size,
               uint64_t header_len_override = 0) {
  const uint64_t len = header_len_override ? header_len_override : header.size();
  std::string bytes(reinterpret_cast<const char*>(&len), 8);
  bytes += header;
  bytes.append(buffer_size, '\0');
  write_bytes(path, bytes);
}

// Tensors with known values in every supported dtype.
std::map<std::string, at::Tensor> every_dtype() {
  at::manual_seed(7);
  const auto values = at::randn({3, 5}, at::kFloat);
  const auto ints = at::arange(-7, 8, at::kLong).reshape({3, 5});
  return {
      {"f64", values.to(at::kDouble)},
      {"f32", values},
      {"f16", values.to(at::kHalf)},
      {"bf16", values.to(at::kBFloat16)},
      {"i64", ints * 1000000000000LL},
      {"i32", ints.to(at::kInt) * 100000},
      {"i16", ints.to(at::kShort) * 1000},
      {"i8", ints.to(at::kChar)},
      {"u8", (ints + 7).to(at::kByte) * 17},
      {"bool", ints.remainder(3).eq(0)},
      {"f8_e4m3", values.to(at::kFloat8_e4m3fn)},
      {"f8_e5m2", values.to(at::kFloat8_e5m2)},
      {"scalar", at::scalar_tensor(2.5, at::kFloat)},
      {"empty", at::zeros({0, 4}, at::kFloat)},
      {"non_contiguous", values.t()},  // written contiguous
  };
}

// Bitwise equality that works for dtypes ATen cannot compare (fp8).
bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  const auto ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.numel() * ac.element_size()) == 0;
}

TEST(Safetensors, RoundTripEveryDtype) {
  TempDir dir;
  const auto path = dir.file("all.safetensors");
  const auto tensors = every_dtype();
  save_safetensors(path, tensors, {{"format", "pt"}, {"note", "round trip"}});

  const auto loaded = load_safetensors(path);
  ASSERT_EQ(loaded.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(loaded.count(name));
    EXPECT_TRUE(same_bits(loaded.at(name), t));
    EXPECT_TRUE(loaded.at(name).is_contiguous());
  }
  // Values, not just bits, for the dtypes ATen compares.
  EXPECT_TRUE(at::equal(loaded.at("bf16"), tensors.at("bf16")));
  EXPECT_TRUE(at::equal(loaded.at("bool"), tensors.at("bool")));
  EXPECT_EQ(loaded.at("scalar").dim(), 0);
  EXPECT_EQ(loaded.at("scalar").item<float>(), 2.5f);

  SafetensorsFile file(path);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_EQ(file.metadata().at("note"), "round trip");
  EXPECT_EQ(file.dtype("bf16"), at::kBFloat16);
  EXPECT_EQ(file.dtype("f8_e4m3"), at::kFloat8_e4m3fn);
  EXPECT_EQ(file.shape("non_contiguous"), (std::vector<int64_t>{5, 3}));
  EXPECT_EQ(file.shape("empty"), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(file.nbytes("f64"), 15u * 8u);
  EXPECT_FALSE(fs::exists(path + ".partial"));
}

// tests/data/checkpoint/python_dtypes.safetensors was written by safetensors.torch.save_file with
// a = torch.arange(6).reshape(2, 3): "f64".."i8" = (a - 2).to(dtype), "u8" = a.to(uint8),
// "bool" = a % 2 == 1, "f8_e4m3"/"f8_e5m2" = (a * 0.5 - 1).to(fp8), "scalar" = tensor(3.5),
// "empty" = zeros(0, 4), metadata {"format": "pt", "producer": "python"}.
TEST(Safetensors, ReadsFileWrittenByPython) {
  SafetensorsFile file(testing::source_dir() + "/tests/data/checkpoint/python_dtypes.safetensors");
  EXPECT_EQ(file.keys(),
            (std::vector<std::string>{"bf16", "bool", "empty", "f16", "f32", "f64", "f8_e4m3",
                                      "f8_e5m2", "i16", "i32", "i64", "i8", "scalar", "u8"}));
  EXPECT_EQ(file.metadata().at("producer"), "python");
  const auto a = at::arange(6, at::kDouble).reshape({2, 3});
  for (const char* name : {"f64", "f32", "f16", "bf16", "i64", "i32", "i16", "i8"}) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(at::equal(file.tensor(name).to(at::kDouble), a - 2));
  }
  EXPECT_EQ(file.dtype("i16"), at::kShort);
  EXPECT_TRUE(at::equal(file.tensor("u8").to(at::kDouble), a));
  EXPECT_EQ(file.dtype("bool"), at::kBool);
  EXPECT_TRUE(at::equal(file.tensor("bool"), a.remainder(2).eq(1)));
  EXPECT_EQ(file.dtype("f8_e5m2"), at::kFloat8_e5m2);
  for (const char* name : {"f8_e4m3", "f8_e5m2"})
    EXPECT_TRUE(at::equal(file.tensor(name).to(at::kDouble), a * 0.5 - 1)) << name;
  EXPECT_EQ(file.tensor("scalar").dim(), 0);
  EXPECT_EQ(file.tensor("scalar").item<float>(), 3.5f);
  EXPECT_EQ(file.tensor("empty").sizes(), (at::IntArrayRef{0, 4}));
}

TEST(Safetensors, TensorIsZeroCopyViewOfTheMapping) {
  TempDir dir;
  const auto path = dir.file("view.safetensors");
  const auto weights = at::randn({64, 32}, at::kFloat);
  save_safetensors(path, {{"w", weights}, {"b", at::randn({7}, at::kHalf)}});

  at::Tensor view;
  {
    SafetensorsFile file(path);
    view = file.tensor("w");
    const auto* begin = file.data_begin();
    const auto* data = static_cast<const uint8_t*>(view.data_ptr());
    const auto file_size = fs::file_size(path);
    EXPECT_GE(data, begin);
    EXPECT_LE(data + weights.numel() * 4, begin + file_size);
    EXPECT_EQ(file.tensor("w").data_ptr(), view.data_ptr());  // same bytes, no copy
  }
  // The view keeps the mapping alive after the file object is gone.
  EXPECT_TRUE(at::equal(view, weights));
}

TEST(Safetensors, UnknownTensorNameNamesFileAndTensor) {
  TempDir dir;
  const auto path = dir.file("one.safetensors");
  save_safetensors(path, {{"w", at::ones({2})}});
  SafetensorsFile file(path);
  EXPECT_FALSE(file.contains("nope"));
  try {
    file.tensor("nope");
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("one.safetensors"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
}

TEST(Safetensors, SaveRejectsUnsupportedDtype) {
  TempDir dir;
  const auto path = dir.file("complex.safetensors");
  EXPECT_THROW(save_safetensors(path, {{"z", at::zeros({2}, at::kComplexFloat)}}), InputError);
  EXPECT_FALSE(fs::exists(path));
}

// ---- malformed files: each must be an InputError naming the file (and the tensor) ----

struct Malformed {
  std::string case_name;
  std::string header;  // JSON text (or garbage)
  size_t buffer_size = 0;
  std::string tensor;  // must appear in the message; empty where no tensor is at fault
  std::string reason;  // a phrase of the message that says what is wrong
  uint64_t header_len_override = 0;
};

class MalformedFile : public ::testing::TestWithParam<Malformed> {};

TEST_P(MalformedFile, ThrowsInputErrorNamingFileAndTensor) {
  const auto& c = GetParam();
  TempDir dir;
  const auto path = dir.file(c.case_name + ".safetensors");
  write_raw(path, c.header, c.buffer_size, c.header_len_override);
  try {
    SafetensorsFile file(path);
    FAIL() << "opened a malformed file";
  } catch (const InputError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(c.case_name + ".safetensors"), std::string::npos) << message;
    if (!c.tensor.empty())
      EXPECT_NE(message.find("'" + c.tensor + "'"), std::string::npos) << message;
    EXPECT_NE(message.find(c.reason), std::string::npos) << message;
  }
}

const std::string kGood = R"("dtype": "F32", "shape": [2], "data_offsets": [0, 8])";

INSTANTIATE_TEST_SUITE_P(
    Safetensors, MalformedFile,
    ::testing::Values(
        Malformed{"header_past_end", "{}", 0, "", "past the end", 1000},
        Malformed{"absurd_header_length", "{}", 0, "", "absurdly large", 1ull << 62},
        Malformed{"invalid_json", "{\"w\": {\"dtype\": ", 0, "", "not valid JSON"},
        Malformed{"header_not_object", "[1, 2]", 0, "", "not a JSON object"},
        Malformed{"entry_not_object", R"({"weight": 5})", 0, "weight", "not an object"},
        Malformed{"missing_dtype", R"({"w1": {"shape": [2], "data_offsets": [0, 8]}})", 8, "w1",
                  "missing 'dtype'"},
        Malformed{"missing_shape", R"({"w2": {"dtype": "F32", "data_offsets": [0, 8]}})", 8, "w2",
                  "missing 'shape'"},
        Malformed{"missing_offsets", R"({"w3": {"dtype": "F32", "shape": [2]}})", 8, "w3",
                  "missing 'data_offsets'"},
        Malformed{"dtype_not_string",
                  R"({"w4": {"dtype": 32, "shape": [2], "data_offsets": [0, 8]}})", 8, "w4",
                  "'dtype' is not a string"},
        Malformed{"shape_not_array",
                  R"({"w5": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}})", 8, "w5",
                  "'shape' is not an array"},
        Malformed{"shape_float",
                  R"({"w6": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}})", 8, "w6",
                  "non-integer"},
        Malformed{"offsets_one_number",
                  R"({"w7": {"dtype": "F32", "shape": [2], "data_offsets": [8]}})", 8, "w7",
                  "array of two integers"},
        Malformed{"offsets_strings",
                  R"({"w8": {"dtype": "F32", "shape": [2], "data_offsets": ["0", "8"]}})", 8, "w8",
                  "array of two integers"},
        Malformed{"negative_offsets",
                  R"({"w9": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", 8, "w9",
                  "negative"},
        Malformed{"unknown_dtype",
                  R"({"w10": {"dtype": "F128", "shape": [2], "data_offsets": [0, 32]}})", 32, "w10",
                  "unknown dtype 'F128'"},
        Malformed{"negative_dim",
                  R"({"w11": {"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 8]}})", 8,
                  "w11", "negative dimension"},
        Malformed{"byte_size_mismatch",
                  R"({"w12": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})", 24,
                  "w12", "needs 24 bytes"},
        Malformed{"offsets_past_buffer",
                  R"({"w13": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4, "w13",
                  "past the data buffer"},
        Malformed{"begin_after_end",
                  R"({"w14": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8, "w14",
                  "begin is past end"},
        Malformed{"overlapping",
                  R"({"first": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "second": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                  12, "second", "overlaps tensor 'first'"},
        Malformed{"duplicate_name", "{\"dup\": {" + kGood + "}, \"dup\": {" + kGood + "}}", 8,
                  "dup", "appears twice"},
        Malformed{
            "duplicate_field",
            R"({"w15": {"dtype": "F32", "dtype": "F16", "shape": [2], "data_offsets": [0, 8]}})", 8,
            "w15", "field 'dtype' appears twice"},
        Malformed{"metadata_not_string", R"({"__metadata__": {"epoch": 3}})", 0, "epoch",
                  "not a string"},
        Malformed{"metadata_not_object", R"({"__metadata__": [1]})", 0, "", "__metadata__"}),
    [](const ::testing::TestParamInfo<Malformed>& info) { return info.param.case_name; });

TEST(Safetensors, FileShorterThanEightBytes) {
  TempDir dir;
  const auto path = dir.file("tiny.safetensors");
  write_bytes(path, "abc");
  try {
    SafetensorsFile file(path);
    FAIL() << "opened a 3-byte file";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tiny.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("shorter than"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, MissingFileNamesIt) {
  try {
    SafetensorsFile file("/nonexistent/dir/absent.safetensors");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("absent.safetensors"), std::string::npos);
  }
}

// Empty tensors own no bytes, so several may sit at one offset without overlapping.
TEST(Safetensors, EmptyTensorsAtSameOffsetAreNotOverlapping) {
  TempDir dir;
  const auto path = dir.file("empties.safetensors");
  write_raw(path, R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
                      "b": {"dtype": "F16", "shape": [0, 3], "data_offsets": [4, 4]},
                      "c": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
            4);
  SafetensorsFile file(path);
  EXPECT_EQ(file.size(), 3u);
  EXPECT_EQ(file.tensor("b").sizes(), (at::IntArrayRef{0, 3}));
  EXPECT_EQ(file.tensor("c").item<float>(), 0.0f);
}

}  // namespace
}  // namespace ditbench
