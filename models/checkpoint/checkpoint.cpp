#include "models/checkpoint/checkpoint.h"

#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "models/common/error.h"

namespace ditbench {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_string(at::IntArrayRef shape) {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  s << ']';
  return s.str();
}

// Files of `dir` whose names end with `suffix`, sorted.
std::vector<fs::path> files_ending_with(const fs::path& dir, const std::string& suffix) {
  std::vector<fs::path> found;
  for (const auto& item : fs::directory_iterator(dir))
    if (item.is_regular_file() && ends_with(item.path().filename().string(), suffix))
      found.push_back(item.path());
  std::sort(found.begin(), found.end());
  return found;
}

// The file a folder's weights are in: diffusers' and transformers' names first, else the only
// index or the only safetensors file there.
fs::path resolve_folder(const fs::path& dir) {
  for (const char* name :
       {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
        "model.safetensors", "model.safetensors.index.json"})
    if (fs::is_regular_file(dir / name)) return dir / name;
  const auto indexes = files_ending_with(dir, ".safetensors.index.json");
  if (indexes.size() == 1) return indexes.front();
  const auto files = files_ending_with(dir, ".safetensors");
  if (indexes.empty() && files.size() == 1) return files.front();
  if (indexes.empty() && files.empty())
    throw InputError(
        dir.string() +
        ": no checkpoint in this folder (looked for diffusion_pytorch_model.safetensors"
        ", a *.safetensors.index.json or a single *.safetensors file)");
  throw InputError(dir.string() + ": ambiguous checkpoint folder (" +
                   std::to_string(indexes.size()) + " index files, " +
                   std::to_string(files.size()) + " safetensors files); pass the file itself");
}

// Formats up to `limit` items, then a count of the rest, so a wholly wrong checkpoint (thousands
// of keys) still gives a readable message.
std::string join_truncated(const std::vector<std::string>& items, size_t limit = 12) {
  std::string out;
  for (size_t i = 0; i < items.size() && i < limit; ++i) out += (i ? ", " : "") + items[i];
  if (items.size() > limit) out += ", ... and " + std::to_string(items.size() - limit) + " more";
  return out;
}

std::string count_of(size_t n, const std::string& singular, const std::string& plural) {
  return std::to_string(n) + " " + (n == 1 ? singular : plural);
}

// Stable 64-bit hash of a parameter name (std::hash is not specified to be stable), mixed with
// the seed by splitmix64 so nearby seeds give unrelated streams.
uint64_t parameter_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  uint64_t z = seed ^ h;
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A private generator of the device's own kind, so values are drawn where the parameter lives and
// the global generator's state is left alone.
at::Generator generator_for(const at::Device& device, uint64_t seed) {
  at::Generator global = at::globalContext().defaultGenerator(device);  // shares the state
  at::Generator gen;
  {
    std::lock_guard<std::mutex> lock(global.mutex());
    gen = global.clone();
  }
  gen.set_current_seed(seed);
  return gen;
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (ec || !fs::exists(status)) throw InputError(path + ": no such file or folder");
  fs::path file = fs::is_directory(status) ? resolve_folder(path) : fs::path(path);

  Checkpoint ckpt;
  ckpt.path_ = path;
  if (!ends_with(file.string(), ".json")) {
    auto single = std::make_shared<const SafetensorsFile>(file.string());
    for (const auto& key : single->keys()) ckpt.file_index_.emplace(key, 0);
    ckpt.files_.push_back(std::move(single));
    return ckpt;
  }

  // Sharded: the index maps every key to the file holding it.
  const std::string index_path = file.string();
  std::ifstream in(index_path);
  if (!in) throw InputError(index_path + ": cannot read index file");
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(index_path + ": index is not valid JSON: " + e.what());
  }
  if (!index.is_object() || !index.contains("weight_map"))
    throw InputError(index_path + ": index has no \"weight_map\"");
  const auto& weight_map = index.at("weight_map");
  if (!weight_map.is_object())
    throw InputError(index_path + ": \"weight_map\" is not an object of key -> shard file");

  std::map<std::string, size_t> shard_of_name;  // shard file name -> index into files_
  std::map<std::string, std::string> shard_name_of_key;
  for (const auto& [key, shard] : weight_map.items()) {
    if (!shard.is_string())
      throw InputError(index_path + ": weight_map/" + key + " is not a shard file name");
    shard_name_of_key[key] = shard.get<std::string>();
    shard_of_name.emplace(shard.get<std::string>(), 0);
  }
  const fs::path dir = file.parent_path();
  for (auto& [shard_name, position] : shard_of_name) {
    const fs::path shard_path = dir / shard_name;
    if (!fs::is_regular_file(shard_path))
      throw InputError(index_path + ": shard '" + shard_name +
                       "' named in the index does not exist (" + shard_path.string() + ")");
    position = ckpt.files_.size();
    ckpt.files_.push_back(std::make_shared<const SafetensorsFile>(shard_path.string()));
  }
  for (const auto& [key, shard_name] : shard_name_of_key) {
    const size_t position = shard_of_name.at(shard_name);
    if (!ckpt.files_[position]->contains(key))
      throw InputError(index_path + ": tensor '" + key + "' is listed in shard '" + shard_name +
                       "' but absent from it");
    ckpt.file_index_.emplace(key, position);
  }
  return ckpt;
}

