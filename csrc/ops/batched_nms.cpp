#include "ops/batched_nms.h"

#include <cmath>
#include <limits>

namespace tinyfast {

void check_batched_nms_args(
    const at::Tensor& boxes,
    const at::Tensor& scores,
    const at::Tensor& idxs,
    double iou_threshold,
    int64_t max_per_group) {
  TORCH_CHECK_VALUE(
      boxes.dim() == 2 && boxes.size(1) == 4, "batched_nms: boxes must have shape [N, 4], got ", boxes.sizes());
  TORCH_CHECK_VALUE(
      at::isFloatingType(boxes.scalar_type()), "batched_nms: boxes must be floating point, got ",
      boxes.scalar_type());
  TORCH_CHECK_VALUE(
      scores.dim() == 1 && scores.size(0) == boxes.size(0), "batched_nms: scores must have shape [N] with N = ",
      boxes.size(0), " (boxes), got ", scores.sizes());
  TORCH_CHECK_VALUE(
      at::isFloatingType(scores.scalar_type()), "batched_nms: scores must be floating point, got ",
      scores.scalar_type());
  TORCH_CHECK_VALUE(
      idxs.dim() == 1 && idxs.size(0) == boxes.size(0), "batched_nms: idxs must have shape [N] with N = ",
      boxes.size(0), " (boxes), got ", idxs.sizes());
  TORCH_CHECK_VALUE(idxs.scalar_type() == at::kLong, "batched_nms: idxs must be int64, got ", idxs.scalar_type());
  TORCH_CHECK_VALUE(
      scores.device() == boxes.device() && idxs.device() == boxes.device(),
      "batched_nms: boxes, scores and idxs must be on one device, got ", boxes.device(), ", ", scores.device(),
      " and ", idxs.device());
  TORCH_CHECK_VALUE(
      !std::isnan(iou_threshold) && iou_threshold >= 0, "batched_nms: iou_threshold must be >= 0, got ",
      iou_threshold);
  TORCH_CHECK_VALUE(
      max_per_group >= -1, "batched_nms: max_per_group must be >= 0, or -1 for no cap, got ", max_per_group);
  TORCH_CHECK_VALUE(
      boxes.size(0) < std::numeric_limits<int32_t>::max(), "batched_nms: boxes has more than 2^31 - 1 rows");
}

}  // namespace tinyfast
