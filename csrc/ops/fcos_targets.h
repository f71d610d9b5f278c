// The FCOS target op up to the per-point kernel, shared by the CPU and CUDA backends: the op's arguments,
// checks, GT buckets (device-generic ATen code) and outputs; each backend only launches the kernel.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "fcos_rules.h"

namespace tinyfast {

// The op's arguments as its schema lists them (tinyfast.ops.fcos_targets documents them).
struct FcosTargetsInput {
  const at::Tensor& points;     // [P, 2], one image's points, level after level
  const at::Tensor& gt_boxes;   // [G, 4], the GTs of image 0, then of image 1, ...
  const at::Tensor& gt_labels;  // [G] int64
  const at::Tensor& gt_counts;  // [B] int64
};

struct FcosTargetsOptions {
  at::IntArrayRef level_sizes;
  at::ArrayRef<double> strides;
  at::ArrayRef<double> range_lo;  // regress_ranges, per level
  at::ArrayRef<double> range_hi;
  int64_t num_classes;
  double center_sampling_radius;  // <= 0: no center sampling
  bool norm_on_bbox;
};

template <typename T>
using FcosLauncher = void (*)(const FcosProblem<T>& problem, int64_t num_images);

struct FcosTargetsBackend {
  FcosLauncher<float> launch_float;
  FcosLauncher<double> launch_double;
};

std::tuple<at::Tensor, at::Tensor> fcos_targets_with(const FcosTargetsInput& input,
                                                     const FcosTargetsOptions& options,
                                                     const FcosTargetsBackend& backend);

// A backend's kernel with the op's schema.
template <const FcosTargetsBackend& backend>
std::tuple<at::Tensor, at::Tensor> fcos_targets_kernel(const at::Tensor& points,
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
      {points, gt_boxes, gt_labels, gt_counts},
      {level_sizes, strides, range_lo, range_hi, num_classes, center_sampling_radius, norm_on_bbox}, backend);
}

}  // namespace tinyfast
