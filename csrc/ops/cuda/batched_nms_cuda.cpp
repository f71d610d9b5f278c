// Batched NMS on CUDA. Everything stays on the device; the one host sync reads the output size together
// with the input checks (finite boxes and scores) and the size of the suppression lists.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "ops/batched_nms.h"
#include "ops/cuda/batched_nms_kernels.h"
#include "ops/cuda/suppression_lists.h"

namespace tinyfast {
namespace {

// Boxes ranked by (group, score descending, index ascending), and in x order, (group, x1) for the sweep.
struct RankedBoxes {
  at::Tensor order;     // [n] int64: original index of each rank
  at::Tensor groups;    // [n] int64, by rank
  at::Tensor x_boxes;   // [n, 4] float32 (float64 for float64 input), in x order
  at::Tensor x_groups;  // [n] int64, in x order
  at::Tensor x_ranks;   // [n] int32: rank of each box in x order
};

RankedBoxes rank_boxes(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs) {
  const auto compute_type = boxes.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  // Two stable sorts give the lexicographic order (group, score descending, index ascending).
  const at::Tensor by_score = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor group_of_score_rank = idxs.index_select(0, by_score);
  RankedBoxes ranked;
  ranked.order = by_score.index_select(
      0, std::get<1>(group_of_score_rank.sort(/*stable=*/true, 0, /*descending=*/false)));
  ranked.groups = idxs.index_select(0, ranked.order).contiguous();
  const at::Tensor boxes_by_rank = boxes.index_select(0, ranked.order).to(compute_type);
  const at::Tensor by_x1 = std::get<1>(boxes_by_rank.select(1, 0).sort(/*stable=*/true, 0, false));
  const at::Tensor x_order =
      by_x1.index_select(0, std::get<1>(ranked.groups.index_select(0, by_x1).sort(true, 0, false)));
  ranked.x_boxes = boxes_by_rank.index_select(0, x_order).contiguous();
  ranked.x_groups = ranked.groups.index_select(0, x_order).contiguous();
  ranked.x_ranks = x_order.to(at::kInt).contiguous();
  return ranked;
}

template <typename T>
Suppressors build_suppressors(const RankedBoxes& ranked,
                              double iou_threshold,
                              int64_t capacity,
                              cudaStream_t stream) {
  const int32_t n = static_cast<int32_t>(ranked.order.size(0));
  const NmsSweep<T> sweep{ranked.x_boxes.data_ptr<T>(), ranked.x_groups.data_ptr<int64_t>(),
                          ranked.x_ranks.data_ptr<int32_t>(), n, iou_threshold};
  at::Tensor counts = at::zeros({n}, ranked.x_ranks.options());
  cuda::launch_count_suppressors(sweep, counts.data_ptr<int32_t>(), stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  Suppressors result = suppressors_with_counts(std::move(counts), capacity);
  at::Tensor cursors = at::zeros({n}, ranked.x_ranks.options());
  cuda::launch_write_suppressors(sweep, result.offsets.data_ptr<int64_t>(), cursors.data_ptr<int32_t>(),
                                 result.edges.data_ptr<int32_t>(), capacity, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return result;
}

Suppressors build_suppressors(const RankedBoxes& ranked,
                              double iou_threshold,
                              int64_t capacity,
                              cudaStream_t stream) {
  return ranked.x_boxes.scalar_type() == at::kDouble
             ? build_suppressors<double>(ranked, iou_threshold, capacity, stream)
             : build_suppressors<float>(ranked, iou_threshold, capacity, stream);
}

at::Tensor keep_cuda(const BatchedNmsInput& in, const BatchedNmsOptions& options) {
  const auto& [boxes, scores, idxs] = in;
  const double iou_threshold = options.iou_threshold;
  const int64_t max_per_group = options.cap();
  const c10::cuda::CUDAGuard device_guard(boxes.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t n = boxes.size(0);

  const RankedBoxes ranked = rank_boxes(boxes, scores, idxs);
  int64_t capacity = kSuppressorsPerItemGuess * n;
  while (true) {
    const Suppressors suppressors = build_suppressors(ranked, iou_threshold, capacity, stream);
    const at::Tensor kept_by_index = resolve(ranked.order, ranked.groups, suppressors, max_per_group, stream);
    const at::Tensor kept_so_far = kept_by_index.cumsum(0, at::kLong);
    const at::Tensor facts = at::stack({
                                           kept_so_far[n - 1],
                                           suppressors.total,
                                           at::isfinite(boxes).all().to(at::kLong),
                                           at::isfinite(scores).all().to(at::kLong),
                                       })
                                 .cpu();
    const int64_t* fact = facts.data_ptr<int64_t>();
    TORCH_CHECK_VALUE(fact[2] == 1, "batched_nms: boxes must be finite (found NaN or inf)");
    TORCH_CHECK_VALUE(fact[3] == 1, "batched_nms: scores must be finite (found NaN or inf)");
    if (fact[1] > capacity) {
      capacity = fact[1];
      continue;
    }
    return kept_by_score(kept_by_index, kept_so_far, fact[0], scores, stream);
  }
}

constexpr BatchedNmsBackend kCudaBackend{&keep_cuda};

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CUDA, m) {
  m.impl("batched_nms", &batched_nms_kernel<kCudaBackend>);
}

}  // namespace tinyfast
