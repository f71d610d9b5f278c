// Torch-facing pieces of batched NMS shared by the CPU and CUDA implementations.
#pragma once

#include <ATen/ATen.h>

namespace tinyfast {

void check_batched_nms_args(
    const at::Tensor& boxes,
    const at::Tensor& scores,
    const at::Tensor& idxs,
    double iou_threshold,
    int64_t max_per_group);

// Boxes by rank (group, score descending, index ascending) and, per group, the ranks sorted by x1.
struct RankedBoxes {
  at::Tensor order;    // [n] int64: original index of each rank
  at::Tensor boxes;    // [n, 4] float32 (float64 for float64 input), contiguous, by rank
  at::Tensor groups;   // [n] int64, by rank
  at::Tensor x_order;  // [n] int32
};

RankedBoxes rank_boxes(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs);

// Kept original indices (ascending) reordered by decreasing score, ties by lower index.
at::Tensor order_by_score(const at::Tensor& kept_ascending, const at::Tensor& scores);

}  // namespace tinyfast
