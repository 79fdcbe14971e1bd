#include "models/checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "models/common/error.h"

namespace ditbench {
namespace {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#error "safetensors data is little-endian; zero-copy views need a little-endian host"
#endif

// The reference implementation refuses headers above 100 MB; a larger length means a corrupt or
// foreign file, and refusing it early avoids parsing gigabytes of tensor data as JSON.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const std::vector<std::pair<std::string, at::ScalarType>>& dtype_table() {
  static const std::vector<std::pair<std::string, at::ScalarType>> table = {
      {"F64", at::kDouble},
      {"F32", at::kFloat},
      {"F16", at::kHalf},
      {"BF16", at::kBFloat16},
      {"I64", at::kLong},
      {"I32", at::kInt},
      {"I16", at::kShort},
      {"I8", at::kChar},
      {"U8", at::kByte},
      {"U16", at::kUInt16},
      {"U32", at::kUInt32},
      {"U64", at::kUInt64},
      {"BOOL", at::kBool},
      {"F8_E4M3", at::kFloat8_e4m3fn},
      {"F8_E5M2", at::kFloat8_e5m2},
  };
  return table;
}

std::optional<at::ScalarType> dtype_from_name(const std::string& name) {
  for (const auto& [n, t] : dtype_table())
    if (n == name) return t;
  return std::nullopt;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << ']';
  return s.str();
}

}  // namespace

std::string safetensors_dtype_name(at::ScalarType dtype) {
  for (const auto& [n, t] : dtype_table())
    if (t == dtype) return n;
  throw InputError(std::string("dtype ") + c10::toString(dtype) +
                   " cannot be stored in a safetensors file");
}

