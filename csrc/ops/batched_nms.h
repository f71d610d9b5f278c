// Argument checks of batched NMS, shared by the CPU and CUDA implementations.
#pragma once

#include <ATen/ATen.h>

namespace tinyfast {

void check_batched_nms_args(
    const at::Tensor& boxes,
    const at::Tensor& scores,
    const at::Tensor& idxs,
    double iou_threshold,
    int64_t max_per_group);

}  // namespace tinyfast
