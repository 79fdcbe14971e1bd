// libFuzzer target: arbitrary bytes as a .safetensors file. Opening must either succeed, with
// every tensor view inside the mapping, or throw InputError; anything else (a crash, an ASan or
// UBSan report, another exception type) is a bug in the header validation.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "models/checkpoint/safetensors.h"
#include "models/common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An in-memory file: the reader takes a path and maps it, as it does for real checkpoints.
  static const int fd = memfd_create("fuzz.safetensors", 0);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  if (fd < 0) std::abort();
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size))
    std::abort();
  try {
    ditbench::SafetensorsFile file(path);
    for (const auto& name : file.keys()) {
      // Touch every byte the header claims: a view outside the mapping would fault here.
      const at::Tensor t = file.tensor(name);
      if (t.numel() > 0 && t.nbytes() != file.nbytes(name)) std::abort();
      const auto* bytes = static_cast<const uint8_t*>(t.data_ptr());
      volatile uint8_t sink = 0;
      for (size_t i = 0; i < t.nbytes(); ++i) sink = sink ^ bytes[i];
    }
  } catch (const ditbench::InputError&) {
  }
  return 0;
}
