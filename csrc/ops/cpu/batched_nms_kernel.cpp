// Batched NMS on the CPU: boxes bucketed by group, groups in parallel (greedy_nms.h), then the kept boxes
// of all groups merged by score.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "ops/batched_nms.h"
#include "ops/cpu/all_finite.h"
#include "ops/cpu/greedy_nms.h"

namespace tinyfast {
namespace {

template <typename T, typename S>
at::Tensor batched_nms_typed(const at::Tensor& boxes,
                             const at::Tensor& scores,
                             const at::Tensor& idxs,
                             double iou_threshold,
                             int64_t max_per_group) {
  const int32_t n = static_cast<int32_t>(boxes.size(0));
  const at::Tensor boxes_c = boxes.to(c10::CppTypeToScalarType<T>::value).contiguous();
  const at::Tensor scores_c = scores.to(c10::CppTypeToScalarType<S>::value).contiguous();
  const at::Tensor idxs_c = idxs.contiguous();
  const T* box_data = boxes_c.data_ptr<T>();
  const S* score_data = scores_c.data_ptr<S>();
  TORCH_CHECK_VALUE(all_finite_in_parallel(box_data, 4 * static_cast<int64_t>(n)),
                    "batched_nms: boxes must be finite (found NaN or inf)");
  TORCH_CHECK_VALUE(all_finite_in_parallel(score_data, n),
                    "batched_nms: scores must be finite (found NaN or inf)");

  std::vector<int32_t> members, starts;
  bucket_by_group(idxs_c.data_ptr<int64_t>(), n, members, starts);
  return keep_each_group<GreedyNms<T, S>>(
      members, starts, score_data,
      [&](GreedyNms<T, S>& nms, const int32_t* group, int32_t count, int32_t* kept) {
        return nms.run(box_data, score_data, group, count, iou_threshold, max_per_group, kept);
      });
}

at::Tensor keep_cpu(const BatchedNmsInput& in, const BatchedNmsOptions& options) {
  const auto& [boxes, scores, idxs] = in;
  const double iou = options.iou_threshold;
  const int64_t cap = options.cap();
  // Boxes in float64 when given so, else float32; scores likewise (either ranks any float type exactly).
  const bool double_boxes = boxes.scalar_type() == at::kDouble;
  const bool double_scores = scores.scalar_type() == at::kDouble;
  if (double_boxes) {
    return double_scores ? batched_nms_typed<double, double>(boxes, scores, idxs, iou, cap)
                         : batched_nms_typed<double, float>(boxes, scores, idxs, iou, cap);
  }
  return double_scores ? batched_nms_typed<float, double>(boxes, scores, idxs, iou, cap)
                       : batched_nms_typed<float, float>(boxes, scores, idxs, iou, cap);
}

constexpr BatchedNmsBackend kCpuBackend{&keep_cpu};

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) {
  m.impl("batched_nms", &batched_nms_kernel<kCpuBackend>);
}

}  // namespace tinyfast
