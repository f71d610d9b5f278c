// FCOS targets on CUDA: the GT buckets are built with ATen ops on the device (no host sync beyond the one
// that reads the input checks), then one thread per (image, point).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ops/cuda/fcos_targets_kernels.h"
#include "ops/fcos_targets.h"

namespace tinyfast {
namespace {

template <typename T>
void assign_points_cuda(const FcosProblem<T>& problem, int64_t num_images) {
  cuda::launch_fcos_assign(problem, num_images, c10::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

constexpr FcosTargetsBackend kCudaBackend{&assign_points_cuda<float>, &assign_points_cuda<double>};

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CUDA, m) {
  m.impl("fcos_targets", &fcos_targets_kernel<kCudaBackend>);
}

}  // namespace tinyfast
