#include "ops/point_nms.h"

#include <torch/library.h>

#include <cmath>
#include <limits>

namespace tinyfast {
namespace {

void check_args(const PointNmsInput& in, const PointNmsOptions& options) {
  const auto& [points, scores, idxs, sizes] = in;
  TORCH_CHECK_VALUE(points.dim() == 2 && points.size(1) == 2,
                    "point_nms: points must have shape [N, 2], got ", points.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(points.scalar_type()),
                    "point_nms: points must be a floating tensor, got ", points.scalar_type());
  const int64_t n = points.size(0);
  TORCH_CHECK_VALUE(scores.dim() == 1 && scores.size(0) == n,
                    "point_nms: scores must have shape [N] with N = ", n, " (points), got ", scores.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(scores.scalar_type()),
                    "point_nms: scores must be a floating tensor, got ", scores.scalar_type());
  TORCH_CHECK_VALUE(idxs.dim() == 1 && idxs.size(0) == n, "point_nms: idxs must have shape [N] with N = ", n,
                    " (points), got ", idxs.sizes());
  TORCH_CHECK_VALUE(idxs.scalar_type() == at::kLong,
                    "point_nms: idxs must be an integer tensor of dtype int64, got ", idxs.scalar_type());
  TORCH_CHECK_VALUE(sizes.dim() == 1 && sizes.size(0) == n,
                    "point_nms: sizes must have shape [N] with N = ", n, " (points), got ", sizes.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(sizes.scalar_type()),
                    "point_nms: sizes must be a floating tensor, got ", sizes.scalar_type());
  TORCH_CHECK_VALUE(scores.device() == points.device() && idxs.device() == points.device() &&
                        sizes.device() == points.device(),
                    "point_nms: points, scores, idxs and sizes must be on one device, got ", points.device(),
                    ", ", scores.device(), ", ", idxs.device(), " and ", sizes.device());
  TORCH_CHECK_VALUE(!std::isnan(options.distance_threshold) && options.distance_threshold >= 0,
                    "point_nms: distance_threshold must be a number >= 0, got ", options.distance_threshold);
  TORCH_CHECK_VALUE(options.max_per_group.value_or(0) >= 0,
                    "point_nms: max_per_group must be None or an int >= 0, got ",
                    options.max_per_group.value_or(0));
  TORCH_CHECK_VALUE(n < std::numeric_limits<int32_t>::max(), "point_nms: points has more than 2^31 - 1 rows");
}

}  // namespace

at::Tensor point_nms_with(const PointNmsInput& input,
                          const PointNmsOptions& options,
                          const PointNmsBackend& backend) {
  check_args(input, options);
  if (input.points.size(0) == 0) {
    return at::empty({0}, input.idxs.options());
  }
  return backend.keep(input, options);
}

TORCH_LIBRARY_FRAGMENT(tinyfast, m) {
  m.def(
      "point_nms(Tensor points, Tensor scores, Tensor idxs, Tensor sizes, float distance_threshold, "
      "int? max_per_group) -> Tensor");
}

}  // namespace tinyfast
