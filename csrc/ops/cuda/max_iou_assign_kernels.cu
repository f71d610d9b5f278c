#include "ops/cuda/max_iou_assign_kernels.h"

namespace tinyfast {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// Only values > 0 are written over a +0 start: the bit patterns of non-negative floats order as the floats.
__device__ void atomic_raise(float* address, float value) {
  atomicMax(reinterpret_cast<int*>(address), __float_as_int(value));
}

__device__ void atomic_raise(double* address, double value) {
  atomicMax(reinterpret_cast<unsigned long long*>(address),
            static_cast<unsigned long long>(__double_as_longlong(value)));
}

__device__ int64_t box_of_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

template <typename T>
__global__ void first_pass_kernel(AssignProblem<T> problem) {
  const int64_t index = box_of_thread();
  if (index < problem.num_boxes) {
    assign_box_first_pass(problem, index,
                          [&](int64_t gt, T iou) { atomic_raise(problem.gt_max_iou + gt, iou); });
  }
}

template <typename T>
__global__ void argmax_pass_kernel(AssignProblem<T> problem) {
  const int64_t index = box_of_thread();
  if (index < problem.num_boxes) {
    // Box indices and the INT64_MAX start are >= 0: as unsigned they order the same.
    assign_box_argmax_pass(problem, index, [&](int64_t gt, int64_t box) {
      atomicMin(reinterpret_cast<unsigned long long*>(problem.gt_argmax + gt),
                static_cast<unsigned long long>(box));
    });
  }
}

template <typename T>
__global__ void low_quality_pass_kernel(AssignProblem<T> problem) {
  const int64_t index = box_of_thread();
  if (index < problem.num_boxes) {
    assign_box_low_quality_pass(problem, index);
  }
}

unsigned int blocks_for(int64_t num_boxes) {
  return static_cast<unsigned int>((num_boxes + kThreads - 1) / kThreads);
}

}  // namespace

template <typename T>
void launch_assign_first_pass(const AssignProblem<T>& problem, cudaStream_t stream) {
  first_pass_kernel<T><<<blocks_for(problem.num_boxes), kThreads, 0, stream>>>(problem);
}

template <typename T>
void launch_assign_argmax_pass(const AssignProblem<T>& problem, cudaStream_t stream) {
  argmax_pass_kernel<T><<<blocks_for(problem.num_boxes), kThreads, 0, stream>>>(problem);
}

template <typename T>
void launch_assign_low_quality_pass(const AssignProblem<T>& problem, cudaStream_t stream) {
  low_quality_pass_kernel<T><<<blocks_for(problem.num_boxes), kThreads, 0, stream>>>(problem);
}

template void launch_assign_first_pass<float>(const AssignProblem<float>&, cudaStream_t);
template void launch_assign_first_pass<double>(const AssignProblem<double>&, cudaStream_t);
template void launch_assign_argmax_pass<float>(const AssignProblem<float>&, cudaStream_t);
template void launch_assign_argmax_pass<double>(const AssignProblem<double>&, cudaStream_t);
template void launch_assign_low_quality_pass<float>(const AssignProblem<float>&, cudaStream_t);
template void launch_assign_low_quality_pass<double>(const AssignProblem<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace tinyfast