// The whole file mapped read-only; unmapped when the last SafetensorsFile or tensor view using it
// goes away.
struct SafetensorsFile::Mapping {
  const uint8_t* base = nullptr;
  uint64_t size = 0;
  Mapping(const uint8_t* b, uint64_t s) : base(b), size(s) {}
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (base) munmap(const_cast<uint8_t*>(base), size);
  }
};

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  auto fail = [&](const std::string& what) { return InputError(path_ + ": " + what); };
  auto fail_tensor = [&](const std::string& name, const std::string& what) {
    return InputError(path_ + ": tensor '" + name + "': " + what);
  };

  const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw fail(std::string("cannot open safetensors file: ") + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw fail("not a regular file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    throw fail("file is " + std::to_string(file_size) +
               " bytes, shorter than the 8-byte header length of a safetensors file");
  }
  void* base = mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);  // the mapping holds its own reference to the file
  if (base == MAP_FAILED) throw fail(std::string("cannot map file: ") + std::strerror(errno));
  mapping_ = std::make_shared<const Mapping>(static_cast<const uint8_t*>(base), file_size);

  uint64_t header_len = 0;
  std::memcpy(&header_len, mapping_->base, 8);  // little-endian host (checked above)
  if (header_len > kMaxHeaderBytes)
    throw fail("header length " + std::to_string(header_len) + " is absurdly large (limit " +
               std::to_string(kMaxHeaderBytes) + "); not a safetensors file?");
  if (header_len > file_size - 8)
    throw fail("header length " + std::to_string(header_len) + " runs past the end of the file (" +
               std::to_string(file_size) + " bytes)");
  data_offset_ = 8 + header_len;
  const uint64_t buffer_size = file_size - data_offset_;

  // nlohmann keeps one of two equal keys silently; the parser callback sees every key, so track
  // the keys of each open object to report duplicates (a duplicated tensor name would otherwise
  // hide one tensor of the file).
  using json = nlohmann::json;
  std::vector<std::set<std::string>> open_objects;
  std::string current_tensor, duplicate;
  auto on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key: {
        const auto key = parsed.get<std::string>();
        if (open_objects.size() == 1) current_tensor = key;
        if (!open_objects.empty() && !open_objects.back().insert(key).second && duplicate.empty())
          duplicate = open_objects.size() == 1
                          ? "tensor '" + key + "': name appears twice in the header"
                          : "tensor '" + current_tensor + "': field '" + key + "' appears twice";
        break;
      }
      default:
        break;
    }
    return true;
  };
  const char* header_begin = reinterpret_cast<const char*>(mapping_->base + 8);
  json header;
  try {
    header = json::parse(header_begin, header_begin + header_len, on_event);
  } catch (const json::exception& e) {
    throw fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) throw fail(duplicate);
  if (!header.is_object()) throw fail("header is not a JSON object");

  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (info.is_null()) continue;
      if (!info.is_object()) throw fail("__metadata__ is not an object of strings");
      for (const auto& [key, value] : info.items()) {
        if (!value.is_string()) throw fail("__metadata__ value of '" + key + "' is not a string");
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    if (!info.is_object()) throw fail_tensor(name, "header entry is not an object");
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!info.contains(field)) throw fail_tensor(name, std::string("missing '") + field + "'");
    const auto& dtype_json = info.at("dtype");
    const auto& shape_json = info.at("shape");
    const auto& offsets_json = info.at("data_offsets");
    if (!dtype_json.is_string()) throw fail_tensor(name, "'dtype' is not a string");
    const auto dtype = dtype_from_name(dtype_json.get<std::string>());
    if (!dtype) throw fail_tensor(name, "unknown dtype '" + dtype_json.get<std::string>() + "'");
    if (!shape_json.is_array()) throw fail_tensor(name, "'shape' is not an array");
    Entry entry;
    entry.dtype = *dtype;
    uint64_t numel = 1;
    bool numel_overflow = false;
    for (const auto& dim : shape_json) {
      if (!dim.is_number_integer()) throw fail_tensor(name, "'shape' holds a non-integer");
      if (!dim.is_number_unsigned())
        throw fail_tensor(name, "negative dimension " + dim.dump() + " in 'shape'");
      const uint64_t d = dim.get<uint64_t>();
      if (d > static_cast<uint64_t>(INT64_MAX)) throw fail_tensor(name, "dimension too large");
      entry.shape.push_back(static_cast<int64_t>(d));
      numel_overflow = numel_overflow || __builtin_mul_overflow(numel, d, &numel);
    }
    if (!offsets_json.is_array() || offsets_json.size() != 2 ||
        !offsets_json[0].is_number_integer() || !offsets_json[1].is_number_integer())
      throw fail_tensor(name, "'data_offsets' is not an array of two integers");
    if (!offsets_json[0].is_number_unsigned() || !offsets_json[1].is_number_unsigned())
      throw fail_tensor(name, "negative 'data_offsets' " + offsets_json.dump());
    entry.begin = offsets_json[0].get<uint64_t>();
    entry.end = offsets_json[1].get<uint64_t>();
    const std::string where = "data_offsets " + offsets_json.dump();
    if (entry.begin > entry.end) throw fail_tensor(name, where + ": begin is past end");
    if (entry.end > buffer_size)
      throw fail_tensor(
          name, where + " run past the data buffer (" + std::to_string(buffer_size) + " bytes)");
    uint64_t nbytes = 0;
    if (numel_overflow ||
        __builtin_mul_overflow(numel, static_cast<uint64_t>(at::elementSize(entry.dtype)), &nbytes))
      throw fail_tensor(name, "shape " + shape_string(entry.shape) + " is too large");
    if (nbytes != entry.end - entry.begin)
      throw fail_tensor(name, "shape " + shape_string(entry.shape) + " of " +
                                  dtype_json.get<std::string>() + " needs " +
                                  std::to_string(nbytes) + " bytes but " + where + " hold " +
                                  std::to_string(entry.end - entry.begin));
    auto [it, inserted] = entries_.emplace(name, std::move(entry));
    if (it->second.end > it->second.begin)
      ranges.push_back({it->second.begin, it->second.end, &it->first});
  }

  // Two tensors sharing bytes would alias each other's storage; empty tensors own no bytes.
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].begin < ranges[i - 1].end)
      throw fail("tensor '" + *ranges[i].name + "' overlaps tensor '" + *ranges[i - 1].name +
                 "' in the data buffer");
}

const std::string& SafetensorsFile::path() const { return path_; }

std::vector<std::string> SafetensorsFile::keys() const {
  std::vector<std::string> keys;
  keys.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) keys.push_back(name);
  return keys;
}

