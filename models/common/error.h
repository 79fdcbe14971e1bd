#pragma once
#include <stdexcept>
#include <string>

namespace ditbench {

// Bad input from the user: a file, a JSON path, a tensor or a command-line value that cannot be
// used. The CLI turns it into exit status 2 with exactly this message, which must name the file,
// JSON path or tensor at fault.
class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& what) : std::runtime_error(what) {}
};

// A configuration that is valid but cannot run on this build or device (a backend that cannot
// serve, a degree that does not divide the heads). Runners record it as a skip with this reason.
class Unsupported : public std::runtime_error {
 public:
  explicit Unsupported(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace ditbench
