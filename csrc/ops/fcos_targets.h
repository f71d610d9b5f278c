// The FCOS target op up to the per-point kernel, shared by the CPU and CUDA implementations: argument
// checks, GT buckets (device-generic ATen code) and the outputs; each backend only launches the kernel.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "fcos_rules.h"

namespace tinyfast {

template <typename T>
using FcosLauncher = void (*)(const FcosProblem<T>& problem, int64_t num_images);

std::tuple<at::Tensor, at::Tensor> fcos_targets_with(
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
    bool norm_on_bbox,
    FcosLauncher<float> launch_float,
    FcosLauncher<double> launch_double);

}  // namespace tinyfast
