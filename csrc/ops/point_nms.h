// Point NMS: the op's arguments, checks and entry point, shared by the CPU and CUDA backends; each backend
// only supplies the NMS of checked, non-empty input.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace tinyfast {

// The op's arguments as its schema lists them (tinyfast.ops.point_nms documents them).
struct PointNmsInput {
  const at::Tensor& points;  // [N, 2] floating (x, y)
  const at::Tensor& scores;  // [N] floating
  const at::Tensor& idxs;    // [N] int64 group ids
  const at::Tensor& sizes;   // [N] floating, >= 0
};

struct PointNmsOptions {
  double distance_threshold;
  std::optional<int64_t> max_per_group;  // none: no cap

  // The cap of the kernels: -1 for none.
  int64_t cap() const {
    return max_per_group.value_or(-1);
  }
};

struct PointNmsBackend {
  // Kept point indices (with the device guard it needs) [K] int64 by score descending (ties: lower index
  // first), on the input's device. Checks the values (finite points, scores and sizes, sizes >= 0).
  at::Tensor (*keep)(const PointNmsInput& input, const PointNmsOptions& options);
};

// Checks (ValueError naming the argument), the empty case, then the backend.
at::Tensor point_nms_with(const PointNmsInput& input,
                          const PointNmsOptions& options,
                          const PointNmsBackend& backend);

// A backend's kernel with the op's schema.
template <const PointNmsBackend& backend>
at::Tensor point_nms_kernel(const at::Tensor& points,
                            const at::Tensor& scores,
                            const at::Tensor& idxs,
                            const at::Tensor& sizes,
                            double distance_threshold,
                            std::optional<int64_t> max_per_group) {
  return point_nms_with({points, scores, idxs, sizes}, {distance_threshold, max_per_group}, backend);
}

}  // namespace tinyfast
