// FCOS targets on CUDA: the GT buckets are built with ATen ops on the device (no host sync beyond the one
// that reads the input checks), then one thread per (image, point).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
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

std::tuple<at::Tensor, at::Tensor> fcos_targets_cuda(
    const at::Tensor& points,
    at::IntArrayRef level_sizes,
    at::ArrayRef<double> strides,
    at::ArrayRef<double> range_lo,
    at::ArrayRef<double> range_hi,
    const at::Tensor& gt_boxes,
    const at::Tensor& gt_labels,
    const at::Tensor& gt_counts,
    int64_t num_classes,
    double center_sampling_radius,
    bool norm_on_bbox) {
  const c10::cuda::CUDAGuard device_guard(points.device());
  return fcos_targets_with(
      points, level_sizes, strides, range_lo, range_hi, gt_boxes, gt_labels, gt_counts, num_classes,
      center_sampling_radius, norm_on_bbox, &assign_points_cuda<float>, &assign_points_cuda<double>);
}

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CUDA, m) {
  m.impl("fcos_targets", &fcos_targets_cuda);
}

}  // namespace tinyfast
