#pragma once
// Host-side dispatch of a kernel launch on a compile-time vector count: the row kernels keep
// `N` 16-byte vectors per thread in registers, so N must be a template argument.
#include <type_traits>
#include <utility>

namespace ditbench {

// Calls launch(std::integral_constant<int, N>{}) for the N in First..Max equal to `vecs`;
// false when none is.
template <int First = 1, int Max = 8, typename Launch>
bool with_vecs(int vecs, Launch&& launch) {
  if constexpr (First > Max) {
    return false;
  } else {
    if (vecs == First) return launch(std::integral_constant<int, First>{});
    return with_vecs<First + 1, Max>(vecs, std::forward<Launch>(launch));
  }
}

}  // namespace ditbench
