// Launchers of the max-IoU assignment passes: raw pointers and a stream, no torch types, so that the .cu
// file that defines them compiles without torch headers.
#pragma once

#include <cuda_runtime_api.h>

#include "assign_rules.h"

namespace tinyfast {
namespace cuda {

// One thread per box, for each pass of csrc/assign_rules.h.
template <typename T>
void launch_assign_first_pass(const AssignProblem<T>& problem, cudaStream_t stream);

template <typename T>
void launch_assign_argmax_pass(const AssignProblem<T>& problem, cudaStream_t stream);

template <typename T>
void launch_assign_low_quality_pass(const AssignProblem<T>& problem, cudaStream_t stream);

}  // namespace cuda
}  // namespace tinyfast
