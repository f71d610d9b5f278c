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

std::tuple<at::Tensor, at::Tensor> fcos_targets_cpu(
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
  return fcos_targets_with(
      points, level_sizes, strides, range_lo, range_hi, gt_boxes, gt_labels, gt_counts, num_classes,
      center_sampling_radius, norm_on_bbox, &assign_points_cpu<float>, &assign_points_cpu<double>);
}

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) {
  m.impl("fcos_targets", &fcos_targets_cpu);
}

}  // namespace tinyfast