const std::string& Checkpoint::path() const { return path_; }

std::vector<std::string> Checkpoint::keys() const {
  std::vector<std::string> keys;
  keys.reserve(file_index_.size());
  for (const auto& [key, position] : file_index_) keys.push_back(key);
  return keys;
}

size_t Checkpoint::size() const { return file_index_.size(); }
bool Checkpoint::contains(const std::string& name) const { return file_index_.count(name) > 0; }

const SafetensorsFile& Checkpoint::file_of(const std::string& name) const {
  auto it = file_index_.find(name);
  if (it == file_index_.end()) throw InputError(path_ + ": no tensor named '" + name + "'");
  return *files_[it->second];
}

at::Tensor Checkpoint::tensor(const std::string& name) const { return file_of(name).tensor(name); }
std::vector<int64_t> Checkpoint::shape(const std::string& name) const {
  return file_of(name).shape(name);
}
at::ScalarType Checkpoint::dtype(const std::string& name) const {
  return file_of(name).dtype(name);
}
const std::vector<std::shared_ptr<const SafetensorsFile>>& Checkpoint::files() const {
  return files_;
}

void load_module(torch::nn::Module& module, const Checkpoint& ckpt,
                 const std::vector<std::string>& ignore_prefixes) {
  std::vector<std::pair<std::string, at::Tensor>> targets;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    if (item.value().defined()) targets.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true))
    if (item.value().defined()) targets.emplace_back(item.key(), item.value());

  // Check everything first, so a wrong checkpoint leaves the module untouched and the user sees
  // every problem at once.
  std::set<std::string> module_keys;
  std::vector<std::string> missing, mismatched, unexpected;
  for (const auto& [name, target] : targets) {
    module_keys.insert(name);
    if (!ckpt.contains(name)) {
      missing.push_back(name);
      continue;
    }
    const auto ckpt_shape = ckpt.shape(name);
    if (at::IntArrayRef(ckpt_shape) != target.sizes())
      mismatched.push_back(name + " (checkpoint " + shape_string(ckpt_shape) + ", module " +
                           shape_string(target.sizes()) + ")");
  }
  for (const auto& key : ckpt.keys()) {
    if (module_keys.count(key)) continue;
    const bool ignored = std::any_of(ignore_prefixes.begin(), ignore_prefixes.end(),
                                     [&](const std::string& p) { return key.rfind(p, 0) == 0; });
    if (!ignored) unexpected.push_back(key);
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::vector<std::string> parts;
    if (!missing.empty())
      parts.push_back(count_of(missing.size(), "missing key", "missing keys") + ": " +
                      join_truncated(missing));
    if (!unexpected.empty())
      parts.push_back(count_of(unexpected.size(), "unexpected key", "unexpected keys") + ": " +
                      join_truncated(unexpected));
    if (!mismatched.empty())
      parts.push_back(count_of(mismatched.size(), "shape mismatch", "shape mismatches") + ": " +
                      join_truncated(mismatched));
    std::string message = ckpt.path() + ": checkpoint does not match the module: ";
    for (size_t i = 0; i < parts.size(); ++i) message += (i ? "; " : "") + parts[i];
    throw InputError(message);
  }

  torch::NoGradGuard no_grad;
  for (auto& [name, target] : targets) target.copy_(ckpt.tensor(name));  // converts dtype/device
}

void random_init(torch::nn::Module& module, uint64_t seed) {
  torch::NoGradGuard no_grad;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    at::Tensor param = item.value();
    if (!param.defined() || param.numel() == 0) continue;
    if (param.dim() <= 1) {
      param.fill_(ends_with(name, "bias") ? 0.0 : 1.0);
      continue;
    }
    const int64_t fan_in = param.numel() / param.size(0);
    const double std = 1.0 / std::sqrt(static_cast<double>(fan_in));
    auto gen = generator_for(param.device(), parameter_seed(seed, name));
    // Draw in float32 (double stays double) and round into the parameter: a bf16 or fp8 parameter
    // then holds the rounded values of its float32 twin, and normal_ needs a floating dtype.
    const auto draw_dtype = param.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    if (param.scalar_type() == draw_dtype && param.is_contiguous()) {
      param.normal_(0.0, std, gen);
    } else {
      param.copy_(
          at::empty(param.sizes(), param.options().dtype(draw_dtype)).normal_(0.0, std, gen));
    }
  }
}

}  // namespace ditbench
