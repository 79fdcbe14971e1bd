#pragma once
// Reading diffusers config.json values into a config struct: each reader leaves `out` as it is
// when the key is absent and throws InputError naming `source`, the key and the value when the
// type is wrong.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace ditbench {

[[noreturn]] void bad_config_key(const std::string& source, const std::string& key,
                                 const std::string& expected, const nlohmann::json& value);

void read_config_int(const nlohmann::json& j, const std::string& source, const char* key,
                     int64_t& out);
void read_config_double(const nlohmann::json& j, const std::string& source, const char* key,
                        double& out);
void read_config_bool(const nlohmann::json& j, const std::string& source, const char* key,
                      bool& out);
// null reads as "" (diffusers writes None as null).
void read_config_string(const nlohmann::json& j, const std::string& source, const char* key,
                        std::string& out);
// A list of numbers (integers when T is int64_t, booleans when T is bool).
template <typename T>
void read_config_list(const nlohmann::json& j, const std::string& source, const char* key,
                      std::vector<T>& out);

// Range checks of config values: InputError naming `source`, the key and the value.
void require_positive(const std::string& source, const char* key, int64_t value);
void require_non_negative(const std::string& source, const char* key, int64_t value);

// Parses a config.json file, or the config.json inside a folder; InputError names the file.
nlohmann::json read_config_file(const std::string& path);

}  // namespace ditbench
