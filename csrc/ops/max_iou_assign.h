// The max-IoU assignment op up to the per-box passes, shared by the CPU and CUDA backends: the op's
// arguments, checks, the grids of GTs and ignore regions (device-generic ATen code) and the outputs; each
// backend supplies the three passes of csrc/assign_rules.h.
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

// The op's arguments as its schema lists them (tinyfast.ops.max_iou_assign documents them).
struct MaxIouAssignInput {
  const at::Tensor& boxes;          // [N, 4], the boxes of image 0, then of image 1, ...
  const at::Tensor& box_counts;     // [B] int64
  const at::Tensor& gt_boxes;       // [G, 4]
  const at::Tensor& gt_counts;      // [B] int64
  const at::Tensor& ignore_boxes;   // [I, 4]
  const at::Tensor& ignore_counts;  // [B] int64
};

struct MaxIouAssignOptions {
  double pos_iou;
  double neg_iou;
  double min_pos_iou;
  bool low_quality;
  bool gt_max_assign_all;
  double ignore_iof;
};

struct MaxIouAssignBackend {
  AssignPasses<float> float_passes;
  AssignPasses<double> double_passes;
};

std::tuple<at::Tensor, at::Tensor> max_iou_assign_with(const MaxIouAssignInput& input,
                                                       const MaxIouAssignOptions& options,
                                                       const MaxIouAssignBackend& backend);

// A backend's kernel with the op's schema.
template <const MaxIouAssignBackend& backend>
std::tuple<at::Tensor, at::Tensor> max_iou_assign_kernel(const at::Tensor& boxes,
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
  return max_iou_assign_with({boxes, box_counts, gt_boxes, gt_counts, ignore_boxes, ignore_counts},
                             {pos_iou, neg_iou, min_pos_iou, low_quality, gt_max_assign_all, ignore_iof},
                             backend);
}

}  // namespace tinyfast
