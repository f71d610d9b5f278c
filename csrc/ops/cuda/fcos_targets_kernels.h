// Launcher of the FCOS target kernel: raw pointers and a stream, no torch types, so that the .cu file that
// defines it compiles without torch headers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "fcos_rules.h"

namespace tinyfast {
namespace cuda {

// One thread per (image, point).
template <typename T>
void launch_fcos_assign(const FcosProblem<T>& problem, int64_t num_images, cudaStream_t stream);

}  // namespace cuda
}  // namespace tinyfast
