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

template <typename T>
bool all_finite_in_parallel(const T* values, int64_t count) {
  return at::parallel_reduce(
      0, count, 1 << 14, true,
      [&](int64_t begin, int64_t end, bool ok) { return ok && all_finite(values + begin, end - begin); },
      [](bool a, bool b) { return a && b; });
}

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
  const int64_t num_groups = static_cast<int64_t>(starts.size()) - 1;
  std::vector<int32_t> kept(n);  // each group's kept boxes at the start of its span of members
  std::vector<Span> kept_spans(num_groups);
  at::parallel_for(0, num_groups, 1, [&](int64_t begin, int64_t end) {
    GreedyNms<T, S> nms;
    for (int64_t g = begin; g < end; ++g) {
      const int32_t first = starts[g];
      const int32_t count = nms.run(box_data, score_data, members.data() + first, starts[g + 1] - first,
                                    iou_threshold, max_per_group, kept.data() + first);
      kept_spans[g] = {first, first + count};
    }
  });
  int64_t total = 0;
  for (const Span& span : kept_spans) {
    total += span.end - span.begin;
  }
  at::Tensor keep = at::empty({total}, at::kLong);
  merge_by_score(kept.data(), kept_spans.data(), num_groups, score_data, -1, keep.data_ptr<int64_t>());
  return keep;
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
