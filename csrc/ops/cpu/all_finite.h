// Finiteness checks of the CPU kernels' inputs.
#pragma once

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

}  // namespace tinyfast