bool SafetensorsFile::contains(const std::string& name) const { return entries_.count(name) > 0; }
size_t SafetensorsFile::size() const { return entries_.size(); }

const SafetensorsFile::Entry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) throw InputError(path_ + ": no tensor named '" + name + "'");
  return it->second;
}

std::vector<int64_t> SafetensorsFile::shape(const std::string& name) const {
  return entry(name).shape;
}
at::ScalarType SafetensorsFile::dtype(const std::string& name) const { return entry(name).dtype; }
uint64_t SafetensorsFile::nbytes(const std::string& name) const {
  const auto& e = entry(name);
  return e.end - e.begin;
}
const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return metadata_; }
const uint8_t* SafetensorsFile::data_begin() const { return mapping_->base + data_offset_; }

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const auto& e = entry(name);
  const auto options = at::TensorOptions().dtype(e.dtype).device(at::kCPU);
  const uint8_t* data = data_begin() + e.begin;
  if (reinterpret_cast<uintptr_t>(data) % at::elementSize(e.dtype) != 0) {
    auto owned = at::empty(e.shape, options);
    std::memcpy(owned.data_ptr(), data, e.end - e.begin);
    return owned;
  }
  // The deleter holds the mapping, so a view outlives neither its bytes nor needs the file object.
  auto mapping = mapping_;
  return at::from_blob(
      const_cast<uint8_t*>(data), e.shape, [mapping](void*) {}, options);
}

std::map<std::string, at::Tensor> load_safetensors(const std::string& path) {
  SafetensorsFile file(path);
  std::map<std::string, at::Tensor> tensors;
  for (const auto& name : file.keys())
    tensors.emplace(name, file.tensor(name).clone(at::MemoryFormat::Contiguous));
  return tensors;
}

void save_safetensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Largest elements first keeps every tensor aligned to its element size (sizes are powers of
  // two and the buffer starts 8-aligned), as the reference writer does.
  std::vector<std::pair<const std::string*, const at::Tensor*>> order;
  for (const auto& [name, t] : tensors) {
    if (name == "__metadata__")
      throw InputError(path + ": '__metadata__' is reserved and cannot name a tensor");
    if (!t.defined()) throw InputError(path + ": tensor '" + name + "' is undefined");
    if (t.layout() != at::kStrided)
      throw InputError(path + ": tensor '" + name + "' is not a dense (strided) tensor");
    try {
      safetensors_dtype_name(t.scalar_type());
    } catch (const InputError& e) {
      throw InputError(path + ": tensor '" + name + "': " + e.what());
    }
    order.emplace_back(&name, &t);
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.second->element_size() > b.second->element_size();
  });

  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : order) {
    const uint64_t nbytes = static_cast<uint64_t>(t->numel()) * t->element_size();
    header[*name] = {{"dtype", safetensors_dtype_name(t->scalar_type())},
                     {"shape", t->sizes().vec()},
                     {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // data buffer starts 8-aligned
  const uint64_t header_len = header_text.size();

  const std::string partial = path + ".partial";
  // <cstdio> rather than std::filesystem here: libtorch.so exports its own, older copies of the
  // std::filesystem operations, and some of them (remove_all) crash when called.
  auto write_fail = [&](const std::string& what) {
    std::remove(partial.c_str());
    return InputError("cannot write " + path + ": " + what);
  };
  {
    std::ofstream out(partial, std::ios::binary | std::ios::trunc);
    if (!out) throw write_fail(std::strerror(errno));
    out.write(reinterpret_cast<const char*>(&header_len), 8);
    out.write(header_text.data(), static_cast<std::streamsize>(header_text.size()));
    for (const auto& [name, t] : order) {
      // One tensor on the host at a time.
      if (t->numel() == 0) continue;
      const at::Tensor host = t->detach().to(at::kCPU).contiguous();
      out.write(static_cast<const char*>(host.data_ptr()),
                static_cast<std::streamsize>(host.numel() * host.element_size()));
    }
    out.flush();
    if (!out) throw write_fail("write failed (disk full?)");
  }
  if (std::rename(partial.c_str(), path.c_str()) != 0) throw write_fail(std::strerror(errno));
}

}  // namespace ditbench
