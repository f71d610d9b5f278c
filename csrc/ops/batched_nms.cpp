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

RankedBoxes rank_boxes(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs) {
  const auto compute_type = boxes.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  // Two stable sorts give the lexicographic order (group, score descending, index ascending).
  const at::Tensor by_score = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor group_of_score_rank = idxs.index_select(0, by_score);
  const at::Tensor order =
      by_score.index_select(0, std::get<1>(group_of_score_rank.sort(/*stable=*/true, 0, /*descending=*/false)));

  RankedBoxes ranked;
  ranked.order = order;
  ranked.boxes = boxes.index_select(0, order).to(compute_type).contiguous();
  ranked.groups = idxs.index_select(0, order).contiguous();
  const at::Tensor by_x1 = std::get<1>(ranked.boxes.select(1, 0).sort(/*stable=*/true, 0, false));
  const at::Tensor group_of_x_rank = ranked.groups.index_select(0, by_x1);
  ranked.x_order =
      by_x1.index_select(0, std::get<1>(group_of_x_rank.sort(/*stable=*/true, 0, false))).to(at::kInt).contiguous();
  return ranked;
}

at::Tensor order_by_score(const at::Tensor& kept_ascending, const at::Tensor& scores) {
  const at::Tensor kept_scores = scores.index_select(0, kept_ascending);
  return kept_ascending.index_select(0, std::get<1>(kept_scores.sort(/*stable=*/true, 0, /*descending=*/true)));
}

}  // namespace tinyfast
