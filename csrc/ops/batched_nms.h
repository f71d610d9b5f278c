// Batched NMS: the op's arguments, checks and entry point, shared by the CPU and CUDA backends; each backend
// only supplies the NMS of checked, non-empty input.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace tinyfast {

// The op's arguments as its schema lists them (tinyfast.ops.batched_nms documents them).
struct BatchedNmsInput {
  const at::Tensor& boxes;   // [N, 4] floating
  const at::Tensor& scores;  // [N] floating
  const at::Tensor& idxs;    // [N] int64 group ids
};

struct BatchedNmsOptions {
  double iou_threshold;
  std::optional<int64_t> max_per_group;  // none: no cap

  // The cap of the kernels: -1 for none.
  int64_t cap() const {
    return max_per_group.value_or(-1);
  }
};

struct BatchedNmsBackend {
  // Kept box indices (with the device guard it needs) [K] int64 by score descending (ties: lower index
  // first), on the input's device.
  at::Tensor (*keep)(const BatchedNmsInput& input, const BatchedNmsOptions& options);
};

// Checks (ValueError naming the argument), the empty case, then the backend.
at::Tensor batched_nms_with(const BatchedNmsInput& input,
                            const BatchedNmsOptions& options,
                            const BatchedNmsBackend& backend);

// A backend's kernel with the op's schema.
template <const BatchedNmsBackend& backend>
at::Tensor batched_nms_kernel(const at::Tensor& boxes,
                              const at::Tensor& scores,
                              const at::Tensor& idxs,
                              double iou_threshold,
                              std::optional<int64_t> max_per_group) {
  return batched_nms_with({boxes, scores, idxs}, {iou_threshold, max_per_group}, backend);
}

// torch.ops.tinyfast.batched_nms through the dispatcher (for the other ops' C++ code); -1: no cap.
at::Tensor batched_nms(const at::Tensor& boxes,
                       const at::Tensor& scores,
                       const at::Tensor& idxs,
                       double iou_threshold,
                       int64_t max_per_group);

}  // namespace tinyfast
