#include "ops/cuda/fcos_targets_kernels.h"

namespace tinyfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void fcos_assign_kernel(FcosProblem<T> problem, int64_t num_pairs) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k < num_pairs) {
    fcos_assign_point(problem, k / problem.num_points, k % problem.num_points);
  }
}

}  // namespace

template <typename T>
void launch_fcos_assign(const FcosProblem<T>& problem, int64_t num_images, cudaStream_t stream) {
  const int64_t num_pairs = num_images * problem.num_points;
  const int64_t blocks = (num_pairs + kThreads - 1) / kThreads;
  fcos_assign_kernel<T><<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(problem, num_pairs);
}

template void launch_fcos_assign<float>(const FcosProblem<float>&, int64_t, cudaStream_t);
template void launch_fcos_assign<double>(const FcosProblem<double>&, int64_t, cudaStream_t);

}  // namespace cuda
}  // namespace tinyfast
