// FCOS targets on the CPU: one task per chunk of (image, point) pairs, each point reading only the GTs
// of its grid cell.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "ops/fcos_targets.h"

namespace tinyfast {
namespace {

template <typename T>
void assign_points_cpu(const FcosProblem<T>& problem, int64_t num_images) {
  at::parallel_for(0, num_images * problem.num_points, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      fcos_assign_point(problem, k / problem.num_points, k % problem.num_points);
    }
  });
}

constexpr FcosTargetsBackend kCpuBackend{&assign_points_cpu<float>, &assign_points_cpu<double>};

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) {
  m.impl("fcos_targets", &fcos_targets_kernel<kCpuBackend>);
}

}  // namespace tinyfast
