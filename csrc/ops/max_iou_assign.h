// The max-IoU assignment op up to the per-box passes, shared by the CPU and CUDA implementations: argument
// checks, the grids of GTs and ignore regions (device-generic ATen code) and the outputs; each backend
// supplies the three passes of csrc/assign_rules.h.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "assign_rules.h"

namespace tinyfast {

template <typename T>
struct AssignPasses {
  void (*first)(const AssignProblem<T>& problem);
  void (*argmax)(const AssignProblem<T>& problem);
  void (*low_quality)(const AssignProblem<T>& problem);
};

std::tuple<at::Tensor, at::Tensor> max_iou_assign_with(
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
    double ignore_iof,
    AssignPasses<float> float_passes,
    AssignPasses<double> double_passes);

}  // namespace tinyfast
