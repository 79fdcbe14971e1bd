#pragma once
// Reading diffusers config.json values into a config struct: each reader leaves `out` as it is
// when the key is absent and throws InputError naming `source`, the key and the value when the
// type is wrong.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace ditbench {

[[noreturn]] void bad_config_key(const std::string& source, const std::string& key,
                                 const std::string& expected, const nlohmann::json& value);

void read_config_int(const nlohmann::json& j, const std::string& source, const char* key,
                     int64_t& out);
// read_config_int of each (key, member), in order.
void read_config_ints(const nlohmann::json& j, const std::string& source,
                      std::initializer_list<std::pair<const char*, int64_t*>> keys);
void read_config_double(const nlohmann::json& j, const std::string& source, const char* key,
                        double& out);
void read_config_bool(const nlohmann::json& j, const std::string& source, const char* key,
                      bool& out);
// Keys diffusers writes as null when unused: null (like absence) leaves `out` as it is.
void read_config_nullable_int(const nlohmann::json& j, const std::string& source, const char* key,
                              int64_t& out);
void read_config_nullable_double(const nlohmann::json& j, const std::string& source,
                                 const char* key, double& out);
// null reads as "" (diffusers writes None as null).
void read_config_string(const nlohmann::json& j, const std::string& source, const char* key,
                        std::string& out);
// A list of numbers (integers when T is int64_t, booleans when T is bool).
template <typename T>
void read_config_list(const nlohmann::json& j, const std::string& source, const char* key,
                      std::vector<T>& out);

// Range checks of config values: InputError naming `source`, the key and the value.
void require_positive(const std::string& source, const char* key, int64_t value);
// require_positive of each (key, value), in order.
void require_positive(const std::string& source,
                      std::initializer_list<std::pair<const char*, int64_t>> values);
void require_non_negative(const std::string& source, const char* key, int64_t value);

// InputError naming `source` unless the config is a JSON object.
void require_config_object(const nlohmann::json& j, const std::string& source);

// Parses a config.json file, or the config.json inside a folder; InputError names the file.
nlohmann::json read_config_file(const std::string& path);
// The file read_config_file(path) reads: `path`, or the config.json inside it.
std::string config_file_path(const std::string& path);
// Config::from_json of the file read_config_file(path) reads, errors naming that file.
template <typename Config>
Config config_from_file(const std::string& path) {
  return Config::from_json(read_config_file(path), config_file_path(path));
}

// The InputError of a preset name that `family` does not have, listing the ones it has.
[[noreturn]] void unknown_preset(const std::string& family, const std::string& name,
                                 const std::vector<std::string>& known);

}  // namespace ditbench
