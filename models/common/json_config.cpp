#include "models/common/json_config.h"

#include <filesystem>
#include <fstream>
#include <type_traits>

#include "models/common/error.h"

namespace ditbench {

void bad_config_key(const std::string& source, const std::string& key, const std::string& expected,
                    const nlohmann::json& value) {
  throw InputError(source + ": key '" + key + "' must be " + expected + ", got " +
                   value.type_name() + " " + value.dump());
}

void read_config_int(const nlohmann::json& j, const std::string& source, const char* key,
                     int64_t& out) {
  if (!j.contains(key)) return;
  const auto& v = j.at(key);
  if (!v.is_number_integer()) bad_config_key(source, key, "an integer", v);
  out = v.get<int64_t>();
}

void read_config_ints(const nlohmann::json& j, const std::string& source,
                      std::initializer_list<std::pair<const char*, int64_t*>> keys) {
  for (const auto& [key, out] : keys) read_config_int(j, source, key, *out);
}

void read_config_double(const nlohmann::json& j, const std::string& source, const char* key,
                        double& out) {
  if (!j.contains(key)) return;
  const auto& v = j.at(key);
  if (!v.is_number()) bad_config_key(source, key, "a number", v);
  out = v.get<double>();
}

void read_config_bool(const nlohmann::json& j, const std::string& source, const char* key,
                      bool& out) {
  if (!j.contains(key)) return;
  const auto& v = j.at(key);
  if (!v.is_boolean()) bad_config_key(source, key, "a boolean", v);
  out = v.get<bool>();
}

void read_config_nullable_int(const nlohmann::json& j, const std::string& source, const char* key,
                              int64_t& out) {
  if (j.contains(key) && !j.at(key).is_null()) read_config_int(j, source, key, out);
}

void read_config_nullable_double(const nlohmann::json& j, const std::string& source,
                                 const char* key, double& out) {
  if (j.contains(key) && !j.at(key).is_null()) read_config_double(j, source, key, out);
}

void read_config_string(const nlohmann::json& j, const std::string& source, const char* key,
                        std::string& out) {
  if (!j.contains(key)) return;
  const auto& v = j.at(key);
  if (v.is_null()) {
    out.clear();
    return;
  }
  if (!v.is_string()) bad_config_key(source, key, "a string or null", v);
  out = v.get<std::string>();
}

template <typename T>
void read_config_list(const nlohmann::json& j, const std::string& source, const char* key,
                      std::vector<T>& out) {
  if (!j.contains(key)) return;
  const auto& v = j.at(key);
  const char* expected = std::is_same_v<T, bool>      ? "a list of booleans"
                         : std::is_same_v<T, int64_t> ? "a list of integers"
                                                      : "a list of numbers";
  if (!v.is_array()) bad_config_key(source, key, expected, v);
  std::vector<T> values;
  for (const auto& item : v) {
    const bool ok = std::is_same_v<T, bool>      ? item.is_boolean()
                    : std::is_same_v<T, int64_t> ? item.is_number_integer()
                                                 : item.is_number();
    if (!ok) bad_config_key(source, key, expected, v);
    values.push_back(item.get<T>());
  }
  out = std::move(values);
}

template void read_config_list<int64_t>(const nlohmann::json&, const std::string&, const char*,
                                        std::vector<int64_t>&);
template void read_config_list<double>(const nlohmann::json&, const std::string&, const char*,
                                       std::vector<double>&);
template void read_config_list<bool>(const nlohmann::json&, const std::string&, const char*,
                                     std::vector<bool>&);

void require_positive(const std::string& source, const char* key, int64_t value) {
  if (value <= 0) {
    throw InputError(source + ": key '" + key + "' must be positive, got " + std::to_string(value));
  }
}

void require_positive(const std::string& source,
                      std::initializer_list<std::pair<const char*, int64_t>> values) {
  for (const auto& [key, value] : values) require_positive(source, key, value);
}

void require_non_negative(const std::string& source, const char* key, int64_t value) {
  if (value < 0) {
    throw InputError(source + ": key '" + key + "' must be >= 0, got " + std::to_string(value));
  }
}

void require_config_object(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw InputError(source + ": config must be a JSON object");
}

std::string config_file_path(const std::string& path) {
  namespace fs = std::filesystem;
  return fs::is_directory(path) ? (fs::path(path) / "config.json").string() : path;
}

nlohmann::json read_config_file(const std::string& path) {
  const std::string file = config_file_path(path);
  std::ifstream in(file);
  if (!in) throw InputError(file + ": cannot read the config file");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(file + ": invalid JSON: " + e.what());
  }
}

void unknown_preset(const std::string& family, const std::string& name,
                    const std::vector<std::string>& known) {
  std::string list;
  for (const auto& n : known) list += (list.empty() ? "" : ", ") + n;
  throw InputError("unknown " + family + " preset '" + name + "' (known: " + list + ")");
}

}  // namespace ditbench
