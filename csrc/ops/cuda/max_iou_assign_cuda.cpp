// Max-IoU assignment on CUDA: the grids are built with ATen ops on the device (no host sync beyond the one
// that reads the input checks), then one thread per box for each pass; per-GT maxima are atomic.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
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
AssignPasses<T> cuda_passes() {
  return {&first_pass_cuda<T>, &argmax_pass_cuda<T>, &low_quality_pass_cuda<T>};
}

std::tuple<at::Tensor, at::Tensor> max_iou_assign_cuda(
    const at::Tensor& boxes,
    const at::Tensor& box_counts,
    const at::Tensor& gt_boxes,
    const at::Tensor& gt_counts,
    const at::Tensor& ignore_boxes,
    const at::Tensor& ignore_counts,
    double pos_iou,
    double neg_iou,
    double min_pos_iou,
    bool low_quality,
    bool gt_max_assign_all,
    double ignore_iof) {
  const c10::cuda::CUDAGuard device_guard(boxes.device());
  return max_iou_assign_with(
      {boxes, box_counts, gt_boxes, gt_counts, ignore_boxes, ignore_counts},
      {pos_iou, neg_iou, min_pos_iou, low_quality, gt_max_assign_all, ignore_iof}, cuda_passes<float>(),
      cuda_passes<double>());
}

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CUDA, m) {
  m.impl("max_iou_assign", &max_iou_assign_cuda);
}

}  // namespace tinyfast
