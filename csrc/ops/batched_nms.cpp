#include "ops/batched_nms.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <cmath>
#include <limits>

namespace tinyfast {
namespace {

void check_args(const BatchedNmsInput& in, const BatchedNmsOptions& options) {
  const auto& [boxes, scores, idxs] = in;
  TORCH_CHECK_VALUE(boxes.dim() == 2 && boxes.size(1) == 4, "batched_nms: boxes must have shape [N, 4], got ",
                    boxes.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(boxes.scalar_type()),
                    "batched_nms: boxes must be a floating tensor, got ", boxes.scalar_type());
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.size(0) == boxes.size(0),
                    "batched_nms: scores must have shape [N] with N = ", boxes.size(0), " (boxes), got ",
                    scores.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(scores.scalar_type()),
                    "batched_nms: scores must be a floating tensor, got ", scores.scalar_type());
  TORCH_CHECK_VALUE(idxs.dim() == 1 && idxs.size(0) == boxes.size(0),
                    "batched_nms: idxs must have shape [N] with N = ", boxes.size(0), " (boxes), got ",
                    idxs.sizes());
  TORCH_CHECK_VALUE(idxs.scalar_type() == at::kLong,
                    "batched_nms: idxs must be an integer tensor of dtype int64, got ", idxs.scalar_type());
  TORCH_CHECK_VALUE(scores.device() == boxes.device() && idxs.device() == boxes.device(),
                    "batched_nms: boxes, scores and idxs must be on one device, got ", boxes.device(), ", ",
                    scores.device(), " and ", idxs.device());
  TORCH_CHECK_VALUE(!std::isnan(options.iou_threshold) && options.iou_threshold >= 0,
                    "batched_nms: iou_threshold must be a number >= 0, got ", options.iou_threshold);
  TORCH_CHECK_VALUE(options.max_per_group.value_or(0) >= 0,
                    "batched_nms: max_per_group must be None or an int >= 0, got ",
                    options.max_per_group.value_or(0));
  TORCH_CHECK_VALUE(boxes.size(0) < std::numeric_limits<int32_t>::max(),
                    "batched_nms: boxes has more than 2^31 - 1 rows");
}

}  // namespace

at::Tensor batched_nms_with(const BatchedNmsInput& input,
                            const BatchedNmsOptions& options,
                            const BatchedNmsBackend& backend) {
  check_args(input, options);
  if (input.boxes.size(0) == 0) {
    return at::empty({0}, input.idxs.options());
  }
  return backend.keep(input, options);
}

at::Tensor batched_nms(const at::Tensor& boxes,
                       const at::Tensor& scores,
                       const at::Tensor& idxs,
                       double iou_threshold,
                       int64_t max_per_group) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("tinyfast::batched_nms", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                               double, std::optional<int64_t>)>();
  return op.call(boxes, scores, idxs, iou_threshold,
                 max_per_group < 0 ? std::nullopt : std::optional<int64_t>(max_per_group));
}

TORCH_LIBRARY_FRAGMENT(tinyfast, m) {
  m.def(
      "batched_nms(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold, int? max_per_group) -> "
      "Tensor");
}

}  // namespace tinyfast
