// Finiteness checks of the CPU kernels' inputs.
#pragma once

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace tinyfast {

// Whether values[0, count) are all finite. Branch-free, for the compiler to vectorize: |v| <= max is false
// for inf and NaN.
template <typename T>
bool all_finite(const T* values, int64_t count) {
  int finite = 1;
  for (int64_t i = 0; i < count; ++i) {
    finite &= std::abs(values[i]) <= std::numeric_limits<T>::max();
  }
  return finite;
}

// all_finite over chunks of values[0, count) in parallel.
template <typename T>
bool all_finite_in_parallel(const T* values, int64_t count) {
  return at::parallel_reduce(
      0, count, 1 << 14, true,
      [&](int64_t begin, int64_t end, bool ok) { return ok && all_finite(values + begin, end - begin); },
      [](bool a, bool b) { return a && b; });
}

}  // namespace tinyfast
