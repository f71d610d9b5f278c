// Batched NMS on the CPU: the shared sweep builds, for every box, the list of boxes that can suppress it;
// then greedy NMS walks each group in rank order, groups in parallel.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "ops/batched_nms.h"
#include "ops/batched_nms_sweep.h"

namespace tinyfast {
namespace {

constexpr int64_t kSweepGrain = 1024;

// First rank of every group, plus n at the end.
std::vector<int32_t> group_starts(const int64_t* groups, int32_t n) {
  std::vector<int32_t> starts;
  for (int32_t r = 0; r < n; ++r) {
    if (r == 0 || groups[r] != groups[r - 1]) {
      starts.push_back(r);
    }
  }
  starts.push_back(n);
  return starts;
}

// Greedy NMS on ranks [begin, end) of one group: a box is kept iff none of its suppressors was kept.
void keep_greedily(
    int32_t begin,
    int32_t end,
    const int64_t* offsets,
    const int32_t* counts,
    const int32_t* edges,
    int64_t max_per_group,
    uint8_t* kept) {
  int64_t kept_count = 0;
  for (int32_t r = begin; r < end && kept_count != max_per_group; ++r) {
    bool suppressed = false;
    for (int64_t e = offsets[r]; e < offsets[r] + counts[r] && !suppressed; ++e) {
      suppressed = kept[edges[e]];
    }
    if (!suppressed) {
      kept[r] = 1;
      ++kept_count;
    }
  }
}

template <typename T>
at::Tensor kept_ranks(const RankedBoxes& ranked, double iou_threshold, int64_t max_per_group) {
  const int32_t n = static_cast<int32_t>(ranked.boxes.size(0));
  const NmsSweep<T> sweep{
      ranked.boxes.data_ptr<T>(), ranked.groups.data_ptr<int64_t>(), ranked.x_order.data_ptr<int32_t>(), n,
      iou_threshold};

  std::vector<int32_t> counts(n, 0);
  at::parallel_for(0, n, kSweepGrain, [&](int64_t begin, int64_t end) {
    for (int64_t xp = begin; xp < end; ++xp) {
      count_suppressors(sweep, static_cast<int32_t>(xp), counts.data());
    }
  });
  std::vector<int64_t> offsets(n + 1, 0);
  for (int32_t r = 0; r < n; ++r) {
    offsets[r + 1] = offsets[r] + counts[r];
  }
  std::vector<int32_t> edges(offsets[n]);
  std::vector<int32_t> cursors(n, 0);
  at::parallel_for(0, n, kSweepGrain, [&](int64_t begin, int64_t end) {
    for (int64_t xp = begin; xp < end; ++xp) {
      write_suppressors(sweep, static_cast<int32_t>(xp), offsets.data(), cursors.data(), edges.data(), offsets[n]);
    }
  });

  at::Tensor kept = at::zeros({n}, ranked.boxes.options().dtype(at::kBool));
  uint8_t* kept_data = reinterpret_cast<uint8_t*>(kept.data_ptr<bool>());
  const std::vector<int32_t> starts = group_starts(ranked.groups.data_ptr<int64_t>(), n);
  const int64_t num_groups = static_cast<int64_t>(starts.size()) - 1;
  at::parallel_for(0, num_groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      keep_greedily(
          starts[g], starts[g + 1], offsets.data(), counts.data(), edges.data(), max_per_group, kept_data);
    }
  });
  return kept;
}

at::Tensor batched_nms_cpu(
    const at::Tensor& boxes,
    const at::Tensor& scores,
    const at::Tensor& idxs,
    double iou_threshold,
    int64_t max_per_group) {
  check_batched_nms_args(boxes, scores, idxs, iou_threshold, max_per_group);
  if (boxes.size(0) == 0) {
    return at::empty({0}, idxs.options());
  }
  TORCH_CHECK_VALUE(at::isfinite(boxes).all().item<bool>(), "batched_nms: boxes must be finite (found NaN or inf)");
  TORCH_CHECK_VALUE(
      at::isfinite(scores).all().item<bool>(), "batched_nms: scores must be finite (found NaN or inf)");

  const RankedBoxes ranked = rank_boxes(boxes, scores, idxs);
  const at::Tensor kept = ranked.boxes.scalar_type() == at::kDouble
      ? kept_ranks<double>(ranked, iou_threshold, max_per_group)
      : kept_ranks<float>(ranked, iou_threshold, max_per_group);
  const at::Tensor kept_ascending = std::get<0>(ranked.order.masked_select(kept).sort());
  return order_by_score(kept_ascending, scores);
}

}  // namespace

TORCH_LIBRARY_IMPL(tinyfast, CPU, m) {
  m.impl("batched_nms", &batched_nms_cpu);
}

}  // namespace tinyfast
