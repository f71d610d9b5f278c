// Max-IoU assignment on CUDA: the grids are built with ATen ops on the device (no host sync beyond the one
// that reads the input checks), then one thread per box for each pass; per-GT maxima are atomic.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "ops/cuda/max_iou_assign_kernels.h"
#include "ops/max_iou_assign.h"

namespace tinyfast {
namespace {

template <typename T>
void first_pass_cuda(const AssignProblem<T>& problem) {
  cuda::launch_assign_first_pass(problem, c10::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void argmax_pass_cuda(const AssignProblem<T>& problem) {
  cuda::launch_assign_argmax_pass(problem, c10::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void low_quality_pass_cuda(const AssignProblem<T>& problem) {
  cuda::launch_assign_low_quality_pass(problem, c10::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
constexpr AssignPasses<T> cuda_passes() {
  return {&first_pass_cuda<T>, &argmax_pass_cuda<T>, &low_quality_pass_cuda<T>};
}

constexpr MaxIouAssignBackend kCudaBackend{cuda_passes<float>(), cuda_passes<double>()};

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CUDA, m) {
  m.impl("max_iou_assign", &max_iou_assign_kernel<kCudaBackend>);
}

}  // namespace tinyfast
